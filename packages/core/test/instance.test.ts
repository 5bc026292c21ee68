import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.js';
import { makeConfig } from '../src/config.js';
import { connectSession, joinSession } from '../src/connector.js';
import { decodeControl, encodeControl } from '../src/control.js';
import { ErrorCode, PlaitError, ProtocolError, RemoteError } from '../src/errors.js';
import { decodeBody, HandshakeReader, MsgType, type HandshakeMessage, type RejectMessage } from '../src/handshake-messages.js';
import { ServerHandshake, startJoin, type JoinableSession } from '../src/handshake.js';
import { deriveSecretKeys, type SessionKeys } from '../src/keys.js';
import { ReplayCache, NonceLog } from '../src/replay-cache.js';
import type { Session } from '../src/session.js';
import { MemoryLink } from '@plait/testkit';
import { SECRET, settle, testAcceptor } from './harness.js';

const secretKeys = deriveSecretKeys(SECRET);

function fakeKeys(): SessionKeys {
  const b = (n: number): Uint8Array => new Uint8Array(32).fill(n);
  return { master: b(1), keyA: b(2), keyB: b(3), token: new Uint8Array(16).fill(4) };
}

function decodeOne(bytes: Uint8Array): HandshakeMessage {
  const r = new HandshakeReader();
  r.push(bytes);
  const m = r.next();
  if (!m) throw new Error('incomplete message');
  return m;
}

/** A server handshake holding one session (keys `keys`), as instance `instanceId`. */
function serverFor(keys: SessionKeys, instanceId: number | undefined): ServerHandshake {
  const clock = new VirtualClock();
  const session: JoinableSession = {
    keys,
    canAddSubflow: () => true,
    rememberJoinNonce: (() => {
      const log = new NonceLog(16);
      return (rA: Uint8Array) => log.checkAndAdd(rA);
    })(),
  };
  const hex = (t: Uint8Array): string => Buffer.from(t).toString('hex');
  return new ServerHandshake({
    secretKeys,
    clock,
    config: makeConfig({}),
    replayCache: new ReplayCache(16, 60_000, clock),
    lookupSession: (t) => (hex(t) === hex(keys.token) ? session : undefined),
    ...(instanceId !== undefined ? { instanceId } : {}),
  });
}

