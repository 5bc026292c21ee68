/**
 * Handshake state machines (PROTOCOL.md sections 3-4), without sockets or
 * timers: callers feed decoded messages (HandshakeReader) and write the bytes
 * returned. The 5 s handshake timeout is the caller's job.
 */
import { randomBytes } from 'node:crypto';
import { CIPHER_NAMES, cipherFlags, cipherIdOfFlags, cipherOfFlags, DEFAULT_CIPHER, type CipherName } from './cipher.js';
import type { Clock } from './clock.js';
import { WIRE, type Config } from './config.js';
import { ErrorCode, PlaitError, ProtocolError, RemoteError, errorName, isErrorCode } from './errors.js';
import {
  encodeHandshake,
  encodeReject,
  FLAG_BACKUP,
  FLAG_INSTANCE,
  FLAG_USER_HINT,
  FLAGS_KNOWN,
  HELLO_FLAGS_KNOWN,
  HELLO_HINT_BYTES,
  helloMacOffset,
  JOIN_FLAGS_KNOWN,
  HELLO_ACK_MAC_OFFSET,
  HELLO_MAC_OFFSET,
  MsgType,
  rejectMacInput,
  typeName,
  type HandshakeMessage,
  type RejectMessage,
  type HelloAckMessage,
  type JoinAckMessage,
} from './handshake-messages.js';
import {
  constantTimeEqual,
  copyBytes,
  deriveSessionKeys,
  generateEphemeral,
  helloAckMac,
  helloMac,
  joinHmacA,
  joinHmacB,
  rejectMac,
  subflowKeys,
  x25519,
  type SecretKeys,
  type SessionKeys,
} from './keys.js';
import type { ReplayCache } from './replay-cache.js';
import { openUserHint, sealUserHint, type ServerIdentity } from './user-hint.js';

/** Who the client says it is (plait client --user): its name, sealed to the server's identity key. */
export interface ClientUser {
  name: string;
  /** The server's public identity key, raw 32 bytes. */
  serverKey: Uint8Array;
}

/**
 * The server's users (PROTOCOL.md section 3.2). `find` must be O(1) (a Map):
 * with the hint it is the only per-user work a HELLO costs.
 */
export interface HelloUsers {
  identity: ServerIdentity;
  find(name: string): { keys: SecretKeys; revoked: boolean } | undefined;
}

/** Why a HELLO was refused as AUTH_FAILED in user mode; all look the same on the wire. */
export type UserRefusal = 'userUnknown' | 'userBadSecret' | 'userRevoked' | 'userBadHint' | 'userMissing';

/**
 * Keys MACs on the refusal paths that have no user secret, so that every
 * refusal costs one HMAC and every AUTH_FAILED proof looks alike. Random per
 * process: nobody can verify a proof made with it, which is the point.
 */
const DECOY_AUTH_KEY = randomBytes(32);
const USER_AUTH_FAILED = 'authentication failed: wrong user or secret, access revoked, or tampered HELLO';

/** Record keys of one subflow as seen from one side. */
export interface DirectionKeys {
  send: Uint8Array;
  recv: Uint8Array;
}

export interface SubflowOptions {
  /** MPTCP B bit: carry data only when no regular subflow is usable. */
  backup: boolean;
  /** Client's local address id (0 for the first subflow). */
  addrId: number;
  /**
   * Record cipher (default AES-256-GCM). In HELLO it chooses the session's
   * cipher; in JOIN it must repeat the session's, or the server refuses.
   */
  cipher?: CipherName;
  /**
   * JOIN only: the server instance that owns the session (from its `ok`),
   * sent in the JOIN's cleartext header so a load balancer can route it.
   */
  instance?: number;
}

export interface HelloResult {
  keys: SessionKeys;
  subflowKeys: DirectionKeys;
  /** The session's record cipher: what the HELLO asked for and the server's mac_s confirmed. */
  cipher: CipherName;
}

