/**
 * Published ports at the protocol level (PROTOCOL.md 7.1): the `pub` /
 * `pubst` control messages, the header of a server-opened stream, and
 * server-opened streams carried by the session like any other (striped,
 * surviving the loss of a subflow).
 */
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decodeControl,
  encodeControl,
  encodeStreamHeader,
  parseInboundHeader,
  PublishCode,
  publishCodeName,
  StreamHeaderReader,
  type ControlMessage,
  type InboundHeader,
} from '../src/control.js';
import { ErrorCode, PlaitError, ProtocolError, ResetCode } from '../src/errors.js';
import type { Stream } from '../src/stream.js';
import { collect, echoServer, makePair, settle, writeAll } from './harness.js';

const raw = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true });
const pk = (v: unknown): Uint8Array => raw.pack(v);

function codeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof ProtocolError || e instanceof PlaitError) return e.code;
    throw e;
  }
  throw new Error('expected an exception');
}

const port = fc.integer({ min: 1, max: 65535 });
const pubMsg: fc.Arbitrary<ControlMessage> = fc.oneof(
  fc.record({ t: fc.constant('pub' as const), port }),
  fc.record({ t: fc.constant('pubst' as const), port, code: fc.integer({ min: 0, max: 255 }), reason: fc.string({ maxLength: 80 }) }),
);

describe('CONTROL pub / pubst', () => {
  it('round trip', () => {
    fc.assert(
      fc.property(pubMsg, (m) => {
        expect(decodeControl(encodeControl(m))).toEqual(m);
      }),
    );
  });

  it('decodes what another encoder writes: extra fields ignored, a missing or nil reason is empty', () => {
    expect(decodeControl(pk({ t: 'pub', port: 8080, later: [1, 2] }))).toEqual({ t: 'pub', port: 8080 });
    expect(decodeControl(pk({ t: 'pubst', port: 8080, code: 2 }))).toEqual({ t: 'pubst', port: 8080, code: 2, reason: '' });
    expect(decodeControl(pk({ t: 'pubst', port: 8080, code: 0, reason: null }))).toEqual({ t: 'pubst', port: 8080, code: 0, reason: '' });
    // A code from a later version is kept as it is: the receiver reads it as "not published".
    expect(decodeControl(pk({ t: 'pubst', port: 1, code: 200, reason: 'x' }))).toEqual({ t: 'pubst', port: 1, code: 200, reason: 'x' });
    expect(publishCodeName(200)).toBe('CODE_200');
    expect(publishCodeName(PublishCode.TAKEN)).toBe('TAKEN');
  });

  it('a long reason is cut to 255 UTF-8 bytes on both sides, at a character boundary', () => {
    const long = 'é'.repeat(400);
    const got = decodeControl(pk({ t: 'pubst', port: 1, code: 1, reason: long }));
    expect(got.t === 'pubst' && new TextEncoder().encode(got.reason).length).toBeLessThanOrEqual(255);
    const sent = decodeControl(encodeControl({ t: 'pubst', port: 1, code: 1, reason: long }));
    expect(sent.t === 'pubst' && sent.reason).toBe('é'.repeat(127));
  });

  it('refuses missing, mistyped and out-of-range fields (PROTOCOL)', () => {
    for (const bad of [
      { t: 'pub' },
      { t: 'pub', port: 0 },
      { t: 'pub', port: 65536 },
      { t: 'pub', port: '80' },
      { t: 'pub', port: -1 },
      { t: 'pubst', port: 80 },
      { t: 'pubst', port: 80, code: 256 },
      { t: 'pubst', port: 80, code: -1 },
      { t: 'pubst', port: 0, code: 0 },
      { t: 'pubst', port: 80, code: 0, reason: 7 },
    ]) {
      expect(codeOf(() => decodeControl(pk(bad))), JSON.stringify(bad)).toBe(ErrorCode.PROTOCOL);
    }
    // A fractional port is refused at the wire type, like every float.
    expect(codeOf(() => decodeControl(new Uint8Array([0x82, 0xa1, 0x74, 0xa3, 0x70, 0x75, 0x62, 0xa4, 0x70, 0x6f, 0x72, 0x74, 0xcb, 0x40, 0x54, 0, 0, 0, 0, 0, 0])))).toBe(ErrorCode.PROTOCOL);
  });

  it('the encoder refuses what it must never send (INTERNAL)', () => {
    expect(codeOf(() => encodeControl({ t: 'pub', port: 0 }))).toBe(ErrorCode.INTERNAL);
    expect(codeOf(() => encodeControl({ t: 'pubst', port: 80, code: 300, reason: '' }))).toBe(ErrorCode.INTERNAL);
  });

  it('random bodies with t pub/pubst: a message or a typed error, never a crash', () => {
    const body = fc.tuple(fc.constantFrom('pub', 'pubst'), fc.dictionary(fc.constantFrom('port', 'code', 'reason', 'x'), fc.oneof(fc.integer(), fc.string(), fc.constant(null), fc.boolean())));
    fc.assert(
      fc.property(body, ([t, rest]) => {
        try {
          const m = decodeControl(pk({ ...rest, t }));
          expect(m.t).toBe(t);
        } catch (e) {
          expect(e).toBeInstanceOf(ProtocolError);
        }
      }),
    );
  });
});

