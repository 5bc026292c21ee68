/**
 * PROTOCOL.md "Error scope": each violation is answered at the most local
 * scope that keeps the rest correct. Every test seals a bad frame in a valid
 * record on a live subflow (the peer is authenticated but broken) and checks
 * that only the stream, or only the subflow, dies while another stream's
 * bytes still arrive intact.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ResetCode } from '../src/errors.js';
import { decodeControl, encodeControl } from '../src/control.js';
import { encodeFrames, FrameType, type Frame } from '../src/frames.js';
import { Packr } from 'msgpackr';
import type { Session } from '../src/session.js';
import type { Subflow } from '../src/subflow.js';
import { collect, echoServer, makePair, settle, writeAll } from './harness.js';


/** Seal `plaintext` (or frames) as the next record of `sf` and send it, as a broken peer would. */
function inject(sf: Subflow, content: Frame[] | Uint8Array): void {
  const plaintext = content instanceof Uint8Array ? content : encodeFrames(content);
  sf.sendRecord(plaintext, 0); // counted, so the peer's ACKs stay in step
}

/** A stream header: u16 length + body. */
function header(body: number[]): Uint8Array {
  return Uint8Array.from([body.length >>> 8, body.length & 0xff, ...body]);
}
const str = (s: string): number[] => [0xa0 | s.length, ...Buffer.from(s)];
/** {host: 'h', port: 1.5}: a float port. */
const FLOAT_PORT = header([0x82, ...str('host'), ...str('h'), ...str('port'), 0xcb, ...Buffer.from([0x3f, 0xf8, 0, 0, 0, 0, 0, 0])]);
/** {host: 'h', port: 80.0}: an integral float is still a float. */
const FLOAT_80 = header([0x82, ...str('host'), ...str('h'), ...str('port'), 0xcb, ...Buffer.from([0x40, 0x54, 0, 0, 0, 0, 0, 0])]);
/** {host: 'h', port: 70000}: above u16. */
const BIG_PORT = header([0x82, ...str('host'), ...str('h'), ...str('port'), 0xce, 0x00, 0x01, 0x11, 0x70]);
/** 0xc1 is never valid MessagePack. */
const BAD_MSGPACK = header([0x81, ...str('host'), 0xc1]);
/** Declared length 1025 (> 1024). */
const OVERSIZE = Uint8Array.from([0x04, 0x01, 0x80]);

/** A round trip of random bytes on a fresh stream: the session still carries data correctly. */
async function roundTrip(pair: { clock: { advance(ms: number): Promise<void> }; client: Session }, size = 200_000): Promise<void> {
  const s = pair.client.openStream({ host: 'ok.test', port: 80 });
  const got = collect(s);
  const data = randomBytes(size);
  writeAll(s, data);
  await settle(pair.clock as Parameters<typeof settle>[0], new Promise<void>((r) => s.setHandlers({ close: () => r() })));
  expect(Buffer.compare(got.total(), data)).toBe(0);
}

describe('error scope: stream', () => {
  for (const [name, bytes] of [
    ['a float port', FLOAT_PORT],
    ['a port written as float 80.0', FLOAT_80],
    ['a port above 65535', BIG_PORT],
    ['bad MessagePack', BAD_MSGPACK],
    ['an oversized header', OVERSIZE],
  ] as const) {
    it(`a stream header with ${name} resets that stream (RESET PROTOCOL); the session goes on`, async () => {
      const pair = await makePair({ links: [{ delayMs: 5 }], onServerStream: echoServer });
      const sf = pair.client.liveSubflows[0]!;
      // A long transfer in flight on another stream while the bad one arrives.
      const other = pair.client.openStream({ host: 'ok.test', port: 80 });
      const got = collect(other);
      const data = randomBytes(1_000_000);
      writeAll(other, data);
      await pair.clock.advance(10);
      inject(sf, [{ type: FrameType.DATA, fin: false, stream: 1001, offset: 0, payload: bytes }]);
      await settle(pair.clock, new Promise<void>((r) => other.setHandlers({ close: () => r() })));
      expect(Buffer.compare(got.total(), data)).toBe(0);
      const server = pair.server();
      expect(server.counters.streamsResetProtocol).toBe(1);
      expect(server.counters.subflowsClosedProtocol).toBe(0);
      expect(server.isClosed).toBe(false);
      expect(pair.client.subflowCount).toBe(1);
    });
  }

  it('data beyond the granted credit resets that stream with FLOW_CONTROL; a sibling stream is intact', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }], onServerStream: echoServer });
    const victim = pair.client.openStream({ host: 'victim.test', port: 80 });
    let code: number | undefined;
    victim.setHandlers({ reset: (c) => void (code = c) });
    victim.write(new Uint8Array(10));
    await pair.clock.advance(50);
    const sf = pair.client.liveSubflows[0]!;
    inject(sf, [{ type: FrameType.DATA, fin: false, stream: victim.id, offset: 64 * 1024 * 1024, payload: new Uint8Array(100) }]);
    await pair.clock.advance(50);
    expect(code).toBe(ResetCode.FLOW_CONTROL);
    expect(pair.server().counters.streamsResetFlowControl).toBe(1);
    await roundTrip(pair);
    expect(pair.server().isClosed).toBe(false);
  });

  it('a WINDOW acknowledging bytes never sent resets that stream (PROTOCOL), not the session', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }], onServerStream: echoServer });
    const victim = pair.client.openStream({ host: 'victim.test', port: 80 });
    let code: number | undefined;
    victim.setHandlers({ reset: (c) => void (code = c) });
    victim.write(new Uint8Array(10));
    await pair.clock.advance(50);
    inject(pair.client.liveSubflows[0]!, [{ type: FrameType.WINDOW, finReceived: false, stream: victim.id, ackOffset: 1_000_000, maxOffset: 2_000_000 }]);
    await pair.clock.advance(50);
    expect(code).toBe(ResetCode.PROTOCOL);
    await roundTrip(pair);
  });
});

