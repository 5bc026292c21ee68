import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BLOCK_BYTES, blockPoolStats } from '../src/block-pool.js';
import { SendBuffer } from '../src/send-buffer.js';

/** The byte a stream `id` carries at `offset`: lets any range be checked without keeping a copy. */
const byteAt = (id: number, offset: number): number => (offset * 31 + id * 7 + (offset >> 9)) & 0xff;

function chunk(id: number, offset: number, len: number): Uint8Array {
  const c = new Uint8Array(len);
  for (let i = 0; i < len; i++) c[i] = byteAt(id, offset + i);
  return c;
}

describe('SendBuffer', () => {
  it('copies writes: the writer may reuse its buffer at once', () => {
    const sb = new SendBuffer();
    const w = new Uint8Array(40_000).fill(7);
    sb.append(w);
    w.fill(9);
    const out = new Uint8Array(40_000);
    sb.copyOut(0, 40_000, out, 0);
    expect(out.every((b) => b === 7)).toBe(true);
  });

  it('any buffered range reads back intact while blocks are recycled between streams (property)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            stream: fc.integer({ min: 0, max: 2 }),
            op: fc.constantFrom('write', 'write', 'ack', 'read'),
            size: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.integer({ min: 1, max: 3 * BLOCK_BYTES })),
            frac: fc.double({ min: 0, max: 1, noNaN: true }),
          }),
          { minLength: 10, maxLength: 120, size: 'max' },
        ),
        (ops) => {
          const bufs = [new SendBuffer(), new SendBuffer(), new SendBuffer()];
          const intact = (id: number, from: number, len: number): boolean => {
            const out = new Uint8Array(len);
            bufs[id]!.copyOut(from, len, out, 0);
            for (let i = 0; i < len; i++) if (out[i] !== byteAt(id, from + i)) return false;
            return true;
          };
          for (const { stream, op, size, frac } of ops) {
            const sb = bufs[stream]!;
            if (op === 'write') {
              const c = chunk(stream, sb.writtenOffset, size);
              sb.append(c);
              c.fill(0); // the writer reuses its buffer
            } else if (op === 'ack') {
              sb.releaseTo(sb.start + Math.floor(frac * sb.bufferedBytes));
            } else if (sb.bufferedBytes > 0) {
              const from = sb.start + Math.floor(frac * sb.bufferedBytes);
              if (!intact(stream, from, Math.min(size, sb.writtenOffset - from))) return false;
            }
            // After every step, everything still buffered in every stream is intact
            // (a block recycled too early shows up as another stream's bytes).
            for (let id = 0; id < 3; id++) if (!intact(id, bufs[id]!.start, bufs[id]!.bufferedBytes)) return false;
          }
          return true;
        },
      ),
      { numRuns: 100 },
    );
  });

  it('gives its blocks back once everything is acknowledged, so a steady stream allocates no new memory', () => {
    const sb = new SendBuffer();
    const piece = new Uint8Array(64 * 1024);
    // Warm the pool, then stream 64 MiB with a 1 MiB window.
    for (let i = 0; i < 16; i++) sb.append(piece);
    sb.releaseTo(sb.writtenOffset);
    const before = blockPoolStats().allocated;
    for (let i = 0; i < 1024; i++) {
      sb.append(piece);
      if (sb.bufferedBytes > 1024 * 1024) sb.releaseTo(sb.writtenOffset - 512 * 1024);
    }
    sb.releaseTo(sb.writtenOffset);
    expect(blockPoolStats().allocated - before).toBeLessThan(8);
  });

  it('pins no block for a few bytes written alone', () => {
    const sb = new SendBuffer();
    const before = blockPoolStats();
    sb.append(new Uint8Array(30));
    expect(blockPoolStats()).toEqual(before);
    expect(sb.bufferedBytes).toBe(30);
  });
});
