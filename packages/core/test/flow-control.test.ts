import { describe, expect, it } from 'vitest';
import { collect, makePair, settle } from './harness.js';
import type { Stream } from '../src/stream.js';

/** Write `total` bytes as fast as backpressure allows; returns bytes accepted so far. */
function firehose(s: Stream, total: number): { written: () => number } {
  let off = 0;
  const piece = new Uint8Array(32 * 1024).fill(7);
  const pump = (): void => {
    while (off < total) {
      off += piece.length;
      if (!s.write(piece)) return;
    }
    s.end();
  };
  s.setHandlers({ drain: pump });
  pump();
  return { written: () => off };
}

describe('flow control', () => {
  it('a stalled reader holds at most its window and does not stall a sibling stream', async () => {
    const window = 1024 * 1024;
    const servers = new Map<number, { s: Stream; w: { written: () => number } }>();
    const pair = await makePair({
      links: [{ delayMs: 10, bytesPerMs: 2000 }, { delayMs: 25, bytesPerMs: 1000 }],
      config: { streamWindow: window, streamSendBuffer: window, sessionRecvBudget: 8 * window },
      onServerStream: (s, t) => {
        s.accept();
        servers.set(t.port, { s, w: firehose(s, t.port === 1 ? 64 * 1024 * 1024 : 8 * 1024 * 1024) });
      },
    });
    // Stream 1: nobody reads it (data handler never releases credit).
    const stalled = pair.client.openStream({ host: 'big.test', port: 1 });
    let stalledBytes = 0;
    stalled.setHandlers({ data: (c) => void (stalledBytes += c.length) });
    stalled.end();
    // Stream 2: a normal reader.
    const live = pair.client.openStream({ host: 'small.test', port: 2 });
    const got = collect(live);
    live.end();
    await settle(pair.clock, new Promise<void>((r) => live.setHandlers({ close: () => r() })), 120_000);
    expect(got.total().length).toBe(8 * 1024 * 1024);

    await pair.clock.advance(2000);
    // The stalled stream received no more than its credit ...
    expect(stalledBytes).toBeLessThanOrEqual(window + 262144);
    expect(stalled.recvBuffered).toBeLessThanOrEqual(window + 262144);
    // ... and the sender stopped accepting writes near its send buffer size, far below 64 MiB.
    const srv = servers.get(1)!;
    expect(srv.w.written()).toBeLessThan(4 * window);
    expect(srv.s.send.bufferedBytes).toBeLessThanOrEqual(window + 64 * 1024);
    // Releasing resumes the flow.
    const before = srv.w.written();
    await pair.clock.advance(500);
    expect(srv.w.written()).toBe(before); // still stalled
    stalled.release(stalledBytes);
    await pair.clock.advance(500);
    expect(srv.w.written()).toBeGreaterThan(before + window / 2);
  });
});

describe('session receive budget', () => {
  it('readers that stop after a while hold little credit between them: a live sibling never stalls and reading never pauses', async () => {
    const window = 1024 * 1024;
    const budget = 4 * window;
    const pair = await makePair({
      links: [{ delayMs: 5, bytesPerMs: 8000 }],
      config: { streamWindow: window, streamSendBuffer: window, sessionRecvBudget: budget },
      onServerStream: (s, t) => {
        s.accept();
        firehose(s, t.port === 99 ? 8 * 1024 * 1024 : 16 * 1024 * 1024);
      },
    });
    // Eight streams read 2 MiB each (their windows grow), then their readers stop.
    const stopped: { s: Stream; bytes: number }[] = [];
    for (let i = 0; i < 8; i++) {
      const s = pair.client.openStream({ host: 'h', port: i + 1 });
      const h = { s, bytes: 0 };
      s.setHandlers({
        data: (c) => {
          h.bytes += c.length;
          if (h.bytes <= 2 * 1024 * 1024) s.release(c.length);
        },
      });
      s.end();
      stopped.push(h);
    }
    await pair.clock.advance(3000);
    // Together they would hold 8 windows (8 MiB, twice the budget) on the old rule.
    const live = pair.client.openStream({ host: 'h', port: 99 });
    const got = collect(live);
    live.end();
    await settle(pair.clock, new Promise<void>((r) => live.setHandlers({ close: () => r() })), 120_000);
    expect(got.total().length).toBe(8 * 1024 * 1024);
    const stats = pair.client.stats();
    expect(stats.counters.recvPauses).toBe(0);
    expect(stats.recvBufferedBytes).toBeLessThanOrEqual(budget / 2 + 9 * 262144);
  });

  it('pauses reading as a last resort when the floors of the streams alone exceed the budget, and resumes when they drain', async () => {
    const window = 512 * 1024;
    const pair = await makePair({
      links: [{ delayMs: 5, bytesPerMs: 4000 }],
      config: { streamWindow: window, streamSendBuffer: window, sessionRecvBudget: 2 * window },
      onServerStream: (s) => {
        s.accept();
        firehose(s, 2 * window);
      },
    });
    // Eight streams whose readers never read: their 256 KiB floors alone are twice the budget.
    const held: { s: Stream; bytes: number; done: boolean }[] = [];
    for (let i = 0; i < 8; i++) {
      const s = pair.client.openStream({ host: 'h', port: i + 1 });
      const h = { s, bytes: 0, done: false };
      s.setHandlers({ data: (c) => void (h.bytes += c.length), end: () => void (h.done = true) });
      s.end();
      held.push(h);
    }
    await pair.clock.advance(3000);
    const stats = pair.client.stats();
    expect(stats.counters.recvPauses).toBeGreaterThanOrEqual(1);
    // Bounded by the budget plus what was already on its way when reading paused.
    expect(stats.recvBufferedBytes).toBeLessThanOrEqual(2 * window + 256 * 1024);
    // Readers catch up: reading resumes and every stream completes.
    for (let round = 0; round < 40 && !held.every((h) => h.done); round++) {
      for (const h of held) h.s.release(h.bytes);
      await pair.clock.advance(200);
    }
    expect(held.every((h) => h.done && h.bytes === 2 * window)).toBe(true);
  });
});
