/**
 * Cleartext handshake messages (PROTOCOL.md sections 3-4):
 * `type u8 | length u16 | body [length]`.
 */
import { ByteQueue } from './byte-queue.js';
import { FLAG_CIPHER_MASK } from './cipher.js';
import { truncateUtf8 } from './control.js';
import { WIRE } from './config.js';
import { ErrorCode, PlaitError, ProtocolError } from './errors.js';

export const MsgType = {
  HELLO: 0x01,
  HELLO_ACK: 0x02,
  JOIN: 0x03,
  JOIN_ACK: 0x04,
  JOIN_CONFIRM: 0x05,
  REJECT: 0x0f,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

export const HANDSHAKE_HEADER = 3;
export const FLAG_BACKUP = 0x01;
/** Flag bits a v1 HELLO/JOIN may set: backup (bit 0) and the cipher id (bits 1-2, cipher.ts). */
export const FLAGS_KNOWN = FLAG_BACKUP | FLAG_CIPHER_MASK;
// ---- user hint (PROTOCOL.md section 3.2) ----
/** HELLO flags bit 3: a sealed user hint follows E_c. Only HELLO may set it. */
export const FLAG_USER_HINT = 0x08;
export const HELLO_FLAGS_KNOWN = FLAGS_KNOWN | FLAG_USER_HINT;
/** Sealed user hint in a HELLO (user-hint.ts USER_HINT_BYTES). */
export const HELLO_HINT_BYTES = 49;
/** Body of a HELLO with a user hint. */
export const HELLO_WITH_HINT_SIZE = 107 + HELLO_HINT_BYTES;
/** Offset of mac_c: the MAC covers all that precedes it. */
export function helloMacOffset(flags: number): number {
  return (flags & FLAG_USER_HINT) !== 0 ? HELLO_WITH_HINT_SIZE - 32 : HELLO_MAC_OFFSET;
}
// ---- end user hint ----
/**
 * JOIN only (bit 3): the body carries the session's instance u16 right after
 * addr_id, at a fixed offset an L4 load balancer reads (PROTOCOL.md 4.2).
 */
export const FLAG_INSTANCE = 0x08;
/** Flag bits a v1 JOIN may set. */
export const JOIN_FLAGS_KNOWN = FLAGS_KNOWN | FLAG_INSTANCE;
/** Largest instance id (u16). */
export const INSTANCE_MAX = 0xffff;
export const REJECT_REASON_MAX = 200;
/** A REJECT's optional proof: server time u64 + HMAC [32] (PROTOCOL.md section 3.1). */
export const REJECT_PROOF_SIZE = 40;

/** Body sizes fixed by the section 3 table. */
export const BODY_SIZE = {
  HELLO: 107,
  HELLO_ACK: 96,
  JOIN: 51,
  /** A JOIN with FLAG_INSTANCE: 2 more bytes (the instance). */
  JOIN_INSTANCE: 53,
  JOIN_ACK: 40,
  JOIN_CONFIRM: 32,
} as const;
/** Offset of mac_c in HELLO / of mac_s in HELLO_ACK: the MACs cover what precedes them. */
export const HELLO_MAC_OFFSET = 75;
export const HELLO_ACK_MAC_OFFSET = 64;

export interface HelloFields {
  type: typeof MsgType.HELLO;
  version: number;
  flags: number;
  addrId: number;
  /** Unix ms. */
  timestamp: number;
  nonce: Uint8Array;
  ephemeral: Uint8Array;
  /** Sealed user hint; present exactly when flags has FLAG_USER_HINT. */
  hint?: Uint8Array;
  mac: Uint8Array;
}
export interface HelloAckFields {
  type: typeof MsgType.HELLO_ACK;
  nonce: Uint8Array;
  ephemeral: Uint8Array;
  mac: Uint8Array;
}
export interface JoinFields {
  type: typeof MsgType.JOIN;
  version: number;
  flags: number;
  addrId: number;
  /**
   * The server instance that owns the session (u16), from its `ok`; present
   * exactly when `flags` has FLAG_INSTANCE. Cleartext, for load balancers.
   */
  instance?: number;
  token: Uint8Array;
  rA: Uint8Array;
}
export interface JoinAckFields {
  type: typeof MsgType.JOIN_ACK;
  rB: Uint8Array;
  /** First 8 bytes of HMAC-B. */
  hmacB: Uint8Array;
}
export interface JoinConfirmFields {
  type: typeof MsgType.JOIN_CONFIRM;
  hmacA: Uint8Array;
}
export interface RejectFields {
  type: typeof MsgType.REJECT;
  /** Wire error code; may be one this implementation does not know. */
  code: number;
  reason: string;
  /**
   * The server's proof that it knows the secret and answers this very
   * HELLO/JOIN: its wall clock (Unix ms) and the MAC over the request and
   * the REJECT body before the MAC. Absent on unproven refusals.
   */
  proof?: { time: number; mac: Uint8Array };
}

/** What `encodeHandshake` takes. */
export type HandshakeFields =
  | HelloFields
  | HelloAckFields
  | JoinFields
  | JoinAckFields
  | JoinConfirmFields
  | RejectFields;

/** Decoded messages also carry their raw body (input to the transcript and MACs). */
type WithBody<T> = T & { readonly body: Uint8Array };
export type HelloMessage = WithBody<HelloFields>;
export type HelloAckMessage = WithBody<HelloAckFields>;
export type JoinMessage = WithBody<JoinFields>;
export type JoinAckMessage = WithBody<JoinAckFields>;
export type JoinConfirmMessage = WithBody<JoinConfirmFields>;
export type RejectMessage = WithBody<RejectFields>;
export type HandshakeMessage =
  | HelloMessage
  | HelloAckMessage
  | JoinMessage
  | JoinAckMessage
  | JoinConfirmMessage
  | RejectMessage;

// Lenient: a REJECT's reason is only shown to a user, its code is what matters.
const utf8Decoder = new TextDecoder('utf-8', { fatal: false });

export function typeName(type: number): string {
  for (const [k, v] of Object.entries(MsgType)) if (v === type) return k;
  return `0x${type.toString(16).padStart(2, '0')}`;
}

function bad(reason: string): never {
  throw new ProtocolError(ErrorCode.BAD_MESSAGE, reason);
}

// ---- encoding -------------------------------------------------------------

function checkByte(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 0 || n > 255) {
    throw new PlaitError(ErrorCode.INTERNAL, `${what} must be an integer 0..255, got ${n}`);
  }
  return n;
}

