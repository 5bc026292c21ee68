import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { collect, echoServer, makePair, settle, writeAll } from './harness.js';


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
    // The receive budget's running total comes back to zero when all is read.
    expect(pair.client.stats().recvBufferedBytes).toBe(0);
    expect(pair.server().stats().recvBufferedBytes).toBe(0);
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
    expect((pair.client.stats().counters.framesReinjected ?? 0) + (pair.server().stats().counters.framesReinjected ?? 0)).toBeGreaterThan(0);
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

describe('session behaviour a user relies on', () => {
  it('a tampered record closes only its subflow; the transfer completes on the other', async () => {
    const pair = await makePair({ links: [{ delayMs: 5, bytesPerMs: 800 }, { delayMs: 10, bytesPerMs: 800 }], onServerStream: echoServer });
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    const data = randomBytes(1_000_000);
    writeAll(s, data);
    await pair.clock.advance(100);
    pair.links[0]!.tamperNextAtoB();
    await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })));
    expect(Buffer.compare(got.total(), data)).toBe(0);
    expect(pair.server().stats().counters.decryptFailures).toBe(1);
    expect(pair.client.subflowCount).toBe(1);
  });

  it('a backup subflow carries nothing while a regular one works, and takes over when it dies', async () => {
    const pair = await makePair({ links: [{ delayMs: 20, bytesPerMs: 500 }, { delayMs: 2, bytesPerMs: 5000, backup: true }], onServerStream: echoServer });
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    const data = randomBytes(1_000_000);
    writeAll(s, data, 65536, false);
    await pair.clock.advance(1500);
    const backupStats = () => pair.client.stats().subflows.find((x) => x.backup)!;
    // Keepalive pings and acks only: far below one data frame.
    expect(backupStats().bytesSent).toBeLessThan(2000);
    expect(got.total().length).toBeGreaterThan(0);
    pair.links[0]!.blackhole();
    const more = randomBytes(500_000);
    writeAll(s, more);
    await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })));
    expect(Buffer.compare(got.total(), Buffer.concat([data, more]))).toBe(0);
    expect(backupStats().bytesSent).toBeGreaterThan(500_000);
  });

  it('half-close passes both ways: each side can still send after the other ended', async () => {
    const pair = await makePair({
      links: [{ delayMs: 5 }],
      onServerStream: (s) => {
        s.accept();
        let n = 0;
        s.setHandlers({
          data: (c) => {
            n += c.length;
            s.release(c.length);
          },
          end: () => {
            // The client has finished sending; answer with what we got, then end.
            s.write(Buffer.from(`got ${n} bytes`));
            s.end();
          },
        });
      },
    });
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const got = collect(s);
    s.write(randomBytes(12345));
    s.end();
    await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })));
    expect(got.total().toString()).toBe('got 12345 bytes');
    expect(got.ended).toBe(true);
  });

  it('a reset reaches the other side with its code and reason', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }], onServerStream: (s) => s.reset(3, 'no route to example.org') });
    const s = pair.client.openStream({ host: 'example.org', port: 80 });
    const result = await settle(pair.clock, new Promise<[number, string]>((r) => s.setHandlers({ reset: (code, reason) => r([code, reason]) })));
    expect(result).toEqual([3, 'no route to example.org']);
    expect(pair.client.streamCount).toBe(0);
  });

  it('streams beyond maxStreams are reset with LIMIT, the others work', async () => {
    const pair = await makePair({ links: [{ delayMs: 5 }], config: { maxStreams: 3 }, onServerStream: echoServer });
    const streams = Array.from({ length: 3 }, () => pair.client.openStream({ host: 'h', port: 1 }));
    const accepted = streams.map((s) => new Promise<void>((r) => s.setHandlers({ accept: () => r() })));
    await settle(pair.clock, Promise.all(accepted));
    // The client enforces the cap locally...
    expect(() => pair.client.openStream({ host: 'h', port: 1 })).toThrow(/too many open streams/);
    // ...and the server refuses a fourth concurrent stream from a peer that does not.
    pair.client.config.maxStreams = 10;
    const extra = pair.client.openStream({ host: 'h', port: 1 });
    const code = await settle(pair.clock, new Promise<number>((r) => extra.setHandlers({ reset: (c) => r(c) })));
    expect(code).toBe(8); // LIMIT
    expect(pair.server().streamCount).toBe(3);
    expect(pair.server().stats().counters.streamsRefusedLimit).toBe(1);
  });
});