export interface ClientHello {
  /** Encoded HELLO to send. */
  message: Uint8Array;
  /**
   * Handle the server's answer. Throws RemoteError for a REJECT,
   * PlaitError(AUTH_FAILED) if the server does not know the secret,
   * ProtocolError(PROTOCOL) for any other message.
   */
  finish(reply: HandshakeMessage): HelloResult;
}

export interface JoinAckResult {
  /** Encoded JOIN_CONFIRM to send; then wait for the `ok` record. */
  confirm: Uint8Array;
  subflowKeys: DirectionKeys;
  cipher: CipherName;
}

export interface ClientJoin {
  /** Encoded JOIN to send. */
  message: Uint8Array;
  /** The REJECT that may follow JOIN_CONFIRM, as the error to raise (verified with `authKey`). */
  refusal(reply: RejectMessage): RemoteError;
  /** Handle the server's answer; throws like ClientHello.finish. */
  onJoinAck(reply: HandshakeMessage): JoinAckResult;
}

function flagsOf(opts: SubflowOptions): number {
  return (opts.backup ? FLAG_BACKUP : 0) | cipherFlags(opts.cipher ?? DEFAULT_CIPHER);
}

/**
 * A REJECT as the error to raise. With `proof` (our secret's auth key and
 * the body of the HELLO/JOIN it answers) its MAC is checked: only a verified
 * refusal may end a session or move our clock (PROTOCOL.md section 3.1).
 */
export function rejectError(reply: RejectMessage, proof?: { authKey: Uint8Array; request: Uint8Array }): RemoteError {
  let verified = false;
  if (proof && reply.proof) {
    const expected = rejectMac(proof.authKey, proof.request, rejectMacInput(reply.body));
    verified = constantTimeEqual(expected, reply.proof.mac);
  }
  const p = verified && reply.proof ? { verified, serverTime: reply.proof.time } : { verified };
  if (isErrorCode(reply.code)) return new RemoteError(reply.code, reply.reason, p);
  return new RemoteError(ErrorCode.INTERNAL, `unknown code ${reply.code}${reply.reason ? `: ${reply.reason}` : ''}`, p);
}

/** A REJECT from the peer, or a message out of place, as the error to raise. */
function unexpected(reply: HandshakeMessage, expected: string, proof?: { authKey: Uint8Array; request: Uint8Array }): PlaitError {
  if (reply.type === MsgType.REJECT) return rejectError(reply, proof);
  return new ProtocolError(ErrorCode.PROTOCOL, `expected ${expected}, got ${typeName(reply.type)}`);
}

function once(what: string): () => void {
  let used = false;
  return () => {
    if (used) throw new PlaitError(ErrorCode.INTERNAL, `${what} called twice`);
    used = true;
  };
}

/**
 * Client side of HELLO / HELLO_ACK: creates a session on the first subflow.
 * `clockOffsetMs` is added to our wall clock for the timestamp: the skew a
 * verified STALE_TIMESTAMP refusal revealed (routers often boot without a
 * real-time clock).
 */
