import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { WIRE } from '../src/config.js';
import { DatagramOutbox, DedupWindow, type Datagram } from '../src/datagrams.js';
import { ErrorCode, ProtocolError } from '../src/errors.js';
import { Atyp, DatagramFlag, decodeFrames, encodeFrames, FrameType, type DatagramFrame, type Frame } from '../src/frames.js';
import { collect, makePair, writeAll } from './harness.js';

function decodeAll(b: Uint8Array): Frame[] {
  const out: Frame[] = [];
  decodeFrames(b, (f) => out.push(f));
  return out;
}

function dgram(over: Partial<DatagramFrame> = {}): DatagramFrame {
  return { type: FrameType.DATAGRAM, flags: 0, flow: 7, seq: 42, atyp: Atyp.IPV4, addr: new Uint8Array([192, 0, 2, 1]), port: 53, payload: new Uint8Array([1, 2, 3]), ...over };
}

function expectProtocol(b: Uint8Array): void {
  let err: unknown;
  try {
    decodeAll(b);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(ProtocolError);
  expect((err as ProtocolError).code).toBe(ErrorCode.PROTOCOL);
}

describe('DATAGRAM frame codec', () => {
  it('round-trips every address type', () => {
    const frames: DatagramFrame[] = [
      dgram(),
      dgram({ atyp: Atyp.IPV6, addr: new Uint8Array(16).fill(0xab), port: 65535, flags: DatagramFlag.DUP, seq: 0xffffffff, flow: 0xffffffff }),
      dgram({ atyp: Atyp.DOMAIN, addr: new TextEncoder().encode('example.org'), port: 443 }),
      dgram({ atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 0, flags: DatagramFlag.DNS_TCP }),
      dgram({ payload: new Uint8Array(WIRE.DATAGRAM_MAX_PAYLOAD).fill(9) }),
      dgram({ payload: new Uint8Array(0) }),
    ];
    const got = decodeAll(encodeFrames(frames)) as DatagramFrame[];
    expect(got.length).toBe(frames.length);
    got.forEach((g, i) => {
      const f = frames[i]!;
      expect({ ...g, addr: [...g.addr], payload: [...g.payload] }).toEqual({ ...f, addr: [...f.addr], payload: [...f.payload] });
    });
  });

  it('refuses malformed DATAGRAM frames as PROTOCOL (the record is dropped)', () => {
    const good = encodeFrames([dgram()]);
    for (let cut = 1; cut < good.length; cut++) expectProtocol(good.subarray(0, cut));
    const badAtyp = good.slice();
    badAtyp[10] = 2;
    expectProtocol(badAtyp);
    const port0 = good.slice();
    port0[15] = 0;
    port0[16] = 0;
    expectProtocol(port0);
    const tooLong = good.slice();
    tooLong[17] = 0x40; // 16384 + 1 ... set length 0x4001
    tooLong[18] = 0x01;
    expectProtocol(tooLong);
    const emptyName = new Uint8Array([FrameType.DATAGRAM, 0, 0, 0, 0, 1, 0, 0, 0, 0, Atyp.DOMAIN, 0, 0, 53, 0, 0]);
    expectProtocol(emptyName);
  });

  it('refuses to encode an address that does not fit its type', () => {
    expect(() => encodeFrames([dgram({ addr: new Uint8Array(5) })])).toThrow(/address/);
    expect(() => encodeFrames([dgram({ atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 53 })])).toThrow(/port/);
    expect(() => encodeFrames([dgram({ payload: new Uint8Array(WIRE.DATAGRAM_MAX_PAYLOAD + 1) })])).toThrow(/payload/);
  });
});

describe('DedupWindow', () => {
  it('passes each number once, tolerates reordering within the window, and wraps at 2^32', () => {
    const w = new DedupWindow(64);
    expect(w.seen(10)).toBe(false);
    expect(w.seen(10)).toBe(true);
    expect(w.seen(12)).toBe(false);
    expect(w.seen(11)).toBe(false); // late but new
    expect(w.seen(11)).toBe(true);
    expect(w.seen(200)).toBe(false);
    expect(w.seen(12)).toBe(true); // too old to tell: dropped
    expect(w.seen(150)).toBe(false); // within 64 behind 200
    const z = new DedupWindow(32);
    expect(z.seen(0xffff_fffe)).toBe(false);
    expect(z.seen(1)).toBe(false); // ahead across the wrap
    expect(z.seen(0xffff_ffff)).toBe(false);
    expect(z.seen(0xffff_ffff)).toBe(true);
  });
});

describe('DatagramOutbox bounds', () => {
  const limits = { datagramQueueCount: 4, datagramQueueBytes: 1000, datagramMaxAgeMs: 100 };
  const d = (n: number, size = 10): Datagram => ({ flow: 1, atyp: Atyp.IPV4, addr: new Uint8Array(4), port: 9, payload: new Uint8Array(size).fill(n) });

  it('keeps the newest when full, by count and by bytes, counting each drop', () => {
    const c = { datagramsDroppedQueueFull: 0, datagramsDroppedStale: 0, datagramsDroppedTooLarge: 0 };
    const q = new DatagramOutbox(limits, c);
    for (let i = 0; i < 10; i++) q.push(d(i), 0);
    expect(q.length).toBe(4);
    expect(c.datagramsDroppedQueueFull).toBe(6);
    const out: number[] = [];
    q.drain(0, (f) => (out.push(f.payload[0]!), true));
    expect(out).toEqual([6, 7, 8, 9]);
    q.push(d(1, 600), 0);
    q.push(d(2, 600), 0);
    expect(q.length).toBe(1);
    expect(q.queuedBytes).toBe(600);
    expect(q.push(d(3, WIRE.DATAGRAM_MAX_PAYLOAD + 1), 0)).toBe('too-large');
    expect(c.datagramsDroppedTooLarge).toBe(1);
  });

  it('drops what waited too long, and keeps what the session could not place yet', () => {
    const c = { datagramsDroppedQueueFull: 0, datagramsDroppedStale: 0, datagramsDroppedTooLarge: 0 };
    const q = new DatagramOutbox(limits, c);
    q.push(d(1), 0);
    q.push(d(2), 50);
    q.drain(60, () => false);
    expect(q.length).toBe(2);
    const out: number[] = [];
    q.drain(120, (f) => (out.push(f.payload[0]!), true));
    expect(out).toEqual([2]);
    expect(c.datagramsDroppedStale).toBe(1);
  });
});

const v4 = (a: number, b: number, c: number, e: number): Uint8Array => new Uint8Array([a, b, c, e]);

describe('datagrams over a session', () => {
  it('carries datagrams both ways; the server advertises support only with a handler', async () => {
    let server: ReturnType<typeof makePair> extends Promise<infer P> ? P : never;
    const got: Datagram[] = [];
    server = await makePair({
      links: [{ delayMs: 5 }],
      serverEvents: {
        datagram: (d) => {
          got.push(d);
          // Echo back from the destination, as a UDP relay would.
          server.server().sendDatagram({ ...d, payload: d.payload.map((x) => x ^ 0xff) });
        },
      },
    });
    const back: Datagram[] = [];
    server.client.setEvents({ datagram: (d) => back.push(d) });
    expect(server.client.datagramFlows).toBe(server.config.maxDatagramFlows);
    expect(server.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 7, payload: new Uint8Array([1, 2, 3]) })).toBe(true);
    expect(server.client.sendDatagram({ flow: 2, atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 0, payload: new Uint8Array([9]), dnsTcp: true })).toBe(true);
    await server.clock.advance(50);
    expect(got.map((d) => [d.flow, d.atyp, [...d.addr], d.port, [...d.payload], d.dnsTcp ?? false])).toEqual([
      [1, Atyp.IPV4, [192, 0, 2, 7], 7, [1, 2, 3], false],
      [2, Atyp.RESOLVER, [], 0, [9], true],
    ]);
    expect(back.map((d) => [d.flow, [...d.payload]])).toEqual([
      [1, [0xfe, 0xfd, 0xfc]],
      [2, [0xf6]],
    ]);
    expect(server.server().stats().counters.datagramsReceived).toBe(2);
    expect(server.client.stats().counters.datagramsReceived).toBe(2);

    // A server without a handler does not advertise: nothing unknown is sent to it.
    const plain = await makePair({ links: [{ delayMs: 5 }] });
    expect(plain.client.datagramFlows).toBe(0);
    expect(plain.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 7, payload: new Uint8Array([1]) })).toBe(false);
    expect(plain.client.stats().counters.datagramsDroppedUnsupported).toBe(1);
    await plain.clock.advance(50);
    expect(plain.client.subflowCount).toBe(1);
  });

  it('a datagram never waits behind 4 MiB of queued stream data', async () => {
    const atDatagram: number[] = [];
    let streamBytes = 0;
    const pair = await makePair({
      links: [{ delayMs: 10, bytesPerMs: 2000 }],
      onServerStream: (s) => {
        s.accept();
        s.setHandlers({
          data: (c) => {
            streamBytes += c.length;
            s.release(c.length);
          },
        });
      },
      serverEvents: { datagram: () => void atDatagram.push(streamBytes) },
    });
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    collect(s);
    writeAll(s, randomBytes(4 * 1024 * 1024));
    // Queued in the same tick as the download: it is the first frame written.
    pair.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 5060, payload: new Uint8Array(160) });
    // Let the download fill the subflow's cap and the stream's send buffer.
    await pair.clock.advance(200);
    expect(pair.client.sendBufferedBytes).toBeGreaterThan(2 * 1024 * 1024);
    const before = streamBytes;
    // Bytes already written to the channel (or staged in the open record):
    // only these may arrive ahead of the datagram.
    const csf = pair.client.liveSubflows[0]!;
    const aheadOfIt = csf.bytesSent - pair.server().liveSubflows[0]!.bytesReceived + (csf.inflight - csf.inflightBytes);
    pair.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 5060, payload: new Uint8Array(160) });
    await pair.clock.advance(200);
    expect(atDatagram.length).toBe(2);
    expect(atDatagram[0]).toBe(0);
    // Not one stream byte queued after it was written ahead of it.
    expect(atDatagram[1]! - before).toBeLessThanOrEqual(aheadOfIt);
    expect(streamBytes).toBeLessThan(4 * 1024 * 1024);
  });

  it('duplicates on the two best subflows when asked; the receiver delivers each once', async () => {
    const got: number[] = [];
    const pair = await makePair({
      links: [{ delayMs: 5 }, { delayMs: 20 }, { delayMs: 40 }],
      config: { datagramCopies: 2 },
      serverEvents: { datagram: (d) => got.push(d.payload[0]!) },
    });
    await pair.clock.advance(500); // measure the paths
    for (let i = 0; i < 50; i++) pair.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 7, payload: new Uint8Array([i]) });
    await pair.clock.advance(200);
    expect(got.sort((a, b) => a - b)).toEqual(Array.from({ length: 50 }, (_, i) => i));
    const sc = pair.server().stats().counters;
    expect(sc.datagramsDuplicate).toBe(50);
    // The two fastest carried them; the 40 ms path carried none.
    const perSubflow = pair.server().stats().subflows.map((sf) => sf.bytesReceived);
    expect(perSubflow[2]! < perSubflow[0]! && perSubflow[2]! < perSubflow[1]!).toBe(true);
  });

  it('goes on the lowest-RTT subflow; a burst larger than the queue is cut to its bound, counted', async () => {
    const got: number[] = [];
    const pair = await makePair({
      links: [{ delayMs: 30 }, { delayMs: 5 }],
      serverEvents: { datagram: (d) => got.push(d.payload[0]! | (d.payload[1]! << 8)) },
    });
    await pair.clock.advance(500);
    const rxBefore = pair.server().stats().subflows.map((sf) => sf.bytesReceived);
    for (let i = 0; i < 1000; i++) pair.client.sendDatagram({ flow: 3, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 7, payload: new Uint8Array([i & 0xff, i >> 8]) });
    await pair.clock.advance(200);
    const c = pair.client.stats().counters;
    expect(c.datagramsDroppedQueueFull).toBe(1000 - pair.config.datagramQueueCount);
    expect(got.length).toBe(pair.config.datagramQueueCount);
    // The newest survived.
    expect(got[got.length - 1]).toBe(999);
    const rx = pair.server().stats().subflows.map((sf, i) => sf.bytesReceived - rxBefore[i]!);
    expect(rx[1]!).toBeGreaterThan(pair.config.datagramQueueCount * 10);
    expect(rx[0]!).toBeLessThan(200);
  });

  it('uclose reaches the server reliably', async () => {
    const closed: number[] = [];
    const pair = await makePair({ links: [{ delayMs: 5 }], serverEvents: { datagram: () => undefined, datagramFlowClosed: (f) => closed.push(f) } });
    pair.client.closeDatagramFlow(9);
    await pair.clock.advance(50);
    expect(closed).toEqual([9]);
  });
});