describe('JOIN names the instance that holds the session (PROTOCOL.md 4.2)', () => {
  it('puts the instance at bytes 6-7 of the message, with length 53 and flag bit 3, for a balancer to read', () => {
    const join = startJoin(fakeKeys(), { backup: false, addrId: 2, instance: 0x0102 });
    const m = join.message;
    expect(m.length).toBe(3 + 53);
    expect([...m.subarray(0, 3)]).toEqual([MsgType.JOIN, 0x00, 0x35]);
    expect(m[3]).toBe(1); // version
    expect((m[4]! & 0x08) !== 0).toBe(true);
    expect([...m.subarray(6, 8)]).toEqual([0x01, 0x02]);
    expect([...m.subarray(8, 24)]).toEqual([...fakeKeys().token]);
    const decoded = decodeOne(m);
    expect(decoded.type === MsgType.JOIN && decoded.instance).toBe(0x0102);
  });

  it('without an instance the JOIN is byte for byte the 51-byte layout of before', () => {
    const m = startJoin(fakeKeys(), { backup: false, addrId: 0 }).message;
    expect(m.length).toBe(3 + 51);
    expect(m[4]! & 0x08).toBe(0);
    expect([...m.subarray(6, 22)]).toEqual([...fakeKeys().token]);
  });

  it('refuses a JOIN whose instance bit does not match its size; in a HELLO bit 3 is the user hint', () => {
    const m = startJoin(fakeKeys(), { backup: false, addrId: 0 }).message;
    const body = m.slice(3);
    body[1] = body[1]! | 0x08; // claims an instance, but 51 bytes
    expect(() => decodeBody(MsgType.JOIN, body)).toThrow(ProtocolError);
    // In a HELLO bit 3 is the user hint (PROTOCOL.md 3.2): a 107-byte HELLO claiming one is the wrong size.
    const hello = new Uint8Array(107);
    hello[0] = 1;
    hello[1] = 0x08;
    expect(() => decodeBody(MsgType.HELLO, hello)).toThrow(/expected 156/);
    hello[1] = 0x10;
    expect(() => decodeBody(MsgType.HELLO, hello)).toThrow(/reserved flag bits/);
  });

  it('a forged instance field reaching the wrong instance gets an UNKNOWN_TOKEN the client cannot verify: the path fails, the session lives', () => {
    const keys = fakeKeys();
    const join = startJoin(keys, { backup: false, addrId: 0, instance: 3 }, secretKeys.authKey);
    const forged = join.message.slice();
    forged[7] = 4; // an attacker on the path re-routes it to instance 4, which does not hold it
    const elsewhere = { ...fakeKeys(), token: new Uint8Array(16).fill(9) };
    const step = serverFor(elsewhere, 4).onMessage(decodeOne(forged));
    expect(step.kind).toBe('reject');
    if (step.kind !== 'reject') return;
    expect(step.code).toBe(ErrorCode.UNKNOWN_TOKEN);
    const err = join.refusal(decodeOne(step.message) as RejectMessage);
    expect(err.code).toBe(ErrorCode.UNKNOWN_TOKEN);
    expect(err.verified).toBe(false);
  });

  it('an honest JOIN that the balancer sends to another instance gets a proven UNKNOWN_TOKEN (the owner is gone: start anew)', () => {
    const keys = fakeKeys();
    const join = startJoin(keys, { backup: false, addrId: 0, instance: 3 }, secretKeys.authKey);
    // Even a session with this token on instance 4 cannot be ours: the field is checked first.
    const step = serverFor(keys, 4).onMessage(decodeOne(join.message));
    expect(step.kind).toBe('reject');
    if (step.kind !== 'reject') return;
    expect(step.reason).toMatch(/instance 3.*instance 4/);
    expect(join.refusal(decodeOne(step.message) as RejectMessage).verified).toBe(true);
  });

  it('the join HMACs cover the instance: a changed field fails the join even where the server does not check it', () => {
    const keys = fakeKeys();
    const join = startJoin(keys, { backup: false, addrId: 0, instance: 3 }, secretKeys.authKey);
    const forged = join.message.slice();
    forged[7] = 9;
    const step = serverFor(keys, undefined).onMessage(decodeOne(forged));
    expect(step.kind).toBe('reply');
    if (step.kind !== 'reply') return;
    let err: unknown;
    try {
      join.onJoinAck(decodeOne(step.message));
    } catch (e) {
      err = e;
    }
    expect(err instanceof PlaitError && err.code).toBe(ErrorCode.AUTH_FAILED);
  });

  it('the ok message carries the instance; a value outside u16 is a protocol error', () => {
    const ok = decodeControl(encodeControl({ t: 'ok', subflow: 1, instance: 65535 }));
    expect(ok).toEqual({ t: 'ok', subflow: 1, instance: 65535 });
    expect(() => encodeControl({ t: 'ok', subflow: 1, instance: 65536 })).toThrow(PlaitError);
    // A hand-built body with instance 70000 (MessagePack: fixmap 3, "t":"ok", "subflow":1, "instance": uint32 70000).
    const bad = Buffer.concat([
      Buffer.from([0x83, 0xa1]), Buffer.from('t'), Buffer.from([0xa2]), Buffer.from('ok'),
      Buffer.from([0xa7]), Buffer.from('subflow'), Buffer.from([0x01]),
      Buffer.from([0xa8]), Buffer.from('instance'), Buffer.from([0xce, 0x00, 0x01, 0x11, 0x70]),
    ]);
    expect(() => decodeControl(new Uint8Array(bad))).toThrow(/bad instance/);
  });

  it('end to end: a session on instance 7 learns it from ok and its joins name it and succeed', async () => {
    const clock = new VirtualClock();
    const config = makeConfig({});
    const acceptor = testAcceptor(clock, config, { instanceId: 7, onSession: () => ({ stream: () => undefined }) });
    const l0 = new MemoryLink(clock, { delayMs: 2 });
    void acceptor.accept(l0.b);
    const { session } = await settle(clock, connectSession(l0.a, { secretKeys, config, clock }));
    expect(session.peerInstance).toBe(7);
    const l1 = new MemoryLink(clock, { delayMs: 2 });
    const firstBytes: number[] = [];
    const tap = l1.b;
    // Record what reaches the server's side of the link before the acceptor reads it.
    const origSetHandlers = tap.setHandlers.bind(tap);
    tap.setHandlers = (h) =>
      origSetHandlers({
        ...h,
        data: (c: Uint8Array) => {
          if (firstBytes.length < 8) firstBytes.push(...c.subarray(0, 8 - firstBytes.length));
          h.data?.(c);
        },
      });
    void acceptor.accept(tap);
    await settle(clock, joinSession(session, l1.a, { clock, addrId: 1, secretKeys }));
    expect(session.subflowCount).toBe(2);
    expect(firstBytes).toEqual([0x03, 0x00, 0x35, 0x01, 0x08, 0x01, 0x00, 0x07]);
  });
});