describe('error scope: subflow', () => {
  const cases: [string, (sf: Subflow) => void][] = [
    ['an unknown frame type (framing no longer trusted)', (sf) => inject(sf, Uint8Array.from([0x7f, 0, 0]))],
    ['a truncated frame', (sf) => inject(sf, Uint8Array.from([FrameType.WINDOW, 0, 0, 0, 1]))],
    ['malformed CONTROL MessagePack', (sf) => inject(sf, Uint8Array.from([FrameType.CONTROL, 0, 1, 0xc1]))],
    ['an ACK for more records than were sent', (sf) => inject(sf, [{ type: FrameType.ACK, subflow: sf.id, records: 1_000_000 }])],
    ['a second `ok`', (sf) => inject(sf, [{ type: FrameType.CONTROL, message: { t: 'ok', subflow: 9 } }])],
  ];
  for (const [name, attack] of cases) {
    it(`${name} closes that subflow only; its data is reinjected and the session goes on`, async () => {
      const pair = await makePair({ links: [{ delayMs: 5, bytesPerMs: 2000 }, { delayMs: 8, bytesPerMs: 2000 }], onServerStream: echoServer });
      const s = pair.client.openStream({ host: 'ok.test', port: 80 });
      const got = collect(s);
      const data = randomBytes(2_000_000);
      writeAll(s, data);
      await pair.clock.advance(100);
      const server = pair.server();
      // The client's subflow whose records the server will find bad.
      attack(pair.client.liveSubflows[0]!);
      await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })));
      expect(Buffer.compare(got.total(), data)).toBe(0);
      expect(server.counters.subflowsClosedProtocol).toBe(1);
      expect(server.isClosed).toBe(false);
      expect(pair.client.isClosed).toBe(false);
      await roundTrip(pair);
    });
  }
});

describe('frames for unknown ids are ignored', () => {
  it('DATA/WINDOW/RESET on stream 0, DATA for an id of our parity never opened, WINDOW/RESET for unknown ids, ACK for an unknown subflow', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }], onServerStream: echoServer });
    const sf = pair.client.liveSubflows[0]!;
    inject(sf, [
      { type: FrameType.DATA, fin: false, stream: 0, offset: 0, payload: new Uint8Array(5) },
      { type: FrameType.WINDOW, finReceived: false, stream: 0, ackOffset: 0, maxOffset: 1 },
      { type: FrameType.RESET, code: 1, stream: 0, reason: '' },
      { type: FrameType.DATA, fin: false, stream: 4000, offset: 0, payload: new Uint8Array(5) }, // even: the server's parity
      { type: FrameType.WINDOW, finReceived: false, stream: 777, ackOffset: 0, maxOffset: 1 },
      { type: FrameType.RESET, code: 1, stream: 778, reason: 'never opened' },
      { type: FrameType.ACK, subflow: 99, records: 1 },
    ]);
    await pair.clock.advance(50);
    const c = pair.server().counters;
    expect(c.framesUnknownStream).toBe(5);
    expect(c.acksUnknownSubflow).toBe(1);
    expect(c.subflowsClosedProtocol + c.streamsResetProtocol).toBe(0);
    await roundTrip(pair);
  });
});

describe('addrs rules', () => {
  const packr = new Packr({ useRecords: false });
  it('an IPv6 address in addrs is written bare; a bracketed one is PROTOCOL', () => {
    const ok = decodeControl(encodeControl({ t: 'ok', subflow: 1, addrs: [{ id: 1, host: '2001:db8::1', port: 443 }] }));
    expect(ok).toEqual({ t: 'ok', subflow: 1, addrs: [{ id: 1, host: '2001:db8::1', port: 443 }] });
    const bad = packr.pack({ t: 'ok', subflow: 1, addrs: [{ id: 1, host: '[2001:db8::1]', port: 443 }] });
    expect(() => decodeControl(bad)).toThrow(/bad addr/);
    expect(() => encodeControl({ t: 'ok', subflow: 1, addrs: [{ id: 1, host: '[::1]', port: 443 }] })).toThrow(/invalid addr/);
  });
});
