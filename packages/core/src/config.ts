import { ErrorCode, PlaitError } from './errors.js';

/** Fixed by PROTOCOL.md; not configurable because the peer relies on them. */
export const WIRE = {
  VERSION: 1,
  HANDSHAKE_MAX_BODY: 1024,
  RECORD_MAX_PLAINTEXT: 65536,
  RECORD_TAG: 16,
  DATA_MAX_PAYLOAD: 16384,
  /** Largest DATAGRAM payload (PROTOCOL.md 6.7): bigger UDP payloads are dropped by the sender. */
  DATAGRAM_MAX_PAYLOAD: 16384,
  INITIAL_WINDOW: 262144,
  STREAM_HEADER_MAX: 1024,
  TOKEN_BYTES: 16,
  NONCE_BYTES: 32,
  HMAC_B_TRUNC: 8,
  MAX_OFFSET: Number.MAX_SAFE_INTEGER,
  RECORD_COUNTER_LIMIT: 2 ** 40,
} as const;

/** Every tunable limit, in one place. */
export interface Config {
  /** Per-stream receive credit once the stream is in use (bytes). */
  streamWindow: number;
  /** Reading from subflows pauses while the session buffers more than this (bytes). */
  sessionRecvBudget: number;
  /** Per-stream bytes (unsent + unacknowledged) before write() pushes back. */
  streamSendBuffer: number;
  /**
   * All streams' unsent + unacknowledged bytes together before write() pushes
   * back: without it, N streams whose readers never read hold N x
   * streamSendBuffer (4 MiB each) on the sender.
   */
  sessionSendBudget: number;
  /**
   * A stream may always buffer this many bytes, even over the session or
   * process budget, so one greedy stream cannot starve the others (fairness).
   */
  streamSendMin: number;
  /** Open streams across all sessions of a process (server); more are refused with RESET LIMIT. */
  processMaxStreams: number;
  /** Buffered stream bytes (send + receive) across all sessions of a process before backpressure. */
  processBufferBudget: number;
  /** Open streams per session. */
  maxStreams: number;
  /** Subflows per session. */
  maxSubflows: number;
  /** Out-of-order pieces held per stream. */
  reassemblyParts: number;
  /** HELLO timestamp freshness window (ms). */
  timestampWindowMs: number;
  /** HELLO nonces remembered by a server. */
  replayCacheEntries: number;
  /** JOIN R_A values remembered per session. */
  joinNonces: number;
  /** Server drops connections that have not finished the handshake (ms). */
  handshakeTimeoutMs: number;
  /**
   * Server drops a connection whose first complete handshake message has not
   * arrived by then (ms): a real client sends HELLO or JOIN right after
   * connecting, so only idle strangers wait this long. Capped by
   * handshakeTimeoutMs.
   */
  handshakeFirstMessageMs: number;
  /**
   * Bytes a server buffers from a connection before it proves the secret. A
   * handshake message is at most 3 + 1024 bytes and a client sends nothing
   * else before `ok`, so anything more is a flood and is refused (LIMIT).
   */
  preauthBufferBytes: number;
  /** Target plaintext bytes per sealed record (batching). */
  recordTarget: number;
  /** Lower bound of the retransmission timeout that marks a subflow suspect (ms). */
  minRtoMs: number;
  /** Upper bound of the retransmission timeout (ms). */
  maxRtoMs: number;
  /** Ping an idle subflow this often (ms). */
  keepaliveMs: number;
  /** Ping a suspect subflow this often (ms). */
  probeMs: number;
  /** A subflow silent for this long is closed (ms). */
  deadAfterMs: number;
  /** Initial cap on a subflow's unacknowledged bytes, before it is measured. */
  initialInflight: number;
  /** Floor of a subflow's unacknowledged-bytes cap. */
  minInflight: number;
  /** Allowance for bursty acks added to the RTT when sizing the cap (ms). */
  ackSlackMs: number;
  /** Scales the cap on a subflow's unacknowledged bytes (x its measured BDP, cycled to probe). */
  inflightGain: number;
  /** Health check period while data is in flight (ms). */
  tickMs: number;
  /**
   * A lone ack-eliciting record is acknowledged after at most this long
   * (ms), unless the ACK can ride on a record going out anyway; two records,
   * or a PING, are acknowledged at once (TCP's delayed ACK, scaled down).
   */
  ackDelayMs: number;
  /**
   * A partly filled data record may wait this long (ms) for more data while
   * the subflow has records in flight (an ACK will come and the pump run
   * again): fewer, fuller records cost less per byte; an idle subflow sends
   * at once (Nagle's rule, bounded).
   */
  recordHoldMs: number;
  /** Datagram flows (UDP associations) a server holds per session; advertised in `ok`. */
  maxDatagramFlows: number;
  /** Datagrams queued for sending per session; when full the oldest is dropped. */
  datagramQueueCount: number;
  /** Payload bytes queued for sending per session. */
  datagramQueueBytes: number;
  /** A queued datagram older than this is dropped, not sent (ms). */
  datagramMaxAgeMs: number;
  /** Subflows each datagram is sent on: 1, or 2 to duplicate on the two best (the receiver keeps the first). */
  datagramCopies: number;
}