function checkBytes(b: Uint8Array, len: number, what: string): Uint8Array {
  if (b.length !== len) throw new PlaitError(ErrorCode.INTERNAL, `${what} must be ${len} bytes, got ${b.length}`);
  return b;
}


/** Encode header + body. Reject reasons longer than 200 UTF-8 bytes are truncated. */
export function encodeHandshake(msg: HandshakeFields): Uint8Array {
  let body: Uint8Array;
  switch (msg.type) {
    case MsgType.HELLO: {
      const hinted = (msg.flags & FLAG_USER_HINT) !== 0;
      if (hinted !== (msg.hint !== undefined)) throw new PlaitError(ErrorCode.INTERNAL, 'HELLO user-hint flag and hint must go together');
      body = new Uint8Array(hinted ? HELLO_WITH_HINT_SIZE : BODY_SIZE.HELLO);
      const ts = msg.timestamp;
      if (!Number.isSafeInteger(ts) || ts < 0) {
        throw new PlaitError(ErrorCode.INTERNAL, `HELLO timestamp must be a non-negative safe integer, got ${ts}`);
      }
      body[0] = checkByte(msg.version, 'version');
      body[1] = checkByte(msg.flags, 'flags');
      body[2] = checkByte(msg.addrId, 'addrId');
      const dv = new DataView(body.buffer);
      dv.setUint32(3, Math.floor(ts / 2 ** 32));
      dv.setUint32(7, ts >>> 0);
      body.set(checkBytes(msg.nonce, 32, 'nonce'), 11);
      body.set(checkBytes(msg.ephemeral, 32, 'ephemeral'), 43);
      if (msg.hint) body.set(checkBytes(msg.hint, HELLO_HINT_BYTES, 'hint'), 75);
      body.set(checkBytes(msg.mac, 32, 'mac'), helloMacOffset(msg.flags));
      break;
    }
    case MsgType.HELLO_ACK:
      body = new Uint8Array(BODY_SIZE.HELLO_ACK);
      body.set(checkBytes(msg.nonce, 32, 'nonce'), 0);
      body.set(checkBytes(msg.ephemeral, 32, 'ephemeral'), 32);
      body.set(checkBytes(msg.mac, 32, 'mac'), 64);
      break;
    case MsgType.JOIN: {
      // The layout follows `instance`; the flags byte goes out as given (startJoin sets bit 3
      // with an instance; tools that build hostile input may not, and readers refuse that).
      const withInstance = msg.instance !== undefined;
      const at = withInstance ? 5 : 3;
      body = new Uint8Array(withInstance ? BODY_SIZE.JOIN_INSTANCE : BODY_SIZE.JOIN);
      body[0] = checkByte(msg.version, 'version');
      body[1] = checkByte(msg.flags, 'flags');
      body[2] = checkByte(msg.addrId, 'addrId');
      if (msg.instance !== undefined) {
        const inst = msg.instance;
        if (!Number.isInteger(inst) || inst < 0 || inst > INSTANCE_MAX) {
          throw new PlaitError(ErrorCode.INTERNAL, `instance must be an integer 0..${INSTANCE_MAX}, got ${inst}`);
        }
        body[3] = inst >>> 8;
        body[4] = inst & 0xff;
      }
      body.set(checkBytes(msg.token, WIRE.TOKEN_BYTES, 'token'), at);
      body.set(checkBytes(msg.rA, 32, 'rA'), at + 16);
      break;
    }
    case MsgType.JOIN_ACK:
      body = new Uint8Array(BODY_SIZE.JOIN_ACK);
      body.set(checkBytes(msg.rB, 32, 'rB'), 0);
      body.set(checkBytes(msg.hmacB, WIRE.HMAC_B_TRUNC, 'hmacB'), 32);
      break;
    case MsgType.JOIN_CONFIRM:
      body = checkBytes(msg.hmacA, 32, 'hmacA');
      break;
    case MsgType.REJECT: {
      const reason = truncateUtf8(msg.reason, REJECT_REASON_MAX);
      body = new Uint8Array(2 + reason.length + (msg.proof ? REJECT_PROOF_SIZE : 0));
      body[0] = checkByte(msg.code, 'code');
      body[1] = reason.length;
      body.set(reason, 2);
      if (msg.proof) {
        const t = msg.proof.time;
        if (!Number.isSafeInteger(t) || t < 0) throw new PlaitError(ErrorCode.INTERNAL, `REJECT time must be a non-negative safe integer, got ${t}`);
        const dv = new DataView(body.buffer);
        const at = 2 + reason.length;
        dv.setUint32(at, Math.floor(t / 2 ** 32));
        dv.setUint32(at + 4, t >>> 0);
        body.set(checkBytes(msg.proof.mac, 32, 'proof mac'), at + 8);
      }
      break;
    }
  }
  const out = new Uint8Array(HANDSHAKE_HEADER + body.length);
  out[0] = msg.type;
  out[1] = body.length >>> 8;
  out[2] = body.length & 0xff;
  out.set(body, HANDSHAKE_HEADER);
  return out;
}

