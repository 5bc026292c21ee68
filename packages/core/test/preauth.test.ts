/**
 * Pre-auth budget of the acceptor on a virtual clock (DESIGN principle 8):
 * a stranger gets a few seconds and a few KiB, and idle strangers lose
 * their handshake slot to a real client.
 */
import { describe, expect, it } from 'vitest';
import type { ChannelHandlers } from '../src/channel.js';
import { VirtualClock } from '../src/clock.js';
import { makeConfig } from '../src/config.js';
import { connectSession, joinSession } from '../src/connector.js';
import { ErrorCode } from '../src/errors.js';
import { HandshakeChannel } from '../src/handshake-channel.js';
import { HandshakeReader, MsgType, type HandshakeMessage } from '../src/handshake-messages.js';
import type { HandshakeSlotLimits } from '../src/handshake-slots.js';
import { deriveSecretKeys } from '../src/keys.js';
import { MemoryLink, type MemoryChannel } from '@plait/testkit';
import type { Session } from '../src/session.js';
import { SECRET, settle, testAcceptor } from './harness.js';

const secretKeys = deriveSecretKeys(SECRET);

function setup(slots?: Partial<HandshakeSlotLimits>) {
  const clock = new VirtualClock();
  const config = makeConfig();
  const acceptor = testAcceptor(clock, config, {
    ...(slots ? { handshakeSlots: slots } : {}),
    onSession: () => ({ stream: () => undefined }),
  });
  /** A connection from `source` (the link name becomes the remote label's host). */
  const open = (source: string, delayMs = 0) => {
    const link = new MemoryLink(clock, { delayMs }, source);
    const accepted = acceptor.accept(link.b);
    return { link, accepted };
  };
  return { clock, config, acceptor, open };
}

/** Watch what the server sends to the client end `a` (that end is otherwise unused). */
function watch(a: MemoryChannel) {
  const reader = new HandshakeReader();
  const got: HandshakeMessage[] = [];
  let closed = false;
  const h: ChannelHandlers = {
    data: (c) => {
      reader.push(c);
      for (let m = reader.next(); m; m = reader.next()) got.push(m);
    },
    drain: () => undefined,
    close: () => void (closed = true),
  };
  a.setHandlers(h);
  return {
    get closed() {
      return closed;
    },
    rejectCode(): number | undefined {
      const r = got.find((m) => m.type === MsgType.REJECT);
      return r?.type === MsgType.REJECT ? r.code : undefined;
    },
    rejectReason(): string | undefined {
      const r = got.find((m) => m.type === MsgType.REJECT);
      return r?.type === MsgType.REJECT ? r.reason : undefined;
    },
  };
}

describe('HandshakeReader budget', () => {
  it('refuses (LIMIT) a chunk that would take it over maxBuffered, then drops all input', () => {
    const r = new HandshakeReader(64 * 1024);
    r.push(new Uint8Array(1)); // 0x00: not a full header yet
    r.push(new Uint8Array(60 * 1024));
    expect(r.buffered).toBe(60 * 1024 + 1);
    let code: number | undefined;
    try {
      r.push(new Uint8Array(8 * 1024));
    } catch (e) {
      code = (e as { code?: number }).code;
    }
    expect(code).toBe(ErrorCode.LIMIT);
    expect(r.buffered).toBe(0); // what it held is released too
    r.push(new Uint8Array(1024 * 1024)); // a failed reader buffers nothing more
    expect(r.buffered).toBe(0);
    expect(() => r.next()).toThrow(/before the handshake completed/);
  });

  it('an unknown type is refused on its first byte, before a whole header arrived', () => {
    const r = new HandshakeReader();
    r.push(Uint8Array.of(0x47));
    expect(() => r.next()).toThrow(/unknown handshake message type 0x47/);
    const ok = new HandshakeReader();
    ok.push(Uint8Array.of(MsgType.HELLO));
    expect(ok.next()).toBeUndefined(); // a known type waits for the rest
  });

  it('after a bad message, later input is dropped instead of buffered', () => {
    const r = new HandshakeReader();
    r.push(Uint8Array.of(0x47, 0x45, 0x54)); // "GET"
    expect(() => r.next()).toThrow(/unknown handshake message type/);
    r.push(new Uint8Array(1024 * 1024));
    expect(r.buffered).toBe(3);
  });

  it('a HandshakeChannel stops taking input once it failed', async () => {
    const clock = new VirtualClock();
    const link = new MemoryLink(clock);
    const hc = new HandshakeChannel(link.b, clock, { maxBuffered: 64 * 1024 });
    const next = hc.next(clock.now() + 5_000);
    link.a.write(Uint8Array.of(0x47));
    await expect(settle(clock, next)).rejects.toMatchObject({ code: ErrorCode.BAD_MESSAGE });
    const before = hc.bytesReceived;
    for (let i = 0; i < 16; i++) link.a.write(new Uint8Array(64 * 1024));
    await clock.advance(1);
    expect(hc.bytesReceived).toBe(before);
  });
});

