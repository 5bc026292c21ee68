import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteQueue } from '../src/byte-queue.js';

/**
 * The naive model: every pushed byte in one array, a front index, and the
 * chunk boundaries (to know when a read must be a view and when a copy).
 */
class Model {
  bytes: number[] = [];
  front = 0;
  /** [start, end) absolute positions and the chunk's buffer, per pushed chunk. */
  chunks: { start: number; end: number; buffer: ArrayBufferLike }[] = [];
  get length(): number {
    return this.bytes.length - this.front;
  }
  push(c: Uint8Array): void {
    if (c.length === 0) return;
    this.chunks.push({ start: this.bytes.length, end: this.bytes.length + c.length, buffer: c.buffer });
    for (const b of c) this.bytes.push(b);
  }
  slice(from: number, len: number): Uint8Array {
    return Uint8Array.from(this.bytes.slice(this.front + from, this.front + from + len));
  }
  /** The chunk holding all of [front, front + n), if one does. */
  oneChunk(n: number): { buffer: ArrayBufferLike } | undefined {
    return this.chunks.find((c) => c.start <= this.front && this.front + n <= c.end);
  }
  isChunkBuffer(b: ArrayBufferLike): boolean {
    return this.chunks.some((c) => c.buffer === b);
  }
}

type Cmd =
  | { op: 'push'; data: Uint8Array }
  | { op: 'consume' | 'peek' | 'skip' | 'consumeCopy'; frac: number; scratch: boolean }
  | { op: 'u8' | 'u16' | 'u32'; frac: number }
  | { op: 'copyTo' | 'viewsTo'; frac: number; lenFrac: number };

// In [0, 1): a position scaled by it stays inside the range.
const frac = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  // Own ArrayBuffer per chunk (no shared pool) so views can be told from copies.
  { weight: 4, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 24 }).map((d) => ({ op: 'push' as const, data: new Uint8Array(d) })) },
  { weight: 3, arbitrary: fc.record({ op: fc.constantFrom('consume' as const, 'peek' as const, 'skip' as const, 'consumeCopy' as const), frac, scratch: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('u8' as const, 'u16' as const, 'u32' as const), frac }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('copyTo' as const, 'viewsTo' as const), frac, lenFrac: frac }) },
);

function apply(q: ByteQueue, m: Model, cmd: Cmd): void {
  switch (cmd.op) {
    case 'push':
      q.push(cmd.data);
      m.push(cmd.data);
      break;
    case 'consume':
    case 'peek':
    case 'skip':
    case 'consumeCopy': {
      // Cubed: mostly small reads, so many chunks pile up and the ring wraps and grows.
      const n = Math.floor(cmd.frac ** 3 * m.length);
      const want = m.slice(0, n);
      const single = m.oneChunk(n);
      const scratch = cmd.scratch ? new Uint8Array(n + 3) : undefined;
      if (cmd.op === 'skip') q.skip(n);
      else {
        const got = cmd.op === 'consumeCopy' ? q.consumeCopy(n) : q[cmd.op](n, scratch);
        expect(got).toEqual(want);
        if (n > 0 && cmd.op !== 'consumeCopy' && single) expect(got.buffer).toBe(single.buffer); // a view, no copy
        else if (n > 0) {
          expect(m.isChunkBuffer(got.buffer)).toBe(false); // a copy never aliases a chunk
          if (scratch && cmd.op !== 'consumeCopy') expect(got.buffer).toBe(scratch.buffer);
        }
      }
      if (cmd.op !== 'peek') m.front += n;
      break;
    }
    case 'u8':
    case 'u16':
    case 'u32': {
      const w = cmd.op === 'u8' ? 1 : cmd.op === 'u16' ? 2 : 4;
      if (m.length < w) {
        if (cmd.op === 'u8') expect(() => q.byteAt(m.length)).toThrow(RangeError);
        break;
      }
      const at = Math.floor(cmd.frac * (m.length - w + 1));
      const b = m.slice(at, w);
      const want = b.reduce((acc, x) => acc * 256 + x, 0);
      const got = cmd.op === 'u8' ? q.byteAt(at) : cmd.op === 'u16' ? q.readUInt16BE(at) : q.readUInt32BE(at);
      expect(got).toBe(want);
      break;
    }
    case 'copyTo': {
      const from = Math.floor(cmd.frac * m.length);
      const len = Math.floor(cmd.lenFrac * (m.length - from));
      const dest = new Uint8Array(len + 4).fill(0xee);
      q.copyTo(from, len, dest, 2);
      expect(dest.subarray(2, 2 + len)).toEqual(m.slice(from, len));
      expect([dest[0], dest[1], dest[len + 2], dest[len + 3]]).toEqual([0xee, 0xee, 0xee, 0xee]);
      break;
    }
    case 'viewsTo': {
      const from = Math.floor(cmd.frac * m.length);
      const len = Math.floor(cmd.lenFrac * (m.length - from));
      const out: Uint8Array[] = [new Uint8Array(1)];
      q.viewsTo(from, len, out);
      // Appended after what was there, in order, together exactly the range, and every one a view (no copy).
      expect(out[0]!.length).toBe(1);
      const views = out.slice(1);
      expect(Buffer.concat(views)).toEqual(Buffer.from(m.slice(from, len)));
      for (const v of views) {
        expect(v.length).toBeGreaterThan(0);
        expect(m.isChunkBuffer(v.buffer)).toBe(true);
      }
      break;
    }
  }
  expect(q.length).toBe(m.length);
  expect(q.position).toBe(m.front);
}