/** Encoded REJECT without a proof, ready to send before closing. */
export function encodeReject(code: number, reason: string): Uint8Array {
  return encodeHandshake({ type: MsgType.REJECT, code, reason });
}

/** The bytes a REJECT proof's MAC covers after the request: the body up to the MAC. */
export function rejectMacInput(body: Uint8Array): Uint8Array {
  return body.subarray(0, body.length - 32);
}

// ---- decoding -------------------------------------------------------------

/** Allowed body length for a type, or undefined for an unknown type. */
function bodyRange(type: number): [min: number, max: number] | undefined {
  switch (type) {
    case MsgType.HELLO:
      return [BODY_SIZE.HELLO, BODY_SIZE.HELLO];
    case MsgType.HELLO_ACK:
      return [BODY_SIZE.HELLO_ACK, BODY_SIZE.HELLO_ACK];
    case MsgType.JOIN:
      return [BODY_SIZE.JOIN, BODY_SIZE.JOIN];
    case MsgType.JOIN_ACK:
      return [BODY_SIZE.JOIN_ACK, BODY_SIZE.JOIN_ACK];
    case MsgType.JOIN_CONFIRM:
      return [BODY_SIZE.JOIN_CONFIRM, BODY_SIZE.JOIN_CONFIRM];
    case MsgType.REJECT:
      return [2, 2 + REJECT_REASON_MAX + REJECT_PROOF_SIZE];
    default:
      return undefined;
  }
}

