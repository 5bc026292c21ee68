import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, PlaitError } from '../src/errors.js';
import { IntervalSet } from '../src/id-set.js';

/** Maximal runs of consecutive members: the interval count a merged set must have. */
function runs(s: Set<number>): number {
  let n = 0;
  for (const x of s) if (!s.has(x - 1)) n++;
  return n;
}

describe('IntervalSet', () => {
  it('behaves like a Set, with one interval per run of consecutive members', () => {
    const base = fc.oneof(fc.constant(0), fc.constant(2 ** 32 - 50), fc.constant(Number.MAX_SAFE_INTEGER - 100));
    const op = fc.tuple(fc.boolean(), fc.nat(80));
    fc.assert(
      fc.property(base, fc.array(op, { maxLength: 200 }), (b, ops) => {
        const set = new IntervalSet();
        const ref = new Set<number>();
        for (const [isAdd, k] of ops) {
          const n = b + k;
          if (isAdd) {
            set.add(n);
            ref.add(n);
            expect(set.intervals).toBe(runs(ref));
          } else {
            expect(set.has(n)).toBe(ref.has(n));
          }
        }
        for (let k = -1; k <= 82; k++) expect(set.has(b + k)).toBe(ref.has(b + k));
      }),
      { numRuns: 1000 },
    );
  });

  it('memory follows gaps, not members', () => {
    const s = new IntervalSet();
    for (let i = 0; i < 10000; i++) s.add(i);
    expect(s.intervals).toBe(1);
    for (let i = 20000; i > 10001; i--) s.add(i);
    expect(s.intervals).toBe(2);
    s.add(10001);
    expect(s.intervals).toBe(2);
    s.add(10000);
    expect(s.intervals).toBe(1);
    expect(s.has(20001)).toBe(false);
    expect(s.has(-1)).toBe(false);
  });

  it('merges n - 1 and n + 1 through n, and re-adding is a no-op', () => {
    const s = new IntervalSet();
    s.add(1);
    s.add(3);
    expect(s.intervals).toBe(2);
    s.add(3);
    expect(s.intervals).toBe(2);
    s.add(2);
    expect(s.intervals).toBe(1);
    expect([0, 1, 2, 3, 4].map((n) => s.has(n))).toEqual([false, true, true, true, false]);
  });

  it('refuses values that are not non-negative safe integers', () => {
    const s = new IntervalSet();
    for (const bad of [-1, 1.5, NaN, Infinity, Number.MAX_SAFE_INTEGER]) {
      expect(() => s.add(bad)).toThrow(PlaitError);
      try {
        s.add(bad);
      } catch (e) {
        expect((e as PlaitError).code).toBe(ErrorCode.INTERNAL);
      }
    }
    expect(s.intervals).toBe(0);
  });
});
