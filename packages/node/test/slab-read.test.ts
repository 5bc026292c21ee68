import { createHash } from 'node:crypto';
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { adoptSlabReads, ReadSlab, slabOf, slabOnread } from '../src/slab-read.js';
import { SocketChannel } from '../src/socket-channel.js';

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

describe('ReadSlab reuse', () => {
  const fill = (slab: ReadSlab, n: number, v: number): Buffer => {
    const r = slab.region();
    r.fill(v, 0, n);
    return slab.take(n);
  };

  it('reuses a slab only once the consumer released every byte in it, and never one read before the first release', () => {
    const slab = new ReadSlab(128 * 1024, 64 * 1024);
    // Slab 1 (the "handshake" era): its views may still be held by whoever read them.
    const hs = fill(slab, 64 * 1024, 1);
    fill(slab, 64 * 1024, 2);
    slab.release(slab.taken); // the first release: slab 1 began before it, so it is never reused
    const a = fill(slab, 64 * 1024, 3); // slab 2
    fill(slab, 64 * 1024, 4);
    fill(slab, 64 * 1024, 5); // slab 3
    expect(slab.reused).toBe(0);
    expect(hs.every((b) => b === 1)).toBe(true);
    // The consumer still holds `a` (slab 2): nothing may be reused yet.
    slab.release(slab.taken - 3 * 64 * 1024);
    fill(slab, 64 * 1024, 6);
    fill(slab, 64 * 1024, 7); // slab 4: fresh
    expect(slab.reused).toBe(0);
    expect(a.every((b) => b === 3)).toBe(true);
    // Now slabs 2 and 3 are released; slab 4 still has room for one read, then a spare is reused.
    slab.release(slab.taken - 64 * 1024);
    fill(slab, 64 * 1024, 8);
    expect(slab.reused).toBe(0);
    const c = fill(slab, 64 * 1024, 9);
    expect(slab.reused).toBe(1);
    expect(c.buffer).not.toBe(hs.buffer);
    // Slab 1 (before the first release) was never handed out again.
    expect(hs.every((b) => b === 1)).toBe(true);
  });

  it('releaseView: a filled slab is reused once every byte taken from it came back, in any order and pieces', () => {
    const slab = new ReadSlab(128 * 1024, 64 * 1024);
    const a = fill(slab, 64 * 1024, 1);
    const b = fill(slab, 64 * 1024, 2); // slab 1 full
    const c = fill(slab, 64 * 1024, 3); // slab 2
    // Back out of order and in pieces; a stranger's view and a double-counted nothing.
    slab.releaseView(b);
    slab.releaseView(Buffer.alloc(64 * 1024)); // not from this reader: ignored
    slab.releaseView(a.subarray(0, 1000));
    fill(slab, 64 * 1024, 4); // slab 2 full
    fill(slab, 64 * 1024, 5); // slab 3: slab 1 still has 1000 bytes out, so fresh
    expect(slab.reused).toBe(0);
    expect(a.subarray(1000).every((x) => x === 1)).toBe(true);
    slab.releaseView(a.subarray(1000));
    fill(slab, 64 * 1024, 6);
    const d = fill(slab, 64 * 1024, 7); // slab 3 full, so this one is the reused slab 1
    expect(slab.reused).toBe(1);
    expect(d.buffer).toBe(a.buffer);
    // Slab 2 is still out (c and the 4s): never overwritten.
    expect(c.every((x) => x === 3)).toBe(true);
  });

  it('a slab whose views all came back before it filled is reused at once; one never handed back is not', () => {
    const slab = new ReadSlab(128 * 1024, 64 * 1024);
    const kept = fill(slab, 64 * 1024, 1);
    fill(slab, 64 * 1024, 2); // slab 1: `kept` never released
    const x = fill(slab, 64 * 1024, 3); // slab 2
    slab.releaseView(x);
    const y = fill(slab, 64 * 1024, 4);
    slab.releaseView(y); // slab 2 wholly back while still current
    const z = fill(slab, 64 * 1024, 5); // slab 2 retires and is taken again at once
    expect(slab.reused).toBe(1);
    expect(z.buffer).toBe(x.buffer);
    expect(kept.every((v) => v === 1)).toBe(true);
  });

  it('a consumer that never hands anything back does not make the reader keep every slab', () => {
    const slab = new ReadSlab(128 * 1024, 64 * 1024);
    for (let i = 0; i < 200; i++) fill(slab, 64 * 1024, i & 0xff);
    // 100 slabs filled; only a bounded few are remembered (the rest are the GC's).
    expect(slab.retiredCount).toBeLessThanOrEqual(16);
    expect(slab.reused).toBe(0);
  });

  it('a SocketChannel whose consumer reports what it holds reads 24 MiB intact while reusing slabs', async () => {
    const N = 24 * 1024 * 1024;
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    const accepted = new Promise<net.Socket>((r) => server.once('connection', r));
    const c = net.connect({ port, host: '127.0.0.1' });
    const s = await accepted;
    adoptSlabReads(s);
    const ch = new SocketChannel(s);
    // A consumer like the record opener: it keeps up to ~2.5 MB of views (more than a slab), hashes
    // bytes only when it lets them go, and reports what it still holds.
    const held: Buffer[] = [];
    let heldBytes = 0;
    const got = createHash('sha256');
    let n = 0;
    const done = new Promise<void>((resolve) => {
      ch.setHandlers({
        data: (chunk) => {
          held.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
          heldBytes += chunk.length;
          n += chunk.length;
          while (heldBytes > 2_500_000) {
            const d = held.shift()!;
            got.update(d);
            heldBytes -= d.length;
          }
          ch.holding(heldBytes);
          if (n >= N) resolve();
        },
        drain: () => undefined,
        close: () => undefined,
      });
    });
    const sent = createHash('sha256');
    let off = 0;
    let i = 0;
    const more = (): void => {
      while (off < N) {
        const b = Buffer.alloc(Math.min(70_001 + (i++ % 7) * 913, N - off), i & 0xff);
        sent.update(b);
        off += b.length;
        if (!c.write(b)) return;
      }
    };
    c.on('drain', more);
    more();
    await done;
    for (const d of held) got.update(d);
    expect(got.digest('hex')).toBe(sent.digest('hex'));
    expect(slabOf(s)!.reused).toBeGreaterThan(5);
    c.destroy();
    s.destroy();
    server.close();
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