export function startHello(secretKeys: SecretKeys, opts: SubflowOptions, clock: Clock, clockOffsetMs = 0, user?: ClientUser): ClientHello {
  const eph = generateEphemeral();
  const nonce = randomBytes(WIRE.NONCE_BYTES);
  const flags = flagsOf(opts) | (user ? FLAG_USER_HINT : 0);
  const message = encodeHandshake({
    type: MsgType.HELLO,
    version: WIRE.VERSION,
    flags,
    addrId: opts.addrId,
    timestamp: Math.max(0, Math.floor(clock.wallNow() + clockOffsetMs)),
    nonce,
    ephemeral: eph.publicKey,
    ...(user ? { hint: new Uint8Array(HELLO_HINT_BYTES) } : {}),
    mac: new Uint8Array(32),
  });
  const helloBody = message.subarray(3);
  if (user) {
    // The hint's AEAD covers version .. E_c; mac_c then covers the hint too.
    const hint = sealUserHint(user.name, eph.privateKey, user.serverKey, {
      helloPrefix: helloBody.subarray(0, HELLO_MAC_OFFSET),
      nonce,
      clientEphemeral: eph.publicKey,
    });
    helloBody.set(hint, HELLO_MAC_OFFSET);
  }
  // The MAC covers the body before it; fill it in place.
  const macAt = helloMacOffset(flags);
  helloBody.set(helloMac(secretKeys.authKey, helloBody.subarray(0, macAt)), macAt);
  const use = once('ClientHello.finish');

  return {
    message,
    finish(reply: HandshakeMessage): HelloResult {
      if (reply.type !== MsgType.HELLO_ACK) throw unexpected(reply, 'HELLO_ACK', { authKey: secretKeys.authKey, request: helloBody });
      use();
      const ack: HelloAckMessage = reply;
      const expected = helloAckMac(secretKeys.authKey, helloBody, ack.body.subarray(0, HELLO_ACK_MAC_OFFSET));
      if (!constantTimeEqual(expected, ack.mac)) {
        throw new PlaitError(
          ErrorCode.AUTH_FAILED,
          'server failed to prove the secret: wrong secret on one side, or not a plait server (or tampered HELLO_ACK)',
        );
      }
      const dh = x25519(eph.privateKey, ack.ephemeral);
      const keys = deriveSessionKeys(dh, secretKeys.pskKey, helloBody, ack.body);
      const sk = subflowKeys(keys.master, nonce, ack.nonce);
      // mac_s covers our whole HELLO, flags included: the server used this cipher.
      return { keys, subflowKeys: { send: sk.c2s, recv: sk.s2c }, cipher: opts.cipher ?? DEFAULT_CIPHER };
    },
  };
}

/**
 * Client side of JOIN / JOIN_ACK / JOIN_CONFIRM: adds a subflow to a session.
 * With `authKey` (the secret's K_auth) the server's refusals can be verified.
 */
export function startJoin(keys: SessionKeys, opts: SubflowOptions, authKey?: Uint8Array): ClientJoin {
  const rA = randomBytes(WIRE.NONCE_BYTES);
  const instance = opts.instance;
  const flags = flagsOf(opts) | (instance !== undefined ? FLAG_INSTANCE : 0);
  const message = encodeHandshake({
    type: MsgType.JOIN,
    version: WIRE.VERSION,
    flags,
    addrId: opts.addrId,
    ...(instance !== undefined ? { instance } : {}),
    token: keys.token,
    rA,
  });
  const use = once('ClientJoin.onJoinAck');
  const joinBody = message.subarray(3);

  return {
    message,
    /** The REJECT that may follow JOIN_CONFIRM, as the error to raise (verified with `authKey`). */
    refusal(reply: RejectMessage): RemoteError {
      return rejectError(reply, authKey ? { authKey, request: joinBody } : undefined);
    },
    onJoinAck(reply: HandshakeMessage): JoinAckResult {
      if (reply.type !== MsgType.JOIN_ACK) throw unexpected(reply, 'JOIN_ACK', authKey ? { authKey, request: joinBody } : undefined);
      use();
      const ack: JoinAckMessage = reply;
      const expected = joinHmacB(keys, ack.rB, rA, opts.addrId, flags, instance).subarray(0, WIRE.HMAC_B_TRUNC);
      if (!constantTimeEqual(expected, ack.hmacB)) {
        throw new PlaitError(
          ErrorCode.AUTH_FAILED,
          'server failed to prove the session keys in JOIN_ACK: tampered message or a different server',
        );
      }
      const confirm = encodeHandshake({
        type: MsgType.JOIN_CONFIRM,
        hmacA: joinHmacA(keys, rA, ack.rB, opts.addrId, flags, instance),
      });
      const sk = subflowKeys(keys.master, rA, ack.rB);
      return { confirm, subflowKeys: { send: sk.c2s, recv: sk.s2c }, cipher: opts.cipher ?? DEFAULT_CIPHER };
    },
  };
}