describe('datagram CONTROL fields', () => {
  it('ok.dgram and uclose round-trip; mistyped ones are PROTOCOL', async () => {
    const { decodeControl, encodeControl } = await import('../src/control.js');
    const { Packr } = await import('msgpackr');
    expect(decodeControl(encodeControl({ t: 'ok', subflow: 1, dgram: 256 }))).toEqual({ t: 'ok', subflow: 1, dgram: 256 });
    expect(decodeControl(encodeControl({ t: 'uclose', flow: 0xffffffff }))).toEqual({ t: 'uclose', flow: 0xffffffff });
    const p = new Packr({ useRecords: false });
    expect(() => decodeControl(p.pack({ t: 'ok', subflow: 1, dgram: -1 }))).toThrow(ProtocolError);
    expect(() => decodeControl(p.pack({ t: 'uclose', flow: 'x' }))).toThrow(ProtocolError);
    // An old receiver's view: an ok without dgram means no datagram support.
    expect(decodeControl(p.pack({ t: 'ok', subflow: 1 }))).toEqual({ t: 'ok', subflow: 1 });
  });
});

describe('datagrams from a broken or hostile peer', () => {
  it('a malformed DATAGRAM closes only its subflow; the session and the other subflow go on', async () => {
    const got: number[] = [];
    const pair = await makePair({ links: [{ delayMs: 5 }, { delayMs: 5 }], serverEvents: { datagram: (d) => got.push(d.payload[0]!) } });
    await pair.clock.advance(100);
    const bad = encodeFrames([dgram()]);
    bad[10] = 9; // unknown address type
    pair.client.liveSubflows[0]!.sendRecord(bad, 0);
    await pair.clock.advance(100);
    expect(pair.server().stats().counters.subflowsClosedProtocol).toBe(1);
    expect(pair.server().isClosed).toBe(false);
    pair.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 7, payload: new Uint8Array([42]) });
    await pair.clock.advance(100);
    expect(got).toEqual([42]);
  });

  it('a client drops datagrams from a server that never advertised them (counted), keeping the subflow', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }] });
    const seen: Datagram[] = [];
    pair.client.setEvents({ datagram: (d) => seen.push(d) });
    pair.server().liveSubflows[0]!.sendRecord(encodeFrames([dgram()]), 0);
    await pair.clock.advance(50);
    expect(seen).toEqual([]);
    expect(pair.client.stats().counters.datagramsDroppedUnsupported).toBe(1);
    expect(pair.client.subflowCount).toBe(1);
  });
});