/**
 * Checks a header before any body byte is buffered, so a hostile length
 * costs nothing. HELLO and JOIN of another version may have another size, so
 * their size is not judged here (see decodeBody).
 */
function checkHeader(type: number, length: number): void {
  const range = bodyRange(type);
  if (!range) bad(`unknown handshake message type ${typeName(type)}: not a plait v1 peer?`);
  if (length > WIRE.HANDSHAKE_MAX_BODY) {
    bad(`handshake message ${typeName(type)} declares ${length} bytes, limit ${WIRE.HANDSHAKE_MAX_BODY}: not a plait peer?`);
  }
  const versioned = type === MsgType.HELLO || type === MsgType.JOIN;
  if (!versioned && (length < range[0] || length > range[1])) {
    bad(`${typeName(type)} body is ${length} bytes, expected ${range[0] === range[1] ? range[0] : `${range[0]}..${range[1]}`}`);
  }
}

function u64(body: Uint8Array, off: number): number {
  const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
  // Values above 2^53 lose precision, harmless: such a timestamp is stale anyway.
  return dv.getUint32(off) * 2 ** 32 + dv.getUint32(off + 4);
}

function checkVersionAndFlags(type: number, body: Uint8Array, size: number, known: number): void {
  if (body.length >= 1 && body[0] !== WIRE.VERSION) {
    throw new ProtocolError(
      ErrorCode.VERSION,
      `${typeName(type)} has protocol version ${body[0]}, this side speaks ${WIRE.VERSION}: upgrade the older side`,
    );
  }
  if (body.length !== size) bad(`${typeName(type)} body is ${body.length} bytes, expected ${size}`);
  const flags = body[1] ?? 0;
  // An unknown cipher id (bits 1-2) passes here: the server refuses it with CIPHER, which says more.
  if ((flags & ~known) !== 0) bad(`${typeName(type)} has reserved flag bits set (0x${flags.toString(16)})`);
}

/** Decode a body whose header passed checkHeader. `body` is owned by the result. */
export function decodeBody(type: number, body: Uint8Array): HandshakeMessage {
  checkHeader(type, body.length);
  switch (type) {
    case MsgType.HELLO:
    {
      const flags = body[1] ?? 0;
      const macAt = helloMacOffset(flags);
      checkVersionAndFlags(type, body, macAt + 32, HELLO_FLAGS_KNOWN);
      const hello: HelloMessage = {
        type,
        body,
        version: body[0] ?? 0,
        flags,
        addrId: body[2] ?? 0,
        timestamp: u64(body, 3),
        nonce: body.subarray(11, 43),
        ephemeral: body.subarray(43, 75),
        mac: body.subarray(macAt, macAt + 32),
      };
      if ((flags & FLAG_USER_HINT) !== 0) hello.hint = body.subarray(75, macAt);
      return hello;
    }
    case MsgType.HELLO_ACK:
      return {
        type,
        body,
        nonce: body.subarray(0, 32),
        ephemeral: body.subarray(32, 64),
        mac: body.subarray(64, 96),
      };
    case MsgType.JOIN: {
      // The instance bit decides the layout (and so the size to expect).
      const withInstance = ((body[1] ?? 0) & FLAG_INSTANCE) !== 0;
      checkVersionAndFlags(type, body, withInstance ? BODY_SIZE.JOIN_INSTANCE : BODY_SIZE.JOIN, JOIN_FLAGS_KNOWN);
      const at = withInstance ? 5 : 3;
      const join: JoinMessage = {
        type,
        body,
        version: body[0] ?? 0,
        flags: body[1] ?? 0,
        addrId: body[2] ?? 0,
        token: body.subarray(at, at + 16),
        rA: body.subarray(at + 16, at + 48),
      };
      if (withInstance) join.instance = ((body[3] ?? 0) << 8) | (body[4] ?? 0);
      return join;
    }
    case MsgType.JOIN_ACK:
      return { type, body, rB: body.subarray(0, 32), hmacB: body.subarray(32, 40) };
    case MsgType.JOIN_CONFIRM:
      return { type, body, hmacA: body.subarray(0, 32) };
    case MsgType.REJECT: {
      const reasonLen = body[1] ?? 0;
      if (reasonLen > REJECT_REASON_MAX) bad(`REJECT reason is ${reasonLen} bytes, limit ${REJECT_REASON_MAX}`);
      const rest = body.length - 2 - reasonLen;
      if (rest !== 0 && rest !== REJECT_PROOF_SIZE) bad(`REJECT body is ${body.length} bytes, which fits no layout for a ${reasonLen}-byte reason`);
      const msg: RejectMessage = { type, body, code: body[0] ?? 0, reason: utf8Decoder.decode(body.subarray(2, 2 + reasonLen)) };
      if (rest === REJECT_PROOF_SIZE) msg.proof = { time: u64(body, 2 + reasonLen), mac: body.subarray(10 + reasonLen) };
      return msg;
    }
    default:
      // Unreachable: checkHeader refused unknown types.
      return bad(`unknown handshake message type ${typeName(type)}`);
  }
}