// ---- server ---------------------------------------------------------------

/** What the server handshake needs from a live session. */
export interface JoinableSession {
  keys: SessionKeys;
  /** The record cipher its HELLO chose (default AES-256-GCM); every JOIN must ask for the same. */
  readonly cipher?: CipherName;
  /** False when the session already has its maximum number of subflows. */
  canAddSubflow(): boolean;
  /** Remember a JOIN R_A; false if already used in this session (replay). */
  rememberJoinNonce(rA: Uint8Array): boolean;
  /** K_auth of the secret its HELLO proved (a named user's); default: the anonymous secret's. */
  readonly authKey?: Uint8Array;
}

export interface ServerHandshakeOptions<S extends JoinableSession = JoinableSession> {
  /** The anonymous secret (plait server --secret); without it only HELLOs with a user hint get in. */
  secretKeys?: SecretKeys;
  /** Named users (plait server --users); HELLOs with a user hint are refused without it. */
  users?: HelloUsers;
  clock: Clock;
  config: Pick<Config, 'timestampWindowMs' | 'maxSubflows'>;
  /** Shared by all connections of the server. */
  replayCache: ReplayCache;
  lookupSession(token: Uint8Array): S | undefined;
  /**
   * Server-wide (and per-user, given the HELLO's user) session limit; false
   * answers a HELLO with BUSY, a string with BUSY and that reason (proven
   * with the user's key). Default: always true.
   */
  canCreateSession?(user?: string): boolean | string;
  /** Record ciphers a HELLO may choose (plait server --cipher); others are refused with CIPHER. Default: all. */
  ciphers?: readonly CipherName[];
  /**
   * This server's instance id (plait server --instance-id): a JOIN naming
   * another instance cannot be for a session here (PROTOCOL.md 4.2).
   */
  instanceId?: number;
  /** True while the server drains (shutting down): new sessions are refused with DRAINING. */
  draining?(): boolean;
}

export interface ReplyStep {
  kind: 'reply';
  /** Encoded JOIN_ACK; keep feeding messages (JOIN_CONFIRM is next). */
  message: Uint8Array;
}
export interface SessionStep {
  kind: 'session';
  /** Encoded HELLO_ACK; send it, then the `ok` record sealed with subflowKeys.send. */
  reply: Uint8Array;
  keys: SessionKeys;
  subflowKeys: DirectionKeys;
  /** The session's record cipher, for this subflow's sealer and opener and every later JOIN. */
  cipher: CipherName;
  backup: boolean;
  addrId: number;
  /** The user the hint named and mac_c proved; undefined for the anonymous secret. */
  user?: string;
  /** That user's keys (for proofs on later refusals of its JOINs). */
  secretKeys: SecretKeys;
}
export interface JoinedStep<S extends JoinableSession = JoinableSession> {
  kind: 'joined';
  /** Send the `ok` record sealed with subflowKeys.send. */
  session: S;
  subflowKeys: DirectionKeys;
  /** The session's cipher (the JOIN repeated it). */
  cipher: CipherName;
  backup: boolean;
  addrId: number;
}
export interface RejectStep {
  kind: 'reject';
  code: ErrorCode;
  reason: string;
  /** Encoded REJECT; send it, then close. */
  message: Uint8Array;
  /** A user-mode AUTH_FAILED's real cause (counted; never sent); `user` is the name the hint carried, if any. */
  userRefusal?: { cause: UserRefusal; user?: string };
}
export type ServerStep<S extends JoinableSession = JoinableSession> =
  | ReplyStep
  | SessionStep
  | JoinedStep<S>
  | RejectStep;

/**
 * A REJECT step. With `proof` the REJECT carries the server's wall clock and
 * a MAC binding it to the request it answers (PROTOCOL.md section 3.1).
 */
