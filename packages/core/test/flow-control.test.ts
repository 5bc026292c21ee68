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
