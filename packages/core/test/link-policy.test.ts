import { describe, expect, it } from 'vitest';
import type { LinkOptions } from '@plait/testkit';
import type { Config } from '../src/config.js';
import { RedundantScheduler } from '../src/scheduler.js';
import type { Stream } from '../src/stream.js';
import { collect, makePair, writeAll, type Pair } from './harness.js';

/**
 * Link policy end to end on in-memory links and a virtual clock: the
 * client's scheduler governs the server's sending, the latency class, and
 * opportunistic reinjection when a link's rate collapses.
 */

const pattern = (n: number): Uint8Array => {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + (i >>> 11)) & 0xff;
  return b;
};

async function until(p: Pair, cond: () => boolean, limitMs = 120_000): Promise<void> {
  const start = p.clock.now();
  while (!cond()) {
    if (p.clock.now() - start > limitMs) throw new Error(`condition not met within ${limitMs} virtual ms`);
    await p.clock.advance(1);
  }
}

/** Client downloads `data` from the server over `links`; returns the pair and per-subflow bytes the server sent. */
async function download(links: LinkOptions[], data: Uint8Array, redundant: boolean) {
  const p = await makePair({
    links,
    ...(redundant ? { scheduler: new RedundantScheduler() } : {}),
    onServerStream: (s) => {
      s.accept();
      writeAll(s, data);
    },
  });
  await until(p, () => p.server().stats().counters.schedulerChosenByPeer === 1);
  const before = p.server().stats().subflows.map((f) => f.bytesSent);
  const s = p.client.openStream({ host: 'bulk.test', port: 80 });
  const got = collect(s);
  s.end();
  await until(p, () => got.ended);
  expect(Buffer.compare(got.total(), Buffer.from(data))).toBe(0);
  const sent = p.server().stats().subflows.map((f, i) => f.bytesSent - before[i]!);
  return { p, sent };
}

describe('one scheduler choice for both directions', () => {
  const links = (): LinkOptions[] => [
    { delayMs: 5, bytesPerMs: 4000 },
    { delayMs: 30, bytesPerMs: 1000 },
  ];
  const data = pattern(2 * 1024 * 1024);

  it('redundant: the server learns the choice and sends every downloaded byte on every subflow', async () => {
    const { p, sent } = await download(links(), data, true);
    expect(p.server().stats().scheduler).toBe('redundant');
    for (const b of sent) expect(b).toBeGreaterThanOrEqual(data.length);
    // The client dropped one copy of everything.
    // (Copies that arrive after the stream finished are not counted.)
    expect(p.client.counters.duplicateBytes).toBeGreaterThan(0.9 * data.length);
  });

  it('earliest-arrival (the default): each byte goes once, mostly on the fast subflow', async () => {
    const { p, sent } = await download(links(), data, false);
    expect(p.server().stats().scheduler).toBe('earliest-arrival');
    const total = sent.reduce((a, b) => a + b, 0);
    expect(total).toBeLessThan(data.length * 1.2);
    expect(sent[0]!).toBeGreaterThan(sent[1]!);
  });
});