export function rejectStep(code: ErrorCode, reason: string, proof?: { authKey: Uint8Array; request: Uint8Array; time: number }): RejectStep {
  if (!proof) return { kind: 'reject', code, reason, message: encodeReject(code, reason) };
  const message = encodeHandshake({ type: MsgType.REJECT, code, reason, proof: { time: Math.max(0, Math.floor(proof.time)), mac: new Uint8Array(32) } });
  const body = message.subarray(3);
  body.set(rejectMac(proof.authKey, proof.request, rejectMacInput(body)), body.length - 32);
  return { kind: 'reject', code, reason, message };
}

/**
 * The REJECT to send for an error thrown while reading the handshake (e.g.
 * a ProtocolError from HandshakeReader). Non-plait errors become INTERNAL
 * without leaking their text to the peer. Not for a RemoteError: a REJECT is
 * never answered.
 */
export function rejectForError(err: unknown): RejectStep {
  if (err instanceof PlaitError) return rejectStep(err.code, err.message);
  return rejectStep(ErrorCode.INTERNAL, 'internal error');
}

function describeSkew(deltaMs: number): string {
  const s = (Math.abs(deltaMs) / 1000).toFixed(1);
  return deltaMs > 0 ? `${s} s ahead of` : `${s} s behind`;
}

type ServerState<S> =
  | { name: 'start' }
  | { name: 'await-confirm'; session: S; rA: Uint8Array; rB: Uint8Array; flags: number; addrId: number; instance: number | undefined }
  | { name: 'done' };

/**
 * Server side of one subflow's handshake. One instance per connection; feed
 * it each decoded message and act on the step. After 'session', 'joined' or
 * 'reject' the handshake is over.
 */
export class ServerHandshake<S extends JoinableSession = JoinableSession> {
  private state: ServerState<S> = { name: 'start' };
  /** Body of the HELLO or JOIN being answered: what a refusal's proof binds to. */
  private request: Uint8Array | undefined;
  /** Keys refusal proofs: the anonymous secret's until a HELLO names its user. */
  private authKey: Uint8Array | undefined;

  constructor(private readonly opts: ServerHandshakeOptions<S>) {
    this.authKey = opts.secretKeys?.authKey;
  }

  /** True once a final step (session, joined, reject) has been returned. */
  get done(): boolean {
    return this.state.name === 'done';
  }

  /** Throws RemoteError if the client sent a REJECT (no reply is due then). */
  onMessage(msg: HandshakeMessage): ServerStep<S> {
    const state = this.state;
    if (msg.type === MsgType.REJECT && state.name !== 'done') {
      this.state = { name: 'done' };
      throw unexpected(msg, '');
    }
    if (state.name === 'start') {
      if (msg.type === MsgType.HELLO || msg.type === MsgType.JOIN) this.request = msg.body;
      if (msg.type === MsgType.HELLO) return this.onHello(msg);
      if (msg.type === MsgType.JOIN) return this.onJoin(msg);
      return this.reject(ErrorCode.PROTOCOL, `expected HELLO or JOIN, got ${typeName(msg.type)}`);
    }
    if (state.name === 'await-confirm') {
      if (msg.type === MsgType.JOIN_CONFIRM) return this.onJoinConfirm(state, msg.hmacA);
      return this.reject(ErrorCode.PROTOCOL, `expected JOIN_CONFIRM, got ${typeName(msg.type)}`);
    }
    return this.reject(ErrorCode.PROTOCOL, `unexpected ${typeName(msg.type)} after the handshake ended`);
  }

  private reject(code: ErrorCode, reason: string): RejectStep {
    this.state = { name: 'done' };
    // Every refusal of a HELLO or JOIN is proven: one HMAC, no state. The
    // client believes UNKNOWN_TOKEN and our clock only when it verifies.
    const request = this.request;
    const authKey = this.authKey ?? DECOY_AUTH_KEY;
    if (!request) return rejectStep(code, reason);
    return rejectStep(code, reason, { authKey, request, time: this.opts.clock.wallNow() });
  }

