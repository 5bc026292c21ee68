import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.js';
import { rateBurst, TokenBucket } from '../src/rate-limit.js';
import type { Datagram } from '../src/datagrams.js';
import { Atyp } from '../src/frames.js';
import type { Stream } from '../src/stream.js';
import { collect, makePair, writeAll } from './harness.js';

const MiB = 1024 * 1024;
/** 8 Mbit/s: 1 MB/s each way. */
const RATE = 1_000_000;
/**
 * Two links of 0.7 MB/s each: neither alone reaches the rate, so the session
 * must use both, and together (1.4 MB/s) they exceed it: the limit holds
 * over the whole session, not per subflow.
 */
const LINKS = [
  { delayMs: 10, bytesPerMs: 700 },
  { delayMs: 25, bytesPerMs: 700 },
];

async function until(clock: VirtualClock, done: () => boolean, limitMs: number): Promise<number> {
  const start = clock.now();
  while (!done()) {
    if (clock.now() - start > limitMs) throw new Error(`not done within ${limitMs} virtual ms`);
    await clock.advance(5);
  }
  return clock.now() - start;
}

async function download(bytes: number, rate: number | undefined): Promise<{ ms: number; subflowsUsed: number }> {
  const data = new Uint8Array(bytes).fill(7);
  const pair = await makePair({
    links: LINKS,
    acceptor: rate === undefined ? {} : { sessionRate: () => rate },
    onServerStream: (s: Stream) => {
      s.accept();
      writeAll(s, data);
    },
  });
  const st = pair.client.openStream({ host: 'example.com', port: 80 });
  const got = collect(st);
  st.end();
  const ms = await until(pair.clock, () => got.ended, 120_000);
  expect(got.total().length).toBe(bytes);
  const used = pair.server().stats().subflows.filter((x) => x.bytesSent > bytes / 10).length;
  pair.client.close();
  return { ms, subflowsUsed: used };
}

async function upload(bytes: number, rate: number): Promise<number> {
  const data = new Uint8Array(bytes).fill(9);
  let got: ReturnType<typeof collect> | undefined;
  const pair = await makePair({
    links: LINKS,
    acceptor: { sessionRate: () => rate },
    onServerStream: (s: Stream) => {
      s.accept();
      got = collect(s);
    },
  });
  const st = pair.client.openStream({ host: 'example.com', port: 80 });
  writeAll(st, data);
  const ms = await until(pair.clock, () => got?.ended === true, 120_000);
  expect(got!.total().length).toBe(bytes);
  pair.client.close();
  return ms;
}

describe('session rate limit (users file rate), on the virtual clock', () => {
  it('a download over two subflows runs at the rate within 10 %, both subflows carrying it', async () => {
    const bytes = 8 * MiB;
    const limited = await download(bytes, RATE);
    const expected = (bytes / RATE) * 1000;
    expect(limited.ms / expected).toBeGreaterThan(0.9);
    expect(limited.ms / expected).toBeLessThan(1.1);
    expect(limited.subflowsUsed).toBe(2);
    // Without the limit the two links together are faster: the limit is what set the pace.
    const free = await download(bytes, undefined);
    expect(free.ms).toBeLessThan(expected * 0.8);
  }, 60_000);

  it('an upload is held to the rate too (reading pauses), within 10 %', async () => {
    const bytes = 4 * MiB;
    const ms = await upload(bytes, RATE);
    const expected = (bytes / RATE) * 1000;
    // The client's first window crosses before the server can push back, so allow what it may send on top.
    expect(ms / expected).toBeGreaterThan(0.9);
    expect(ms / expected).toBeLessThan(1.1);
  }, 60_000);

  it('datagrams count against the rate both ways: a flood is policed to it, the excess dropped and counted', async () => {
    const SECONDS = 3;
    const size = 1000;
    const dgram = (flow: number): Datagram => ({ flow, atyp: Atyp.IPV4, addr: Uint8Array.of(192, 0, 2, 7), port: 53, payload: new Uint8Array(size) });
    let up = 0;
    const pair = await makePair({
      links: LINKS,
      acceptor: { sessionRate: () => RATE },
      serverEvents: { datagram: (d) => void (up += d.payload.length) },
    });
    let down = 0;
    pair.client.setEvents({ datagram: (d) => void (down += d.payload.length) });
    // Twice the rate each way, a datagram every half millisecond of clock time.
    const start = pair.clock.now();
    for (let t = 0; t < SECONDS * 1000; t++) {
      pair.client.sendDatagram(dgram(1));
      pair.client.sendDatagram(dgram(1));
      pair.server().sendDatagram(dgram(1));
      pair.server().sendDatagram(dgram(1));
      await pair.clock.advance(1);
    }
    await pair.clock.advance(200);
    const allowed = (RATE * (pair.clock.now() - start)) / 1000 + rateBurst(RATE);
    // Within 10 % of the rate, never above it (plus one burst).
    expect(up).toBeLessThanOrEqual(allowed);
    expect(up).toBeGreaterThan(0.9 * RATE * SECONDS);
    expect(down).toBeLessThanOrEqual(allowed);
    expect(down).toBeGreaterThan(0.9 * RATE * SECONDS);
    const c = pair.server().stats().counters;
    const dropped = c.datagramsDroppedRate ?? 0;
    // What the server dropped on receipt plus what it refused to send is the excess over the rate.
    expect(dropped * size).toBeGreaterThan(0.5 * RATE * SECONDS);
    // The client has no rate of its own: it drops nothing for it.
    expect(pair.client.stats().counters.datagramsDroppedRate).toBe(0);
    pair.client.close();
  }, 60_000);

  it('token bucket: burst, refill on the clock, debt', async () => {
    const clock = new VirtualClock();
    const b = new TokenBucket(1000, 100, clock);
    expect(b.available()).toBe(100);
    b.take(300);
    expect(b.available()).toBe(0);
    expect(b.waitMs(0)).toBe(200);
    await clock.advance(250);
    expect(b.available()).toBe(50);
    await clock.advance(10_000);
    expect(b.available()).toBe(100);
  });
});
