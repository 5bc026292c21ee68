import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { collect, makePair, settle, writeAll } from './harness.js';
import type { Stream } from '../src/stream.js';

function echoServer(s: Stream): void {
  s.accept();
  s.setHandlers({
    data: (c) => {
      s.write(c.slice());
      s.release(c.length);
    },
    end: () => s.end(),
  });
}

describe('session over in-memory subflows', () => {
  it('carries a stream both ways over one subflow', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }], onServerStream: echoServer });
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    const data = randomBytes(300_000);
    writeAll(s, data);
    await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })));
    expect(got.ended).toBe(true);
    expect(Buffer.compare(got.total(), data)).toBe(0);
    await pair.clock.advance(100);
    expect(pair.client.streamCount).toBe(0);
    expect(pair.server().streamCount).toBe(0);
  });

  it('stripes one stream over two subflows and survives a cut', async () => {
    const pair = await makePair({ links: [{ delayMs: 5, bytesPerMs: 500 }, { delayMs: 20, bytesPerMs: 500 }], onServerStream: echoServer });
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    const data = randomBytes(2_000_000);
    writeAll(s, data);
    await pair.clock.advance(300);
    pair.links[0]!.cut();
    await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })));
    expect(Buffer.compare(got.total(), data)).toBe(0);
    expect(pair.client.stats().counters.framesReinjected + pair.server().stats().counters.framesReinjected).toBeGreaterThan(0);
  });

  it('survives a silent blackhole of the faster subflow', async () => {
    const pair = await makePair({ links: [{ delayMs: 5, bytesPerMs: 1000 }, { delayMs: 30, bytesPerMs: 300 }], onServerStream: echoServer });
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    const data = randomBytes(2_000_000);
    writeAll(s, data);
    await pair.clock.advance(200);
    pair.links[0]!.blackhole();
    await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })));
    expect(Buffer.compare(got.total(), data)).toBe(0);
    expect(pair.client.stats().counters.subflowsSuspected).toBeGreaterThan(0);
  });
});
