import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, ProtocolError } from '../src/errors.js';
import { Reassembly } from '../src/reassembly.js';

/** Byte-at-a-time reference: obviously right, hopelessly slow. */
class Model {
  next: number;
  readonly held = new Map<number, number>();
  constructor(start = 0) {
    this.next = start;
  }
  insert(offset: number, data: Uint8Array): number[] {
    data.forEach((byte, i) => {
      const pos = offset + i;
      if (pos >= this.next && !this.held.has(pos)) this.held.set(pos, byte);
    });
    const out: number[] = [];
    while (this.held.has(this.next)) {
      out.push(this.held.get(this.next)!);
      this.held.delete(this.next);
      this.next++;
    }
    return out;
  }
  /** Maximal runs of held bytes: a lower bound on the parts any implementation needs. */
  runs(): number {
    let n = 0;
    for (const pos of this.held.keys()) if (!this.held.has(pos - 1)) n++;
    return n;
  }
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function concat(chunks: Uint8Array[]): number[] {
  return chunks.flatMap((c) => Array.from(c));
}

type Piece = { offset: number; data: Uint8Array };

/**
 * A stream cut into frames (covering every byte), plus duplicates re-split at
 * other boundaries, shuffled. Each piece is a view into its own "record"
 * buffer with padding around it, like a decoded DATA payload.
 */
const scenario = fc
  .record({
    input: fc.uint8Array({ maxLength: 600 }),
    cuts: fc.array(fc.nat(), { maxLength: 40 }),
    extras: fc.array(fc.tuple(fc.nat(), fc.nat(120)), { maxLength: 30 }),
    pads: fc.array(fc.tuple(fc.nat(300), fc.nat(300)), { minLength: 1, maxLength: 20 }),
    shuffleSeed: fc.nat(),
    start: fc.oneof(fc.constant(0), fc.nat(1_000_000), fc.constant(Number.MAX_SAFE_INTEGER - 10_000)),
  })
  .map(({ input, cuts, extras, pads, shuffleSeed, start }) => {
    const n = input.length;
    const points = [...new Set([0, n, ...cuts.map((c) => c % (n + 1))])].sort((a, b) => a - b);
    const ranges: [number, number][] = [];
    for (let k = 0; k + 1 < points.length; k++) ranges.push([points[k]!, points[k + 1]!]);
    for (const [a, l] of extras) {
      const s = a % (n + 1);
      ranges.push([s, Math.min(n, s + l)]);
    }
    const rnd = mulberry32(shuffleSeed);
    for (let i = ranges.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [ranges[i], ranges[j]] = [ranges[j]!, ranges[i]!];
    }
    const pieces: Piece[] = ranges.map(([s, e], i) => {
      const [before, after] = pads[i % pads.length]!;
      const rec = new Uint8Array(before + (e - s) + after).fill(0xee);
      rec.set(input.subarray(s, e), before);
      return { offset: start + s, data: rec.subarray(before, before + (e - s)) };
    });
    return { input, pieces, start };
  });

function expectSameState(r: Reassembly, before: { next: number; buffered: number; parts: number }): void {
  expect({ next: r.nextOffset, buffered: r.bufferedBytes, parts: r.parts }).toEqual(before);
}

describe('Reassembly', () => {
  it('delivers the stream exactly once, in order, whatever the order, duplicates and re-splits', () => {
    fc.assert(
      fc.property(scenario, ({ input, pieces, start }) => {
        const r = new Reassembly(100_000, start);
        const m = new Model(start);
        const out: number[] = [];
        for (const p of pieces) {
          const chunks = r.insert(p.offset, p.data);
          for (const c of chunks) expect(c.length).toBeGreaterThan(0);
          const got = concat(chunks);
          expect(got).toEqual(m.insert(p.offset, p.data));
          out.push(...got);
          expect(r.nextOffset).toBe(m.next);
          expect(r.bufferedBytes).toBe(m.held.size);
          expect(r.parts).toBeGreaterThanOrEqual(m.runs());
          expect(r.parts).toBeLessThanOrEqual(r.bufferedBytes);
        }
        expect(out).toEqual(Array.from(input));
        expect(r.nextOffset).toBe(start + input.length);
        expect(r.bufferedBytes).toBe(0);
        expect(r.parts).toBe(0);
      }),
      { numRuns: 1000 },
    );
  });

  it('enforces maxParts without changing state, and stays correct otherwise', () => {
    fc.assert(
      fc.property(scenario, fc.integer({ min: 1, max: 6 }), ({ input, pieces, start }, maxParts) => {
        const r = new Reassembly(maxParts, start);
        const m = new Model(start);
        let refused = 0;
        const out: number[] = [];
        for (const p of pieces) {
          const before = { next: r.nextOffset, buffered: r.bufferedBytes, parts: r.parts };
          let chunks: Uint8Array[];
          try {
            chunks = r.insert(p.offset, p.data);
          } catch (e) {
            expect(e).toBeInstanceOf(ProtocolError);
            expect((e as ProtocolError).code).toBe(ErrorCode.PROTOCOL);
            expectSameState(r, before);
            refused++;
            continue; // the model never saw it either
          }
          const got = concat(chunks);
          expect(got).toEqual(m.insert(p.offset, p.data));
          out.push(...got);
          expect(r.parts).toBeLessThanOrEqual(maxParts);
          expect(r.bufferedBytes).toBe(m.held.size);
        }
        if (refused === 0) expect(out).toEqual(Array.from(input));
      }),
      { numRuns: 1000 },
    );
  });

  it('the parts limit counts pieces, including gaps filled by one overlapping insert', () => {
    const r = new Reassembly(3);
    const b = (n: number): Uint8Array => new Uint8Array(n).fill(n);
    expect(r.insert(10, b(5))).toEqual([]);
    expect(r.insert(20, b(5))).toEqual([]);
    expect(r.insert(30, b(5))).toEqual([]);
    expect(r.parts).toBe(3);
    expect(() => r.insert(40, b(5))).toThrow(ProtocolError);
    // [5, 40) covers the three parts and would add gaps 5-10, 15-20, 25-30, 35-40.
    expect(() => r.insert(5, b(35))).toThrow(ProtocolError);
    expectSameState(r, { next: 0, buffered: 15, parts: 3 });
    // Duplicates of held bytes add nothing, so they are fine at the limit.
    expect(r.insert(20, b(5))).toEqual([]);
    expect(r.insert(11, b(2))).toEqual([]);
    expectSameState(r, { next: 0, buffered: 15, parts: 3 });
    // In-order data is never refused, and drains what it reaches.
    const got = r.insert(0, new Uint8Array(20));
    expect(got.map((c) => c.length)).toEqual([20, 5]);
    expectSameState(r, { next: 25, buffered: 5, parts: 1 });
    const code = (() => {
      try {
        new Reassembly(0).insert(1, b(1));
      } catch (e) {
        return e instanceof ProtocolError ? e.code : undefined;
      }
      return undefined;
    })();
    expect(code).toBe(ErrorCode.PROTOCOL);
  });

  it('the in-order path returns the caller`s own buffer, untouched', () => {
    const r = new Reassembly(8);
    const a = Uint8Array.of(1, 2, 3);
    const got = r.insert(0, a);
    expect(got).toHaveLength(1);
    expect(got[0]).toBe(a);
    // A partial duplicate is trimmed with a view, not a copy.
    const rec = Uint8Array.of(2, 3, 4, 5);
    const [tail] = r.insert(1, rec);
    expect(tail?.buffer).toBe(rec.buffer);
    expect(Array.from(tail ?? [])).toEqual([4, 5]);
    expect(r.nextOffset).toBe(5);
    expect(r.insert(0, Uint8Array.of(1, 2, 3, 4, 5))).toEqual([]);
    expect(r.insert(7, new Uint8Array(0))).toEqual([]);
    expect(r.parts).toBe(0);
  });

  it('held parts keep big views but copy tiny ones (no pinning whole records)', () => {
    const r = new Reassembly(8);
    const big = new Uint8Array(65536);
    big.fill(7, 100, 100 + 16384);
    const tiny = new Uint8Array(65536);
    tiny[5] = 9;
    r.insert(100, big.subarray(100, 100 + 16384)); // 1/4 of its buffer: kept as a view
    r.insert(99, tiny.subarray(5, 6)); // 1 byte of a 64 KiB buffer: copied
    const out = r.insert(0, new Uint8Array(99));
    expect(out.map((c) => c.length)).toEqual([99, 1, 16384]);
    expect(out[1]?.buffer).not.toBe(tiny.buffer);
    expect(out[1]?.[0]).toBe(9);
    expect(out[2]?.buffer).toBe(big.buffer);
  });

  it('overlapping pieces with different boundaries keep the first copy of each byte', () => {
    const r = new Reassembly(16);
    r.insert(10, Uint8Array.of(10, 11, 12, 13));
    r.insert(20, Uint8Array.of(20, 21));
    // Covers 8..23; only 8-9, 14-19 and 22-23 are new.
    r.insert(8, Uint8Array.from({ length: 16 }, (_, i) => 8 + i));
    expect(r.parts).toBe(5);
    expect(r.bufferedBytes).toBe(16);
    const out = concat(r.insert(0, Uint8Array.of(0, 1, 2, 3, 4, 5, 6, 7)));
    expect(out).toEqual(Array.from({ length: 24 }, (_, i) => i));
    expect(r.bufferedBytes).toBe(0);
  });
});