describe('draining (plait server on SIGTERM)', () => {
  async function drainSetup(): Promise<{ clock: VirtualClock; acceptor: ReturnType<typeof testAcceptor>; session: Session; config: ReturnType<typeof makeConfig> }> {
    const clock = new VirtualClock();
    const config = makeConfig({});
    const acceptor = testAcceptor(clock, config, { onSession: () => ({ stream: () => undefined }) });
    const l0 = new MemoryLink(clock, { delayMs: 2 });
    void acceptor.accept(l0.b);
    const { session } = await settle(clock, connectSession(l0.a, { secretKeys, config, clock }));
    return { clock, acceptor, session, config };
  }

  it('refuses new sessions with a proven DRAINING and keeps serving joins of live ones', async () => {
    const { clock, acceptor, session, config } = await drainSetup();
    acceptor.drain();
    const l1 = new MemoryLink(clock, { delayMs: 2 });
    void acceptor.accept(l1.b);
    let refusal: unknown;
    await settle(clock, connectSession(l1.a, { secretKeys, config, clock }).catch((e: unknown) => void (refusal = e)));
    expect(refusal).toBeInstanceOf(RemoteError);
    expect((refusal as RemoteError).code).toBe(ErrorCode.DRAINING);
    expect((refusal as RemoteError).verified).toBe(true);
    const l2 = new MemoryLink(clock, { delayMs: 2 });
    void acceptor.accept(l2.b);
    await settle(clock, joinSession(session, l2.a, { clock, addrId: 1, secretKeys }));
    expect(session.subflowCount).toBe(2);
    expect(acceptor.sessionCount).toBe(1);
  });

  it('endDrained closes every session with DRAINING, which the client sees as the reason', async () => {
    const { clock, acceptor, session } = await drainSetup();
    let closedWith: PlaitError | undefined;
    session.setEvents({ stream: () => undefined, closed: (err) => void (closedWith = err as PlaitError | undefined) });
    acceptor.drain();
    acceptor.endDrained();
    await clock.advance(50);
    expect(session.isClosed).toBe(true);
    expect(closedWith?.code).toBe(ErrorCode.DRAINING);
    expect(acceptor.sessionCount).toBe(0);
  });

  it('a server that is not draining still makes sessions (the refusal is not a default)', async () => {
    const { acceptor } = await drainSetup();
    expect(acceptor.draining).toBe(false);
    expect(acceptor.sessionCount).toBe(1);
  });
});
