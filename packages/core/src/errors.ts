/** Session / handshake error codes (PROTOCOL.md section 9). */
export const ErrorCode = {
  BAD_MESSAGE: 1,
  VERSION: 2,
  AUTH_FAILED: 3,
  STALE_TIMESTAMP: 4,
  REPLAY: 5,
  UNKNOWN_TOKEN: 6,
  SESSION_FULL: 7,
  BUSY: 8,
  TIMEOUT: 9,
  PROTOCOL: 10,
  FLOW_CONTROL: 11,
  DECRYPT_FAILED: 12,
  INTERNAL: 13,
  CLOSED: 14,
  LIMIT: 15,
  /** The server does not accept the record cipher asked for (plait server --cipher), or a JOIN's cipher is not its session's. */
  CIPHER: 16,
  /**
   * The server instance is shutting down (draining): a HELLO refused with it
   * (proven) is retried at once elsewhere; a session closed with it is
   * replaced by a new one at once.
   */
  DRAINING: 17,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export type ErrorName = keyof typeof ErrorCode;

const NAMES = new Map<number, ErrorName>(
  Object.entries(ErrorCode).map(([k, v]) => [v, k as ErrorName]),
);

export function errorName(code: number): string {
  return NAMES.get(code) ?? `UNKNOWN_${code}`;
}

export function isErrorCode(code: number): code is ErrorCode {
  return NAMES.has(code);
}

/** Stream RESET codes (PROTOCOL.md section 9). */
export const ResetCode = {
  CANCEL: 1,
  REFUSED: 2,
  HOST_UNREACHABLE: 3,
  NETWORK_UNREACHABLE: 4,
  TIMEOUT: 5,
  NOT_ALLOWED: 6,
  DNS_FAILED: 7,
  LIMIT: 8,
  PROTOCOL: 9,
  SESSION_CLOSED: 10,
  INTERNAL: 11,
  /** The peer sent data beyond the credit it was granted on this stream (PROTOCOL.md 6.1). */
  FLOW_CONTROL: 12,
} as const;
export type ResetCode = (typeof ResetCode)[keyof typeof ResetCode];

const RESET_NAMES = new Map<number, string>(Object.entries(ResetCode).map(([k, v]) => [v, k]));

export function resetName(code: number): string {
  return RESET_NAMES.get(code) ?? `UNKNOWN_${code}`;
}

/**
 * Every error plait raises on purpose. `code` is the wire code to send to the
 * peer (if any) and what callers branch on; never branch on `message`.
 */
export class PlaitError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PlaitError';
    this.code = code;
  }
  get codeName(): string {
    return errorName(this.code);
  }
}

/** Malformed, truncated or oversized input from the network. */
export class ProtocolError extends PlaitError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = 'ProtocolError';
  }
}

/** The peer refused us (REJECT or close), with its code and reason. */
export class RemoteError extends PlaitError {
  /**
   * True when the refusal carried a proof that verified with our secret
   * (PROTOCOL.md section 3.1): it really comes from a server that knows the
   * secret and answers this attempt. Unproven refusals may be forged by
   * anyone on the path and must only fail that path.
   */
  readonly verified: boolean;
  /** The server's wall clock (Unix ms) from a verified proof. */
  readonly serverTime: number | undefined;
  constructor(code: ErrorCode, reason: string, proof?: { verified?: boolean; serverTime?: number }) {
    super(code, `peer refused: ${errorName(code)}${reason ? `: ${reason}` : ''}`);
    this.name = 'RemoteError';
    this.verified = proof?.verified ?? false;
    this.serverTime = proof?.verified ? proof.serverTime : undefined;
  }
}
