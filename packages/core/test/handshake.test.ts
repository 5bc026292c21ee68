import { beforeEach, describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { ErrorCode, PlaitError, ProtocolError, RemoteError } from '../src/errors.js';
import {
  rejectForError,
  ServerHandshake,
  startHello,
  startJoin,
  type JoinableSession,
  type RejectStep,
  type ServerStep,
} from '../src/handshake.js';
import {
  encodeHandshake,
  encodeReject,
  HandshakeReader,
  MsgType,
  type HandshakeMessage,
  type HelloMessage,
} from '../src/handshake-messages.js';
import { deriveSecretKeys, generateEphemeral, helloMac, type SessionKeys } from '../src/keys.js';
import { RecordOpener, RecordSealer } from '../src/record.js';
import { NonceLog, ReplayCache } from '../src/replay-cache.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const SECRET = deriveSecretKeys('correct horse battery staple 42');
const OTHER = deriveSecretKeys('a completely different secret!!');

function decode(bytes: Uint8Array): HandshakeMessage {
  const r = new HandshakeReader();
  r.push(bytes);
  const m = r.next();
  if (!m) throw new Error('incomplete message');
  expect(r.takeRest().length).toBe(0);
  return m;
}

/** Flip one bit of an encoded message at body offset `at`. */
function flip(bytes: Uint8Array, at: number): Uint8Array {
  const c = bytes.slice();
  c[3 + at] = (c[3 + at] ?? 0) ^ 0x01;
  return c;
}

class TestSession implements JoinableSession {
  subflows = 1;
  readonly nonces = new NonceLog(DEFAULT_CONFIG.joinNonces);
  constructor(
    readonly keys: SessionKeys,
    readonly max = DEFAULT_CONFIG.maxSubflows,
  ) {}
  canAddSubflow(): boolean {
    return this.subflows < this.max;
  }
  rememberJoinNonce(rA: Uint8Array): boolean {
    return this.nonces.checkAndAdd(rA);
  }
}

let clock: VirtualClock;
let replayCache: ReplayCache;
let sessions: Map<string, TestSession>;
let sessionLimitReached: boolean;

function server(secretKeys = SECRET): ServerHandshake<TestSession> {
  return new ServerHandshake<TestSession>({
    secretKeys,
    clock,
    config: DEFAULT_CONFIG,
    replayCache,
    lookupSession: (token) => sessions.get(hex(token)),
    canCreateSession: () => !sessionLimitReached,
  });
}

function expectReject(step: ServerStep<TestSession>, code: ErrorCode, reason?: RegExp): RejectStep {
  expect(step.kind).toBe('reject');
  const r = step as RejectStep;
  expect(r.code).toBe(code);
  if (reason) expect(r.reason).toMatch(reason);
  // The encoded REJECT carries the same code and reason.
  const m = decode(r.message);
  expect(m.type).toBe(MsgType.REJECT);
  if (m.type === MsgType.REJECT) {
    expect(m.code).toBe(code);
    expect(m.reason).toBe(r.reason);
  }
  return r;
}

function expectThrowCode(fn: () => unknown, code: ErrorCode, cls: abstract new (...args: never[]) => PlaitError = PlaitError): PlaitError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(cls);
    expect((e as PlaitError).code).toBe(code);
    return e as PlaitError;
  }
  return expect.unreachable('expected an error');
}

/** Run a full HELLO exchange and register the session server-side. */
function establish(): { clientKeys: SessionKeys; session: TestSession } {
  const c = startHello(SECRET, { backup: false, addrId: 0 }, clock);
  const step = server().onMessage(decode(c.message));
  if (step.kind !== 'session') throw new Error(`expected session, got ${step.kind}`);
  const res = c.finish(decode(step.reply));
  const session = new TestSession(step.keys);
  sessions.set(hex(step.keys.token), session);
  return { clientKeys: res.keys, session };
}

beforeEach(() => {
  clock = new VirtualClock();
  replayCache = ReplayCache.forConfig(DEFAULT_CONFIG, clock);
  sessions = new Map();
  sessionLimitReached = false;
});