describe('the header of a server-opened stream', () => {
  const header: fc.Arbitrary<InboundHeader> = fc.oneof(
    fc.record({ pub: port }),
    fc.record({ pub: port, from: fc.oneof(fc.ipV4().map((a) => `${a}:1234`), fc.ipV6().map((a) => `[${a}]:80`)) }),
  );

  it('round trip through the stream header reader', () => {
    fc.assert(
      fc.property(header, (h) => {
        const got = new StreamHeaderReader().push(encodeStreamHeader(h));
        expect(got).toBeDefined();
        expect(parseInboundHeader(got!.header)).toEqual(h);
      }),
    );
  });

  it('names a publication, never a destination: host/port fields are ignored; a bad pub or from is PROTOCOL', () => {
    expect(parseInboundHeader({ pub: 80, host: 'evil.example', port: 22 })).toEqual({ pub: 80 });
    for (const bad of [{}, { pub: 0 }, { pub: 70000 }, { pub: '80' }, { pub: 80, from: '' }, { pub: 80, from: 5 }, { host: 'a', port: 1 }]) {
      expect(codeOf(() => parseInboundHeader(bad)), JSON.stringify(bad)).toBe(ErrorCode.PROTOCOL);
    }
  });
});

/** A client that publishes: answers inbound streams by echoing, or with `onInbound`. */
async function publishingPair(onInbound: (s: Stream, h: InboundHeader) => void, links = [{ delayMs: 5, bytesPerMs: 600 }, { delayMs: 15, bytesPerMs: 600 }]) {
  const asked: number[] = [];
  const pair = await makePair({ links, serverEvents: { publish: (p) => asked.push(p) } });
  const states: [number, number, string][] = [];
  pair.client.setEvents({ inbound: onInbound, publishState: (p, c, r) => states.push([p, c, r]) });
  return { pair, asked, states };
}

describe('server-opened streams (publications)', () => {
  it('pub reaches the server, pubst reaches the client, each side ignores the other side\'s message', async () => {
    const { pair, asked, states } = await publishingPair(echoServer);
    pair.client.requestPublish(8080);
    // A confused peer: the server "asks", the client "answers". Both ignored.
    pair.server().requestPublish(1);
    pair.client.publishState(2, 0, 'no');
    await pair.clock.advance(100);
    expect(asked).toEqual([8080]);
    pair.server().publishState(8080, PublishCode.OPEN, 'listening');
    await pair.clock.advance(100);
    expect(states).toEqual([[8080, PublishCode.OPEN, 'listening']]);
  });

  it('carries an inbound connection both ways, striped over two subflows, through the loss of one', async () => {
    const seen: InboundHeader[] = [];
    const { pair } = await publishingPair((s, h) => {
      seen.push(h);
      echoServer(s);
    });
    const s = pair.server().openInbound({ pub: 8080, from: '198.51.100.7:40000' });
    expect(s.id % 2).toBe(0); // the server's own parity
    const got = collect(s);
    const data = randomBytes(2_000_000);
    writeAll(s, data);
    await pair.clock.advance(300);
    pair.links[0]!.cut();
    await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })));
    expect(seen).toEqual([{ pub: 8080, from: '198.51.100.7:40000' }]);
    expect(Buffer.compare(got.total(), data)).toBe(0);
    const sub = pair.server().stats().subflows;
    expect(sub.length).toBe(1);
    expect((pair.client.stats().counters.framesReinjected ?? 0) + (pair.server().stats().counters.framesReinjected ?? 0)).toBeGreaterThan(0);
  });

  it('a client that publishes nothing refuses server-opened streams (NOT_ALLOWED); the session goes on', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }], onServerStream: echoServer });
    const s = pair.server().openInbound({ pub: 22 });
    const got = collect(s);
    s.write(new Uint8Array([1, 2, 3]));
    await pair.clock.advance(200);
    expect(got.reset).toBe(ResetCode.NOT_ALLOWED);
    expect(pair.client.isClosed).toBe(false);
    // Client-opened streams still work.
    const c = pair.client.openStream({ host: 'example.org', port: 80 });
    const back = collect(c);
    writeAll(c, new Uint8Array([9, 9]));
    await settle(pair.clock, new Promise<void>((r) => c.setHandlers({ close: () => r() })));
    expect([...back.total()]).toEqual([9, 9]);
  });

  it('a server-opened stream with a target header instead of a publication is reset PROTOCOL (a server cannot name a destination)', async () => {
    const inbound: InboundHeader[] = [];
    const { pair } = await publishingPair((s, h) => {
      inbound.push(h);
      echoServer(s);
    });
    // What a hostile server would send: openStream({host, port}) from the server side.
    const s = pair.server().openStream({ host: '10.0.0.1', port: 22 });
    const got = collect(s);
    await pair.clock.advance(200);
    expect(got.reset).toBe(ResetCode.PROTOCOL);
    expect(inbound).toEqual([]);
    expect(pair.client.stats().counters.streamsResetProtocol).toBe(1);
  });

  it('only a server opens inbound streams', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }] });
    expect(codeOf(() => pair.client.openInbound({ pub: 1 }))).toBe(ErrorCode.INTERNAL);
  });
});