describe('ByteQueue', () => {
  it('matches a naive concatenation for any sequence of pushes and reads', () => {
    fc.assert(
      fc.property(fc.array(cmdArb, { maxLength: 200 }), (cmds) => {
        const q = new ByteQueue();
        const m = new Model();
        const dropped: ArrayBufferLike[] = [];
        q.onDrop = (c) => dropped.push(c.buffer);
        for (const c of cmds) {
          apply(q, m, c);
          // onDrop told of exactly the chunks wholly consumed, in order, once each.
          expect(dropped).toEqual(m.chunks.filter((k) => k.end <= m.front).map((k) => k.buffer));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('reads the same bytes however the input is chunked and however it is consumed', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        fc.array(fc.integer({ min: 0, max: 300 })),
        fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1 }),
        (data, cuts, reads) => {
          const q = new ByteQueue();
          const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
          let prev = 0;
          for (const p of [...points, data.length]) {
            q.push(data.slice(prev, p));
            prev = p;
          }
          expect(q.length).toBe(data.length);
          const out: number[] = [];
          for (let i = 0; q.length > 0; i++) {
            const n = Math.min(q.length, reads[i % reads.length] as number);
            out.push(...q.consume(n));
          }
          expect(Uint8Array.from(out)).toEqual(data);
        },
      ),
    );
  });

  it('copies out piece by piece in order, between skips from the front (the send buffer pattern)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 20 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.tuple(fc.integer({ min: 1, max: 25 }), fc.integer({ min: 0, max: 25 })), { minLength: 1 }),
        (chunks, steps) => {
          const q = new ByteQueue();
          const all: number[] = [];
          for (const c of chunks) {
            q.push(c);
            all.push(...c);
          }
          let sent = 0; // absolute
          for (const [len, release] of steps) {
            const n = Math.min(len, all.length - sent);
            const dest = new Uint8Array(n);
            q.copyTo(sent - q.position, n, dest, 0);
            expect([...dest]).toEqual(all.slice(sent, sent + n));
            sent += n;
            q.skip(Math.min(release, sent - q.position));
          }
        },
      ),
    );
  });

  it('refuses reads past the end and negative ranges', () => {
    const q = new ByteQueue();
    q.push(Uint8Array.of(1, 2, 3));
    expect(() => q.consume(4)).toThrow(RangeError);
    expect(() => q.skip(-1)).toThrow(RangeError);
    expect(() => q.readUInt32BE(0)).toThrow(RangeError);
    expect(() => q.copyTo(2, 2, new Uint8Array(2), 0)).toThrow(RangeError);
    expect(q.length).toBe(3); // nothing consumed by a refused read
    expect(q.readUInt16BE(1)).toBe(0x0203);
  });

  it('keeps order when the ring wraps and then grows', () => {
    const q = new ByteQueue();
    let next = 0;
    const pushN = (k: number): void => {
      for (let i = 0; i < k; i++) q.push(Uint8Array.of(next++));
    };
    pushN(6);
    expect(q.consume(4)).toEqual(Uint8Array.of(0, 1, 2, 3));
    pushN(20); // wraps past the end of the first ring, then outgrows it
    expect(q.consume(q.length)).toEqual(Uint8Array.from({ length: 22 }, (_, i) => i + 4));
  });

  it('reads a u32 split over four chunks', () => {
    const q = new ByteQueue();
    for (const b of [0xde, 0xad, 0xbe, 0xef]) q.push(Uint8Array.of(b));
    expect(q.readUInt32BE()).toBe(0xdeadbeef);
    expect(q.consume(4)).toEqual(Uint8Array.of(0xde, 0xad, 0xbe, 0xef));
  });
});