describe('HELLO', () => {
  it('both sides derive the same keys and opposite record directions', () => {
    const c = startHello(SECRET, { backup: true, addrId: 5 }, clock);
    const hello = decode(c.message) as HelloMessage;
    expect(hello.timestamp).toBe(clock.wallNow());
    const step = server().onMessage(hello);
    expect(step.kind).toBe('session');
    if (step.kind !== 'session') return;
    expect(step.backup).toBe(true);
    expect(step.addrId).toBe(5);
    const res = c.finish(decode(step.reply));
    for (const k of ['master', 'keyA', 'keyB', 'token'] as const) expect(hex(res.keys[k])).toBe(hex(step.keys[k]));
    expect(res.keys.token.length).toBe(16);
    expect(hex(res.subflowKeys.send)).toBe(hex(step.subflowKeys.recv));
    expect(hex(res.subflowKeys.recv)).toBe(hex(step.subflowKeys.send));
    expect(hex(res.subflowKeys.send)).not.toBe(hex(res.subflowKeys.recv));

    // The keys actually work with the record layer, both ways.
    const up = new RecordOpener(step.subflowKeys.recv);
    up.push(new RecordSealer(res.subflowKeys.send).seal(Uint8Array.of(1, 2, 3)));
    expect(Array.from(up.next() ?? [])).toEqual([1, 2, 3]);
    const down = new RecordOpener(res.subflowKeys.recv);
    down.push(new RecordSealer(step.subflowKeys.send).seal(Uint8Array.of(4)));
    expect(Array.from(down.next() ?? [])).toEqual([4]);
  });

  it('fresh sessions get fresh keys', () => {
    const a = establish();
    const b = establish();
    expect(hex(a.clientKeys.master)).not.toBe(hex(b.clientKeys.master));
    expect(hex(a.clientKeys.token)).not.toBe(hex(b.clientKeys.token));
  });

  it('wrong secret -> AUTH_FAILED', () => {
    const c = startHello(OTHER, { backup: false, addrId: 0 }, clock);
    expectReject(server().onMessage(decode(c.message)), ErrorCode.AUTH_FAILED, /wrong secret or tampered HELLO/);
    expect(replayCache.size).toBe(0); // strangers cannot fill the cache
  });

  it('tampered HELLO (mac, any covered field) -> AUTH_FAILED, checked before the timestamp', () => {
    const c = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    for (const at of [2, 5, 20, 50, 80, 106]) {
      expectReject(server().onMessage(decode(flip(c.message, at))), ErrorCode.AUTH_FAILED);
    }
    // Tampered and stale: the MAC is checked first.
    clock = new VirtualClock(1_700_000_000_000 + 3_600_000);
    expectReject(server().onMessage(decode(flip(c.message, 90))), ErrorCode.AUTH_FAILED);
  });

  it('stale or future timestamp -> STALE_TIMESTAMP with an actionable reason; the edge is accepted', async () => {
    const old = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    const edge = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    await clock.advance(30_000);
    expect(server().onMessage(decode(edge.message)).kind).toBe('session');
    await clock.advance(1);
    const r = expectReject(server().onMessage(decode(old.message)), ErrorCode.STALE_TIMESTAMP, /check the clocks/);
    expect(r.reason).toMatch(/30\.0 s behind/);

    const ahead = new VirtualClock(clock.wallNow() + 45_000);
    const fut = startHello(SECRET, { backup: false, addrId: 0 }, ahead);
    expectReject(server().onMessage(decode(fut.message)), ErrorCode.STALE_TIMESTAMP, /45\.0 s ahead/);
    // Stale HELLOs are not recorded either.
    expect(replayCache.size).toBe(1);
  });

  it('replayed HELLO -> REPLAY, even on another connection', () => {
    const c = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    expect(server().onMessage(decode(c.message)).kind).toBe('session');
    expectReject(server().onMessage(decode(c.message)), ErrorCode.REPLAY, /replayed/);
  });

  it('replay cache full -> BUSY until entries age out', async () => {
    replayCache = new ReplayCache(2, 60_000, clock);
    for (let i = 0; i < 2; i++) {
      expect(server().onMessage(decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message)).kind).toBe('session');
    }
    expectReject(
      server().onMessage(decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message)),
      ErrorCode.BUSY,
      /retry later/,
    );
    await clock.advance(60_000);
    expect(server().onMessage(decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message)).kind).toBe('session');
  });

  it('session limit -> BUSY, after the replay check', () => {
    const c = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    expect(server().onMessage(decode(c.message)).kind).toBe('session');
    sessionLimitReached = true;
    expectReject(server().onMessage(decode(c.message)), ErrorCode.REPLAY);
    expectReject(
      server().onMessage(decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message)),
      ErrorCode.BUSY,
      /session limit/,
    );
  });

  it('token collision -> INTERNAL', () => {
    const any = new TestSession(establish().clientKeys);
    const s = new ServerHandshake<TestSession>({
      secretKeys: SECRET,
      clock,
      config: DEFAULT_CONFIG,
      replayCache,
      lookupSession: () => any,
    });
    expectReject(s.onMessage(decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message)), ErrorCode.INTERNAL);
  });

  it('authenticated HELLO with a low-order X25519 key -> AUTH_FAILED', () => {
    const fields = {
      type: MsgType.HELLO,
      version: 1,
      flags: 0,
      addrId: 0,
      timestamp: clock.wallNow(),
      nonce: new Uint8Array(32).fill(1),
      ephemeral: new Uint8Array(32), // the zero point
      mac: new Uint8Array(32),
    } as const;
    const enc = encodeHandshake(fields);
    enc.set(helloMac(SECRET.authKey, enc.subarray(3, 78)), 78);
    expectReject(server().onMessage(decode(enc)), ErrorCode.AUTH_FAILED, /X25519/);
  });

  it('a hand-built HELLO with another version -> VERSION', () => {
    const m = decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message) as HelloMessage;
    expectReject(server().onMessage({ ...m, version: 2 }), ErrorCode.VERSION);
  });

  it('client: a HELLO_ACK without proof of the secret -> AUTH_FAILED', () => {
    const c = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    const step = server().onMessage(decode(c.message));
    if (step.kind !== 'session') throw new Error('no session');
    for (const at of [0, 40, 70, 95]) {
      const c2 = startHello(SECRET, { backup: false, addrId: 0 }, clock);
      // Either tampered in transit, or a server that answers with the wrong secret.
      expectThrowCode(() => c2.finish(decode(flip(step.reply, at))), ErrorCode.AUTH_FAILED);
    }
    // A server with another secret (say, it skipped the check) cannot make mac_s.
    const e = generateEphemeral();
    const forged = encodeHandshake({ type: MsgType.HELLO_ACK, nonce: new Uint8Array(32), ephemeral: e.publicKey, mac: new Uint8Array(32) });
    const err = expectThrowCode(() => c.finish(decode(forged)), ErrorCode.AUTH_FAILED);
    expect(err.message).toMatch(/server failed to prove the secret/);
  });

  it('client: a REJECT becomes RemoteError with its code; another message is PROTOCOL', () => {
    const c = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    const e = expectThrowCode(() => c.finish(decode(encodeReject(ErrorCode.BUSY, 'server busy'))), ErrorCode.BUSY, RemoteError);
    expect(e.message).toMatch(/server busy/);
    expectThrowCode(() => c.finish(decode(encodeReject(200, 'future code'))), ErrorCode.INTERNAL, RemoteError);
    expectThrowCode(
      () => c.finish(decode(encodeHandshake({ type: MsgType.JOIN_CONFIRM, hmacA: new Uint8Array(32) }))),
      ErrorCode.PROTOCOL,
      ProtocolError,
    );
  });
});