  /**
   * The same AUTH_FAILED whatever the cause (unknown name, wrong secret,
   * revoked, bad hint), proven with the decoy key: a prober learns nothing.
   */
  private refuseUser(cause: UserRefusal, user?: string): RejectStep {
    this.authKey = DECOY_AUTH_KEY;
    const step = this.reject(ErrorCode.AUTH_FAILED, USER_AUTH_FAILED);
    step.userRefusal = user === undefined ? { cause } : { cause, user };
    return step;
  }

  /**
   * Step 2 in user mode: the keys of the user the hint names, or the
   * refusal. Constant work per HELLO: one hint opening, one map lookup, one
   * HMAC (with the decoy key when there is no user to check against).
   */
  private helloKeys(msg: Extract<HandshakeMessage, { type: typeof MsgType.HELLO }>, macAt: number): { keys: SecretKeys; user?: string } | RejectStep {
    const signed = msg.body.subarray(0, macAt);
    const macOk = (key: Uint8Array): boolean => constantTimeEqual(helloMac(key, signed), msg.mac);
    const users = this.opts.users;
    if (!msg.hint) {
      const anon = this.opts.secretKeys;
      if (anon) return macOk(anon.authKey) ? { keys: anon } : this.reject(ErrorCode.AUTH_FAILED, 'authentication failed: wrong secret or tampered HELLO');
      macOk(DECOY_AUTH_KEY);
      return this.refuseUser('userMissing');
    }
    const name = users
      ? openUserHint(users.identity, msg.hint, { helloPrefix: msg.body.subarray(0, HELLO_MAC_OFFSET), nonce: msg.nonce, clientEphemeral: msg.ephemeral })
      : undefined;
    if (name === undefined) {
      macOk(DECOY_AUTH_KEY);
      return this.refuseUser('userBadHint');
    }
    const entry = users?.find(name);
    if (!entry) {
      macOk(DECOY_AUTH_KEY);
      return this.refuseUser('userUnknown', name);
    }
    if (!macOk(entry.keys.authKey)) return this.refuseUser('userBadSecret', name);
    // Checked after the MAC so that only the holder of the secret can tell... nothing: the reply is the same.
    if (entry.revoked) return this.refuseUser('userRevoked', name);
    this.authKey = entry.keys.authKey;
    return { keys: entry.keys, user: name };
  }

