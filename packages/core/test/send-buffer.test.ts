import fc from 'fast-check';
import { describe, it } from 'vitest';
import { SendBuffer } from '../src/send-buffer.js';

const BLOCK_BYTES = 16 * 1024;

/** The byte a stream `id` carries at `offset`: lets any range be checked without keeping a copy. */
const byteAt = (id: number, offset: number): number => (offset * 31 + id * 7 + (offset >> 9)) & 0xff;

function chunk(id: number, offset: number, len: number): Uint8Array {
  const c = new Uint8Array(len);
  for (let i = 0; i < len; i++) c[i] = byteAt(id, offset + i);
  return c;
}

describe('SendBuffer', () => {
  it('any buffered range reads back intact across streams, under any mix of writes, acks and reads (property)', () => {
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
            } else if (op === 'ack') {
              sb.releaseTo(sb.start + Math.floor(frac * sb.bufferedBytes));
            } else if (sb.bufferedBytes > 0) {
              const from = sb.start + Math.floor(frac * sb.bufferedBytes);
              if (!intact(stream, from, Math.min(size, sb.writtenOffset - from))) return false;
            }
            // After every step, everything still buffered in every stream is intact
            for (let id = 0; id < 3; id++) if (!intact(id, bufs[id]!.start, bufs[id]!.bufferedBytes)) return false;
          }
          return true;
        },
      ),
      { numRuns: 100 },
    );
  });

});