describe('JOIN', () => {
  it('adds a subflow: both sides agree on fresh record keys', () => {
    const { clientKeys, session } = establish();
    const j = startJoin(clientKeys, { backup: true, addrId: 2 });
    const s = server();
    const ack = s.onMessage(decode(j.message));
    expect(ack.kind).toBe('reply');
    if (ack.kind !== 'reply') return;
    const res = j.onJoinAck(decode(ack.message));
    const done = s.onMessage(decode(res.confirm));
    expect(done.kind).toBe('joined');
    if (done.kind !== 'joined') return;
    expect(done.session).toBe(session);
    expect(done.backup).toBe(true);
    expect(done.addrId).toBe(2);
    expect(hex(res.subflowKeys.send)).toBe(hex(done.subflowKeys.recv));
    expect(hex(res.subflowKeys.recv)).toBe(hex(done.subflowKeys.send));
    expect(s.done).toBe(true);

    // A second join gets different keys.
    const j2 = startJoin(clientKeys, { backup: false, addrId: 2 });
    const s2 = server();
    const ack2 = s2.onMessage(decode(j2.message));
    if (ack2.kind !== 'reply') throw new Error('no reply');
    const res2 = j2.onJoinAck(decode(ack2.message));
    expect(s2.onMessage(decode(res2.confirm)).kind).toBe('joined');
    expect(hex(res2.subflowKeys.send)).not.toBe(hex(res.subflowKeys.send));
  });

  it('unknown token -> UNKNOWN_TOKEN', () => {
    const { clientKeys } = establish();
    sessions.clear();
    expectReject(server().onMessage(decode(startJoin(clientKeys, { backup: false, addrId: 1 }).message)), ErrorCode.UNKNOWN_TOKEN, /start a new session/);
  });

  it('session full -> SESSION_FULL, before the replay check', () => {
    const { clientKeys, session } = establish();
    const j = startJoin(clientKeys, { backup: false, addrId: 1 });
    session.subflows = session.max;
    expectReject(server().onMessage(decode(j.message)), ErrorCode.SESSION_FULL, /maxSubflows/);
    // The refused JOIN did not consume its nonce.
    session.subflows = 1;
    expect(server().onMessage(decode(j.message)).kind).toBe('reply');
  });

  it('session filled up during the round trip -> SESSION_FULL at JOIN_CONFIRM', () => {
    const { clientKeys, session } = establish();
    const j = startJoin(clientKeys, { backup: false, addrId: 1 });
    const s = server();
    const ack = s.onMessage(decode(j.message));
    if (ack.kind !== 'reply') throw new Error('no reply');
    const res = j.onJoinAck(decode(ack.message));
    session.subflows = session.max;
    expectReject(s.onMessage(decode(res.confirm)), ErrorCode.SESSION_FULL);
  });

  it('replayed JOIN nonce -> REPLAY', () => {
    const { clientKeys } = establish();
    const j = startJoin(clientKeys, { backup: false, addrId: 1 });
    expect(server().onMessage(decode(j.message)).kind).toBe('reply');
    expectReject(server().onMessage(decode(j.message)), ErrorCode.REPLAY, /R_A already used/);
  });

  it('tampered HMAC-A -> AUTH_FAILED', () => {
    const { clientKeys } = establish();
    const j = startJoin(clientKeys, { backup: false, addrId: 1 });
    const s = server();
    const ack = s.onMessage(decode(j.message));
    if (ack.kind !== 'reply') throw new Error('no reply');
    const res = j.onJoinAck(decode(ack.message));
    expectReject(s.onMessage(decode(flip(res.confirm, 17))), ErrorCode.AUTH_FAILED, /HMAC-A/);
  });

  it('a client without the session keys cannot confirm -> AUTH_FAILED', () => {
    const { clientKeys } = establish();
    // Knows the token (it is sent in the clear) but not key_a / key_b.
    const fake: SessionKeys = { ...clientKeys, keyA: new Uint8Array(32), keyB: new Uint8Array(32) };
    const j = startJoin(fake, { backup: false, addrId: 1 });
    const s = server();
    const ack = s.onMessage(decode(j.message));
    if (ack.kind !== 'reply') throw new Error('no reply');
    // The fake client cannot verify hmac_b either.
    expectThrowCode(() => j.onJoinAck(decode(ack.message)), ErrorCode.AUTH_FAILED);
    expectReject(s.onMessage(decode(encodeHandshake({ type: MsgType.JOIN_CONFIRM, hmacA: new Uint8Array(32) }))), ErrorCode.AUTH_FAILED);
  });

  it('client: tampered hmac_b or R_B -> AUTH_FAILED', () => {
    const { clientKeys } = establish();
    for (const at of [0, 31, 32, 39]) {
      const j = startJoin(clientKeys, { backup: false, addrId: 1 });
      const ack = server().onMessage(decode(j.message));
      if (ack.kind !== 'reply') throw new Error('no reply');
      const e = expectThrowCode(() => j.onJoinAck(decode(flip(ack.message, at))), ErrorCode.AUTH_FAILED);
      expect(e.message).toMatch(/JOIN_ACK/);
    }
  });

  it('JOIN with addr_id/flags altered in transit fails at the client (hmac_b covers them)', () => {
    const { clientKeys } = establish();
    const j = startJoin(clientKeys, { backup: false, addrId: 1 });
    const altered = j.message.slice();
    altered[3 + 2] = 9; // addr_id
    const ack = server().onMessage(decode(altered));
    if (ack.kind !== 'reply') throw new Error('no reply');
    expectThrowCode(() => j.onJoinAck(decode(ack.message)), ErrorCode.AUTH_FAILED);
  });

  it('session ended during the round trip -> UNKNOWN_TOKEN at JOIN_CONFIRM', () => {
    const { clientKeys } = establish();
    const j = startJoin(clientKeys, { backup: false, addrId: 1 });
    const s = server();
    const ack = s.onMessage(decode(j.message));
    if (ack.kind !== 'reply') throw new Error('no reply');
    const res = j.onJoinAck(decode(ack.message));
    sessions.clear();
    expectReject(s.onMessage(decode(res.confirm)), ErrorCode.UNKNOWN_TOKEN);
  });
});