export const DEFAULT_CONFIG: Readonly<Config> = Object.freeze({
  streamWindow: 4 * 1024 * 1024,
  sessionRecvBudget: 64 * 1024 * 1024,
  streamSendBuffer: 4 * 1024 * 1024,
  sessionSendBudget: 64 * 1024 * 1024,
  streamSendMin: 64 * 1024,
  processMaxStreams: 16384,
  processBufferBudget: 1024 * 1024 * 1024,
  maxStreams: 4096,
  maxSubflows: 8,
  reassemblyParts: 4096,
  timestampWindowMs: 30_000,
  replayCacheEntries: 65536,
  joinNonces: 1024,
  handshakeTimeoutMs: 5_000,
  handshakeFirstMessageMs: 3_000,
  preauthBufferBytes: 64 * 1024,
  recordTarget: 65536,
  minRtoMs: 200,
  maxRtoMs: 3_000,
  keepaliveMs: 2_000,
  probeMs: 200,
  deadAfterMs: 15_000,
  initialInflight: 256 * 1024,
  // Room for several full records (16 KiB of payload + framing each), so a
  // small cap never strands a path below one round trip's worth.
  minInflight: 96 * 1024,
  ackSlackMs: 5,
  inflightGain: 1,
  tickMs: 25,
  ackDelayMs: 1,
  recordHoldMs: 1,
  maxDatagramFlows: 256,
  datagramQueueCount: 128,
  datagramQueueBytes: 256 * 1024,
  datagramMaxAgeMs: 1_000,
  datagramCopies: 1,
});

/** Merge overrides onto the defaults and check how the limits relate. */
export function makeConfig(overrides: Partial<Config> = {}): Config {
  const c: Config = { ...DEFAULT_CONFIG, ...overrides };
  verifyConfig(c);
  return c;
}

export function verifyConfig(c: Config): void {
  const fail = (msg: string): never => {
    throw new PlaitError(ErrorCode.INTERNAL, `invalid config: ${msg}`);
  };
  for (const [k, v] of Object.entries(c)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) fail(`${k} must be a positive number, got ${String(v)}`);
  }
  if (c.streamWindow < WIRE.INITIAL_WINDOW) fail(`streamWindow must be >= INITIAL_WINDOW (${WIRE.INITIAL_WINDOW})`);
  // One stalled stream must never be able to fill the whole session budget
  // and so stall its siblings (a slow reader slows only itself).
  if (c.streamWindow * 2 > c.sessionRecvBudget) fail('streamWindow may be at most half of sessionRecvBudget');
  // The same for sending: one stream with a stalled peer must leave room
  // in the session budget for its siblings.
  if (c.streamSendBuffer * 2 > c.sessionSendBudget) fail('streamSendBuffer may be at most half of sessionSendBudget');
  // The fair minimum is a floor under the per-stream limit, not above it.
  if (c.streamSendMin > c.streamSendBuffer) fail('streamSendMin must be <= streamSendBuffer');
  // A process cap below one session's own limits would make those limits unreachable.
  if (c.processMaxStreams < c.maxStreams) fail('processMaxStreams must be >= maxStreams');
  if (c.processBufferBudget < c.sessionSendBudget + c.sessionRecvBudget) {
    fail('processBufferBudget must be >= sessionSendBudget + sessionRecvBudget');
  }
  // Two whole handshake messages must fit, or a legitimate peer could be refused.
  if (c.preauthBufferBytes < 2 * (3 + WIRE.HANDSHAKE_MAX_BODY)) fail(`preauthBufferBytes must be >= ${2 * (3 + WIRE.HANDSHAKE_MAX_BODY)}`);
  if (c.recordTarget > WIRE.RECORD_MAX_PLAINTEXT) fail(`recordTarget must be <= ${WIRE.RECORD_MAX_PLAINTEXT}`);
  if (c.minRtoMs > c.maxRtoMs) fail('minRtoMs must be <= maxRtoMs');
  if (c.minInflight > c.initialInflight) fail('minInflight must be <= initialInflight');
  if (c.maxSubflows > 255) fail('maxSubflows must be <= 255');
  if (c.datagramCopies !== 1 && c.datagramCopies !== 2) fail('datagramCopies must be 1 or 2');
  if (c.datagramQueueBytes < WIRE.DATAGRAM_MAX_PAYLOAD) fail(`datagramQueueBytes must be >= ${WIRE.DATAGRAM_MAX_PAYLOAD}`);
  if (c.maxDatagramFlows > 0xffff_ffff) fail('maxDatagramFlows must fit in u32');
  if (c.probeMs >= c.deadAfterMs || c.keepaliveMs >= c.deadAfterMs) fail('probeMs and keepaliveMs must be < deadAfterMs');
}
