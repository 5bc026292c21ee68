import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { adoptSlabReads, ReadSlab, slabOnread } from '../src/slab-read.js';

describe('ReadSlab', () => {
  it('hands out each region once, never reusing bytes, and starts a new slab when the rest is small', () => {
    const slab = new ReadSlab(1024 * 1024, 256 * 1024);
    // Ramp: the first 256 KiB are read in 64 KiB pieces at most.
    expect(slab.region().length).toBe(64 * 1024);
    const views: Buffer[] = [];
    let total = 0;
    for (let i = 0; i < 40; i++) {
      const r = slab.region();
      const n = Math.min(r.length, 50_000 + i * 997);
      r.fill(i, 0, n);
      views.push(slab.take(n));
      total += n;
      if (total > 256 * 1024) expect(slab.region().length).toBeGreaterThan(64 * 1024 - 1);
    }
    // Every view still holds what was read into it: no region was handed out twice.
    views.forEach((v, i) => expect(v.every((b) => b === i)).toBe(true));
    // More than one slab was used (40 x ~70 KB > 1 MiB).
    expect(new Set(views.map((v) => v.buffer)).size).toBeGreaterThan(1);
  });
});

async function transfer(useAdopt: boolean, useOnread: boolean): Promise<{ sent: string; got: string; back: string }> {
  const N = 24 * 1024 * 1024;
  let gotHash = '';
  const kept: Buffer[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    if (useAdopt) expect(adoptSlabReads(s)).toBe(true);
    const h = createHash('sha256');
    let n = 0;
    s.on('data', (d: Buffer) => {
      kept.push(d); // held until the end, as a receiver may hold a view
      n += d.length;
      // Pause now and then: backpressure must stop and restart slab reads.
      if (kept.length % 50 === 0) {
        s.pause();
        setTimeout(() => s.resume(), 5);
      }
    });
    s.on('end', () => {
      for (const d of kept) h.update(d); // hashed at the end: a reused region would show here
      gotHash = h.digest('hex');
      expect(n).toBe(N);
      s.end('bye'); // half-close: the client still reads our answer
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as net.AddressInfo).port;
  const c: net.Socket = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true, ...(useOnread ? { onread: slabOnread(() => c) } : {}) });
  const h = createHash('sha256');
  let sent = 0;
  let i = 0;
  const more = (): void => {
    while (sent < N) {
      const b = Buffer.alloc(Math.min(70_001 + (i++ % 5) * 1000, N - sent), i & 0xff);
      h.update(b);
      sent += b.length;
      if (!c.write(b)) return;
    }
    c.end();
  };
  c.on('connect', more);
  c.on('drain', more);
  let back = '';
  await new Promise<void>((r) => {
    c.on('data', (d: Buffer) => (back += d.toString()));
    c.on('end', () => r());
  });
  c.destroy();
  server.close();
  return { sent: h.digest('hex'), got: gotHash, back };
}

describe('slab reads on sockets', () => {
  it('an accepted socket (adoptSlabReads) reads every byte intact, with pause/resume and half-close', async () => {
    const r = await transfer(true, false);
    expect(r.got).toBe(r.sent);
    expect(r.back).toBe('bye');
  });
  it('a connected socket (onread: slabOnread) reads what the peer sends, then its end', async () => {
    const r = await transfer(true, true);
    expect(r.got).toBe(r.sent);
    expect(r.back).toBe('bye');
  });
});