describe('server state machine', () => {
  const confirm = () => decode(encodeHandshake({ type: MsgType.JOIN_CONFIRM, hmacA: new Uint8Array(32) }));

  it('a message in the wrong state -> PROTOCOL', () => {
    expectReject(server().onMessage(confirm()), ErrorCode.PROTOCOL, /expected HELLO or JOIN/);
    expectReject(
      server().onMessage(decode(encodeHandshake({ type: MsgType.JOIN_ACK, rB: new Uint8Array(32), hmacB: new Uint8Array(8) }))),
      ErrorCode.PROTOCOL,
    );

    const { clientKeys } = establish();
    const s = server();
    expect(s.onMessage(decode(startJoin(clientKeys, { backup: false, addrId: 1 }).message)).kind).toBe('reply');
    expectReject(s.onMessage(decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message)), ErrorCode.PROTOCOL, /expected JOIN_CONFIRM/);
    // Once failed, it stays over.
    expect(s.done).toBe(true);
    expectReject(s.onMessage(confirm()), ErrorCode.PROTOCOL, /after the handshake ended/);

    const s2 = server();
    expect(s2.onMessage(decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message)).kind).toBe('session');
    expectReject(s2.onMessage(decode(startHello(SECRET, { backup: false, addrId: 0 }, clock).message)), ErrorCode.PROTOCOL);
  });

  it('a REJECT from the client is raised as RemoteError', () => {
    const s = server();
    expectThrowCode(() => s.onMessage(decode(encodeReject(ErrorCode.AUTH_FAILED, 'bad hmac_b'))), ErrorCode.AUTH_FAILED, RemoteError);
    expect(s.done).toBe(true);
  });

  it('rejectForError turns reader errors into a REJECT, hiding foreign error text', () => {
    const r = new HandshakeReader();
    r.push(Uint8Array.of(0x01, 0xff, 0xff));
    let err: unknown;
    try {
      r.next();
    } catch (e) {
      err = e;
    }
    const step = rejectForError(err);
    expect(step.code).toBe(ErrorCode.BAD_MESSAGE);
    expect(decode(step.message).type).toBe(MsgType.REJECT);
    const internal = rejectForError(new Error('secret path /etc/x'));
    expect(internal.code).toBe(ErrorCode.INTERNAL);
    expect(internal.reason).not.toMatch(/etc/);
  });
});