describe('datagrams are never retransmitted', () => {
  it('those in flight on a subflow that dies are lost, not resent; later ones take the other subflow', async () => {
    const got: number[] = [];
    const pair = await makePair({ links: [{ delayMs: 5 }, { delayMs: 30 }], serverEvents: { datagram: (d) => got.push(d.payload[0]!) } });
    await pair.clock.advance(500);
    for (let i = 0; i < 10; i++) pair.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 7, payload: new Uint8Array([i]) });
    await pair.clock.advance(1); // written to the fast link, not yet arrived
    pair.links[0]!.blackhole();
    await pair.clock.advance(2_000);
    expect(got).toEqual([]);
    expect(pair.client.stats().counters.framesReinjected).toBe(0);
    for (let i = 10; i < 15; i++) pair.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 7, payload: new Uint8Array([i]) });
    await pair.clock.advance(200);
    expect(got).toEqual([10, 11, 12, 13, 14]);
  });
});

describe('datagrams and subflow roles', () => {
  it('a faster backup subflow carries no datagrams while a regular one works', async () => {
    const got: number[] = [];
    const pair = await makePair({ links: [{ delayMs: 30 }, { delayMs: 5, backup: true }], serverEvents: { datagram: (d) => got.push(d.payload[0]!) } });
    await pair.clock.advance(500);
    const before = pair.server().stats().subflows.map((sf) => sf.bytesReceived);
    for (let i = 0; i < 20; i++) pair.client.sendDatagram({ flow: 1, atyp: Atyp.IPV4, addr: v4(192, 0, 2, 7), port: 7, payload: new Uint8Array(200).fill(i) });
    await pair.clock.advance(200);
    expect(got.length).toBe(20);
    const rx = pair.server().stats().subflows.map((sf, i) => sf.bytesReceived - before[i]!);
    expect(rx[0]!).toBeGreaterThan(20 * 200);
    expect(rx[1]!).toBeLessThan(200);
  });
});