  private onHello(msg: Extract<HandshakeMessage, { type: typeof MsgType.HELLO }>): ServerStep<S> {
    const { clock, config, replayCache } = this.opts;
    // 1. The reader already refused malformed input; re-check in case the
    //    message was built by hand.
    if (msg.version !== WIRE.VERSION) {
      return this.reject(ErrorCode.VERSION, `HELLO has protocol version ${msg.version}, server speaks ${WIRE.VERSION}`);
    }
    const macAt = helloMacOffset(msg.flags);
    const hinted = (msg.flags & FLAG_USER_HINT) !== 0;
    if (msg.body.length !== macAt + 32 || (msg.flags & ~HELLO_FLAGS_KNOWN) !== 0 || hinted !== (msg.hint !== undefined)) {
      return this.reject(ErrorCode.BAD_MESSAGE, 'malformed HELLO');
    }
    // 2. Authenticate before anything that costs state (section 3.2 in user mode).
    const found = this.helloKeys(msg, macAt);
    if ('kind' in found) return found;
    const secretKeys = found.keys;
    // 2a. The cipher, now that mac_c proved nobody on the path chose it
    //     (and so that a stranger learns nothing of our policy).
    const cipher = cipherOfFlags(msg.flags);
    const accepted = this.opts.ciphers ?? CIPHER_NAMES;
    if (cipher === undefined || !accepted.includes(cipher)) {
      const asked = cipher ?? `cipher id ${cipherIdOfFlags(msg.flags)}`;
      return this.reject(
        ErrorCode.CIPHER,
        `server does not accept ${asked}; it accepts ${accepted.join(', ')} (plait server --cipher): start the client with --cipher ${accepted[0] ?? DEFAULT_CIPHER}`,
      );
    }
    // 3. Freshness.
    const skew = msg.timestamp - clock.wallNow();
    if (!(Math.abs(skew) <= config.timestampWindowMs)) {
      return this.reject(
        ErrorCode.STALE_TIMESTAMP,
        `HELLO timestamp ${describeSkew(skew)} the server clock (allowed ±${config.timestampWindowMs / 1000} s): check the clocks (NTP) on both machines`,
      );
    }
    // 4. Replay.
    const verdict = replayCache.checkAndAdd(msg.nonce);
    if (verdict === 'replay') {
      return this.reject(ErrorCode.REPLAY, 'HELLO replayed: its nonce was already used (a captured HELLO sent again?)');
    }
    if (verdict === 'full') {
      return this.reject(
        ErrorCode.BUSY,
        `server busy: too many new sessions in the last ${Math.round(replayCache.ttlMs / 1000)} s, retry later`,
      );
    }
    // 5. Draining (after the MAC, so the refusal is proven and the client
    //    retries elsewhere at once), then the session limits (server-wide, and the user's).
    if (this.opts.draining?.()) {
      return this.reject(ErrorCode.DRAINING, 'this server instance is shutting down: start the session on another one');
    }
    const room = this.opts.canCreateSession ? this.opts.canCreateSession(found.user) : true;
    if (room !== true) {
      return this.reject(ErrorCode.BUSY, typeof room === 'string' ? room : 'server busy: at its session limit, retry later');
    }
    // 6. HELLO_ACK and keys.
    const eph = generateEphemeral();
    let dh: Uint8Array;
    try {
      dh = x25519(eph.privateKey, msg.ephemeral);
    } catch (err) {
      return this.reject(ErrorCode.AUTH_FAILED, err instanceof Error ? err.message : 'invalid X25519 public key');
    }
    const nonce = randomBytes(WIRE.NONCE_BYTES);
    const reply = encodeHandshake({
      type: MsgType.HELLO_ACK,
      nonce,
      ephemeral: eph.publicKey,
      mac: new Uint8Array(32),
    });
    const ackBody = reply.subarray(3);
    ackBody.set(
      helloAckMac(secretKeys.authKey, msg.body, ackBody.subarray(0, HELLO_ACK_MAC_OFFSET)),
      HELLO_ACK_MAC_OFFSET,
    );
    const keys = deriveSessionKeys(dh, secretKeys.pskKey, msg.body, ackBody);
    if (this.opts.lookupSession(keys.token) !== undefined) {
      // 2^-128 per PROTOCOL.md section 2; the client retries with fresh values.
      return this.reject(ErrorCode.INTERNAL, 'session token collision, retry');
    }
    const sk = subflowKeys(keys.master, msg.nonce, nonce);
    this.state = { name: 'done' };
    return {
      kind: 'session',
      reply,
      keys,
      subflowKeys: { send: sk.s2c, recv: sk.c2s },
      cipher,
      backup: (msg.flags & FLAG_BACKUP) !== 0,
      addrId: msg.addrId,
      secretKeys,
      ...(found.user !== undefined ? { user: found.user } : {}),
    };
  }