describe('Acceptor pre-auth deadlines and budget', () => {
  it('an idle connection is refused (TIMEOUT) at handshakeFirstMessageMs, not before', async () => {
    const { clock, config, acceptor, open } = setup();
    const { link, accepted } = open('10.0.0.1');
    const w = watch(link.a);
    await clock.advance(config.handshakeFirstMessageMs - 1);
    expect(w.closed).toBe(false);
    expect(acceptor.handshakesInProgress).toBe(1);
    await clock.advance(1);
    expect(await accepted).toBe(false);
    expect(w.closed).toBe(true);
    expect(w.rejectCode()).toBe(ErrorCode.TIMEOUT);
    expect(w.rejectReason()).toMatch(/no complete handshake message within 3 s/);
    expect(acceptor.counters.preauthTimeoutFirst).toBe(1);
    expect(acceptor.counters.rejected).toBe(1);
    expect(acceptor.handshakesInProgress).toBe(0);
  });

  it('a partial first message does not buy more time', async () => {
    const { clock, config, acceptor, open } = setup();
    const { link } = open('10.0.0.1');
    const w = watch(link.a);
    link.a.write(Uint8Array.of(MsgType.HELLO, 0)); // two bytes of a header, then silence
    await clock.advance(config.handshakeFirstMessageMs);
    expect(w.rejectCode()).toBe(ErrorCode.TIMEOUT);
    expect(acceptor.counters.preauthTimeoutFirst).toBe(1);
  });

  it('one chunk over preauthBufferBytes is refused with LIMIT and counted as preauthOverflow', async () => {
    const { clock, config, acceptor, open } = setup();
    const { link, accepted } = open('10.0.0.1');
    const w = watch(link.a);
    const flood = new Uint8Array(config.preauthBufferBytes + 1);
    flood.set([MsgType.HELLO, 0, 107]); // a valid header; the rest would be body and junk
    link.a.write(flood);
    await clock.advance(1);
    expect(await accepted).toBe(false);
    expect(w.rejectCode()).toBe(ErrorCode.LIMIT);
    expect(acceptor.counters.preauthOverflow).toBe(1);
  });

  it('junk is refused as BAD_MESSAGE, counted once, and the channel is paused (never read again)', async () => {
    const { clock, acceptor, open } = setup();
    const { link, accepted } = open('10.0.0.1');
    const w = watch(link.a);
    let paused = false;
    const pause = link.b.pause.bind(link.b);
    link.b.pause = () => {
      paused = true;
      pause();
    };
    link.a.write(Uint8Array.of(0x47, 0, 0, 0));
    await clock.advance(1);
    expect(await accepted).toBe(false);
    expect(paused).toBe(true);
    expect(w.rejectCode()).toBe(ErrorCode.BAD_MESSAGE);
    expect(acceptor.counters.rejectBadMessage).toBe(1);
    expect(acceptor.counters.rejected).toBe(1);
  });
});

async function liveSession(env: ReturnType<typeof setup>): Promise<Session> {
  const { link } = env.open('192.0.2.1');
  const { session } = await settle(env.clock, connectSession(link.a, { secretKeys, config: env.config, clock: env.clock }));
  return session;
}

describe('Acceptor handshake slots', () => {
  it('a client behind an address full of idle connections evicts the oldest of them and gets its session', async () => {
    const env = setup({ maxPending: 8, maxPerSource: 3 });
    const idle = [0, 1, 2].map(() => env.open('10.0.0.1'));
    const watchers = idle.map((c) => watch(c.link.a));
    await env.clock.advance(10);
    expect(env.acceptor.handshakesInProgress).toBe(3);
    const { link } = env.open('10.0.0.1');
    await settle(env.clock, connectSession(link.a, { secretKeys, config: env.config, clock: env.clock }));
    expect(env.acceptor.counters.helloOk).toBe(1);
    expect(watchers[0]!.rejectCode()).toBe(ErrorCode.BUSY);
    expect(watchers[0]!.rejectReason()).toMatch(/from your address/);
    expect(watchers[1]!.closed).toBe(false);
    expect(env.acceptor.counters.preauthEvictedSource).toBe(1);
    expect(env.acceptor.handshakesInProgress).toBe(2);
  });

  it('a JOIN awaiting its JOIN_CONFIRM outlives a flood of idle connections from its own address', async () => {
    const env = setup({ maxPending: 8, maxPerSource: 3 });
    const session = await liveSession(env);
    const { link } = env.open('10.0.0.1', 10);
    const joining = joinSession(session, link.a, { clock: env.clock, addrId: 1, secretKeys });
    await env.clock.advance(15); // JOIN arrived and was answered; JOIN_CONFIRM not yet here
    for (let i = 0; i < 20; i++) env.open('10.0.0.1');
    await settle(env.clock, joining);
    expect(session.subflowCount).toBe(2);
    expect(env.acceptor.counters.joinOk).toBe(1);
    expect(env.acceptor.counters.preauthEvictedSource).toBe(18); // 20 idle into 2 free slots
  });

  it('a JOIN answered but never confirmed is dropped at handshakeTimeoutMs (TIMEOUT), not at the first-message deadline', async () => {
    const env = setup();
    const session = await liveSession(env);
    const { link, accepted } = env.open('10.0.0.1');
    const reader = new HandshakeReader();
    const got: HandshakeMessage[] = [];
    link.a.setHandlers({
      data: (c) => {
        reader.push(c);
        for (let m = reader.next(); m; m = reader.next()) got.push(m);
      },
      drain: () => undefined,
      close: () => undefined,
    });
    const { startJoin } = await import('../src/handshake.js');
    link.a.write(startJoin(session.keys, { backup: false, addrId: 1 }).message);
    await env.clock.advance(env.config.handshakeFirstMessageMs + 100);
    expect(got.map((m) => m.type)).toEqual([MsgType.JOIN_ACK]);
    await env.clock.advance(env.config.handshakeTimeoutMs - env.config.handshakeFirstMessageMs);
    expect(await accepted).toBe(false);
    expect(got.map((m) => m.type)).toEqual([MsgType.JOIN_ACK, MsgType.REJECT]);
    expect(env.acceptor.counters.preauthTimeout).toBe(1);
    expect(env.acceptor.counters.preauthTimeoutFirst).toBe(0);
  });
});