describe('latency class', () => {
  it('sends a latency-port stream on the two subflows where it arrives first, and bulk once', async () => {
    const p = await makePair({
      links: [
        { delayMs: 40, bytesPerMs: 4000 },
        { delayMs: 5, bytesPerMs: 4000 },
        { delayMs: 15, bytesPerMs: 4000 },
      ],
      onServerStream: (s) => {
        s.accept();
        collect(s);
      },
    });
    // Let every subflow measure its RTT (keepalives), then send 1 KiB to port 22.
    await p.clock.advance(3000);
    const before = p.client.stats().subflows.map((f) => f.bytesSent);
    const s = p.client.openStream({ host: 'ssh.test', port: 22 });
    s.write(pattern(1024));
    await p.clock.advance(5);
    const sent = p.client.stats().subflows.map((f, i) => f.bytesSent - before[i]!);
    const carried = sent.map((b) => b >= 1024);
    // Links 2 (5 ms) and 3 (15 ms) carry a copy; link 1 (40 ms) does not.
    expect(carried).toEqual([false, true, true]);
    expect(p.client.counters.latencyFrames).toBeGreaterThanOrEqual(1);

    // A bulk stream to another port is not duplicated.
    const dupBefore = p.server().counters.duplicateBytes;
    const bulkBefore = p.client.stats().subflows.reduce((a, f) => a + f.bytesSent, 0);
    const b: Stream = p.client.openStream({ host: 'bulk.test', port: 80 });
    writeAll(b, pattern(1024 * 1024));
    await p.clock.advance(3000);
    const bulkSent = p.client.stats().subflows.reduce((a, f) => a + f.bytesSent, 0) - bulkBefore;
    expect(bulkSent).toBeLessThan(1.1 * 1024 * 1024);
    expect(p.server().counters.duplicateBytes - dupBefore).toBeLessThan(64 * 1024);
  });
});

/** Uploads `size` bytes over three links; `cut` slows link 3 to 12.5 bytes/ms (100 kbit/s) for 8 s from 500 ms. */
async function upload(size: number, cut: boolean, config: Partial<Config> = {}) {
  const slow: LinkOptions = { delayMs: 30, bytesPerMs: 1250 };
  const arrivals: number[] = [];
  let received = 0;
  let ended = false;
  const p = await makePair({
    links: [{ delayMs: 5, bytesPerMs: 5000 }, { delayMs: 15, bytesPerMs: 2500 }, slow],
    config,
    onServerStream: (s) => {
      s.accept();
      s.setHandlers({
        data: (c) => {
          received += c.length;
          arrivals.push(p.clock.now());
          s.release(c.length);
        },
        end: () => void (ended = true),
      });
    },
  });
  await p.clock.advance(2500); // RTTs measured by keepalives
  const start = p.clock.now();
  const s = p.client.openStream({ host: 'sink.test', port: 9 });
  writeAll(s, pattern(size));
  let restored = !cut;
  await until(p, () => {
    const t = p.clock.now() - start;
    if (cut && t >= 500 && slow.bytesPerMs === 1250 && !restored) slow.bytesPerMs = 12.5;
    if (cut && t >= 8500 && !restored) {
      slow.bytesPerMs = 1250;
      restored = true;
    }
    return ended;
  });
  let gap = 0;
  for (let i = 1; i < arrivals.length; i++) gap = Math.max(gap, arrivals[i]! - arrivals[i - 1]!);
  return { p, gap, received };
}

describe('a slowed link does not stall the others (opportunistic reinjection)', () => {
  const size = 24 * 1024 * 1024;

  it('no receiver gap over 1 s when a link is cut to 100 kbit for 8 s', async () => {
    const { gap, received } = await upload(size, true);
    expect(received).toBe(size);
    expect(gap).toBeLessThanOrEqual(1000);
  }, 120_000);

  it('fires when the stream waits on a collapsed subflow before the health check would suspect it', async () => {
    // A retransmission timeout floor of 1.5 s: the suspect verdict comes
    // long after the sender's buffer fills behind the stuck bytes.
    const { p, gap, received } = await upload(size, true, { minRtoMs: 1500 });
    expect(received).toBe(size);
    expect(p.client.counters.opportunisticReinjections).toBeGreaterThanOrEqual(1);
    expect(p.client.counters.subflowsSuspected).toBe(0);
    expect(gap).toBeLessThanOrEqual(1000);
  }, 120_000);

  it('does not fire when no subflow is slowed', async () => {
    const { p, received } = await upload(size, false, { minRtoMs: 1500 });
    expect(received).toBe(size);
    expect(p.client.counters.opportunisticReinjections).toBe(0);
  }, 120_000);
});