  private onJoin(msg: Extract<HandshakeMessage, { type: typeof MsgType.JOIN }>): ServerStep<S> {
    if (msg.version !== WIRE.VERSION) {
      return this.reject(ErrorCode.VERSION, `JOIN has protocol version ${msg.version}, server speaks ${WIRE.VERSION}`);
    }
    if ((msg.flags & ~JOIN_FLAGS_KNOWN) !== 0) return this.reject(ErrorCode.BAD_MESSAGE, 'malformed JOIN');
    const mine = this.opts.instanceId;
    if (msg.instance !== undefined && mine !== undefined && msg.instance !== mine) {
      // Sessions live on the instance that made them: this one cannot hold it.
      // Proven, so the client starts a new session at once; a forged instance
      // field breaks the proof (it covers the JOIN as sent), so it costs a path at most.
      return this.reject(
        ErrorCode.UNKNOWN_TOKEN,
        `the session belongs to server instance ${msg.instance}, this is instance ${mine} (that instance is gone or the balancer sent the join here): start a new session`,
      );
    }
    const session = this.opts.lookupSession(msg.token);
    if (!session) {
      return this.reject(
        ErrorCode.UNKNOWN_TOKEN,
        'unknown session token: the session expired or the server restarted; start a new session',
      );
    }
    // Refusals from here on are proven with the secret of the session's user.
    if (session.authKey) this.authKey = session.authKey;
    // Every subflow of a session uses the session's cipher; a JOIN that asks
    // for another is a client bug or tampering (HMAC-A would catch the latter).
    const sessionCipher = session.cipher ?? DEFAULT_CIPHER;
    const joinCipher = cipherOfFlags(msg.flags);
    if (joinCipher !== sessionCipher) {
      return this.reject(
        ErrorCode.CIPHER,
        `JOIN asks for ${joinCipher ?? `cipher id ${cipherIdOfFlags(msg.flags)}`} but the session uses ${sessionCipher}: every subflow must use its session's cipher`,
      );
    }
    if (!session.canAddSubflow()) {
      return this.reject(
        ErrorCode.SESSION_FULL,
        `session full: it already has its maximum number of subflows (maxSubflows = ${this.opts.config.maxSubflows})`,
      );
    }
    if (!session.rememberJoinNonce(msg.rA)) {
      return this.reject(ErrorCode.REPLAY, 'JOIN replayed: R_A already used in this session (a captured JOIN sent again?)');
    }
    // Copy: the message's fields view a body the caller may reuse.
    const rA = copyBytes(msg.rA);
    const rB = randomBytes(WIRE.NONCE_BYTES);
    const hmacB = joinHmacB(session.keys, rB, rA, msg.addrId, msg.flags, msg.instance).subarray(0, WIRE.HMAC_B_TRUNC);
    this.state = { name: 'await-confirm', session, rA, rB, flags: msg.flags, addrId: msg.addrId, instance: msg.instance };
    return { kind: 'reply', message: encodeHandshake({ type: MsgType.JOIN_ACK, rB, hmacB }) };
  }

  private onJoinConfirm(
    st: Extract<ServerState<S>, { name: 'await-confirm' }>,
    hmacA: Uint8Array,
  ): ServerStep<S> {
    const expected = joinHmacA(st.session.keys, st.rA, st.rB, st.addrId, st.flags, st.instance);
    if (!constantTimeEqual(expected, hmacA)) {
      return this.reject(
        ErrorCode.AUTH_FAILED,
        'join authentication failed: HMAC-A did not verify (tampered JOIN or the client has other session keys)',
      );
    }
    // The session may have filled up or ended during the round trip.
    if (this.opts.lookupSession(st.session.keys.token) !== st.session) {
      return this.reject(ErrorCode.UNKNOWN_TOKEN, 'the session ended during the join; start a new session');
    }
    if (!st.session.canAddSubflow()) {
      return this.reject(
        ErrorCode.SESSION_FULL,
        `session full: it already has its maximum number of subflows (maxSubflows = ${this.opts.config.maxSubflows})`,
      );
    }
    const sk = subflowKeys(st.session.keys.master, st.rA, st.rB);
    this.state = { name: 'done' };
    return {
      kind: 'joined',
      session: st.session,
      subflowKeys: { send: sk.s2c, recv: sk.c2s },
      cipher: st.session.cipher ?? DEFAULT_CIPHER,
      backup: (st.flags & FLAG_BACKUP) !== 0,
      addrId: st.addrId,
    };
  }
}

/** For logs: `AUTH_FAILED: reason`. */
export function describeReject(step: RejectStep): string {
  return `${errorName(step.code)}: ${step.reason}`;
}