/**
 * Incremental decoder for one subflow's handshake phase. Chunks are kept by
 * reference; only a message's header and body (at most 3 + 1024 bytes) are
 * ever copied. Whatever follows the last message (sealed records sent in the
 * same TCP segment) is handed over by `takeRest`.
 */
export class HandshakeReader {
  private readonly queue = new ByteQueue();
  private failed: ProtocolError | undefined;

  /**
   * @param maxBuffered bytes held at most; a server passes its pre-auth
   * budget so a stranger cannot make it buffer without bound.
   */
  constructor(private readonly maxBuffered = Number.POSITIVE_INFINITY) {}

  /** Bytes held and not yet returned. */
  get buffered(): number {
    return this.queue.length;
  }

  /** The next unread byte, if any (does not consume it). */
  peekByte(): number | undefined {
    return this.queue.length > 0 ? this.queue.byteAt(0) : undefined;
  }

  /**
   * Hold a chunk. After a failure input is dropped unread (the connection is
   * being refused). Throws ProtocolError (LIMIT) if the chunk would take the
   * reader over `maxBuffered`; the reader is failed from then on.
   */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0 || this.failed) return;
    const size = this.queue.length;
    if (size + chunk.length > this.maxBuffered) {
      this.failed = new ProtocolError(
        ErrorCode.LIMIT,
        `${size + chunk.length} bytes sent before the handshake completed, limit ${this.maxBuffered}: not a plait client?`,
      );
      this.queue.clear();
      throw this.failed;
    }
    this.queue.push(chunk);
  }

  /**
   * The next whole message, or undefined if more bytes are needed. Throws
   * ProtocolError (BAD_MESSAGE or VERSION) as soon as the header or body is
   * known to be bad; after that the reader stays failed.
   */
  next(): HandshakeMessage | undefined {
    if (this.failed) throw this.failed;
    const q = this.queue;
    if (q.length < HANDSHAKE_HEADER) {
      // Judge the type byte alone at once: junk is refused on its first byte.
      const first = this.peekByte();
      if (first !== undefined && !bodyRange(first)) {
        this.failed = new ProtocolError(ErrorCode.BAD_MESSAGE, `unknown handshake message type ${typeName(first)}: not a plait v1 peer?`);
        throw this.failed;
      }
      return undefined;
    }
    const type = q.byteAt(0);
    const length = q.readUInt16BE(1);
    try {
      checkHeader(type, length);
      if (q.length < HANDSHAKE_HEADER + length) return undefined;
      q.skip(HANDSHAKE_HEADER);
      // Always a copy, so a message neither aliases nor pins a network buffer.
      const body = q.consumeCopy(length);
      return decodeBody(type, body);
    } catch (err) {
      if (err instanceof ProtocolError) this.failed = err;
      throw err;
    }
  }

  /** All bytes after the last returned message; the reader is empty afterwards. */
  takeRest(): Uint8Array {
    // Usually the rest sits in one chunk: consume hands over a view, no copy.
    return this.queue.consume(this.queue.length);
  }
}

/**
 * After JOIN_CONFIRM the server answers with either a sealed record (the
 * `ok`) or a cleartext REJECT. A record's u32 length is at most 65552, so
 * its first byte is 0x00, while a REJECT starts with 0x0f: the first byte
 * tells them apart.
 */
export function startsWithReject(bytes: Uint8Array): boolean {
  return bytes.length > 0 && bytes[0] === MsgType.REJECT;
}