describe('proven refusals (section 3.1)', () => {
  it('a stale HELLO is refused with the server time, verified by the client, and a retry with that offset succeeds', () => {
    const skewed = new VirtualClock(clock.wallNow() - 45_000); // a router that booted with a wrong date
    const c = startHello(SECRET, { backup: false, addrId: 0 }, skewed);
    const r = expectReject(server().onMessage(decode(c.message)), ErrorCode.STALE_TIMESTAMP);
    const err = expectThrowCode(() => c.finish(decode(r.message)), ErrorCode.STALE_TIMESTAMP, RemoteError) as RemoteError;
    expect(err.verified).toBe(true);
    expect(err.serverTime).toBe(clock.wallNow());
    const offset = err.serverTime! - skewed.wallNow();
    const retry = startHello(SECRET, { backup: false, addrId: 0 }, skewed, offset);
    expect(server().onMessage(decode(retry.message)).kind).toBe('session');
  });

  it('a forged, tampered or replayed refusal does not verify', () => {
    const c = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    const other = startHello(SECRET, { backup: false, addrId: 0 }, clock);
    // Unproven (a stranger on the path): no proof at all.
    const forged = expectThrowCode(() => c.finish(decode(encodeReject(ErrorCode.STALE_TIMESTAMP, 'x'))), ErrorCode.STALE_TIMESTAMP, RemoteError) as RemoteError;
    expect(forged.verified).toBe(false);
    expect(forged.serverTime).toBeUndefined();
    // A real proof for another HELLO, replayed against this one.
    clock = new VirtualClock(1_700_000_000_000 + 3_600_000);
    const proofForOther = expectReject(server().onMessage(decode(other.message)), ErrorCode.STALE_TIMESTAMP);
    const c2 = startHello(SECRET, { backup: false, addrId: 0 }, new VirtualClock());
    const replayed = expectThrowCode(() => c2.finish(decode(proofForOther.message)), ErrorCode.STALE_TIMESTAMP, RemoteError) as RemoteError;
    expect(replayed.verified).toBe(false);
    // The right proof with one bit of its time flipped.
    const own = expectReject(server().onMessage(decode(c.message)), ErrorCode.STALE_TIMESTAMP);
    const tampered = own.message.slice();
    tampered[tampered.length - 33] = (tampered[tampered.length - 33] ?? 0) ^ 1;
    const c3 = expectThrowCode(() => c.finish(decode(tampered)), ErrorCode.STALE_TIMESTAMP, RemoteError) as RemoteError;
    expect(c3.verified).toBe(false);
    // A server with another secret cannot prove anything to us.
    const wrong = startHello(SECRET, { backup: false, addrId: 0 }, new VirtualClock());
    const r = expectReject(server(OTHER).onMessage(decode(wrong.message)), ErrorCode.AUTH_FAILED);
    expect((expectThrowCode(() => wrong.finish(decode(r.message)), ErrorCode.AUTH_FAILED, RemoteError) as RemoteError).verified).toBe(false);
  });

  it('UNKNOWN_TOKEN for a JOIN is proven to a client that knows the secret', () => {
    const { clientKeys } = establish();
    sessions.clear(); // the server forgot the session (restart, expiry)
    const j = startJoin(clientKeys, { backup: false, addrId: 1 }, SECRET.authKey);
    const r = expectReject(server().onMessage(decode(j.message)), ErrorCode.UNKNOWN_TOKEN);
    const err = expectThrowCode(() => j.onJoinAck(decode(r.message)), ErrorCode.UNKNOWN_TOKEN, RemoteError) as RemoteError;
    expect(err.verified).toBe(true);
    // The same bytes forged by a hostile path without the proof: unverified.
    const j2 = startJoin(clientKeys, { backup: false, addrId: 1 }, SECRET.authKey);
    const forged = expectThrowCode(() => j2.onJoinAck(decode(encodeReject(ErrorCode.UNKNOWN_TOKEN, 'gone'))), ErrorCode.UNKNOWN_TOKEN, RemoteError) as RemoteError;
    expect(forged.verified).toBe(false);
  });
});
