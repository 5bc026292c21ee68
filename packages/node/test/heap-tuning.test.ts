import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';
import { defaultHeapFloor, growingPercentFor, tuneHeapForThroughput } from '../src/heap-tuning.js';

const MIB = 1024 * 1024;

describe('heap tuning', () => {
  it('puts the next full-collection limit near the floor while the heap is small', () => {
    // 10 MiB live, 128 MiB floor: grow by 1180% (x12.8) -> 128 MiB.
    expect(growingPercentFor(10 * MIB, 128 * MIB)).toBe(1180);
    const p = growingPercentFor(10 * MIB, 128 * MIB);
    expect(10 * MIB * (1 + p / 100)).toBeGreaterThanOrEqual(128 * MIB);
  });

  it("gives V8 its own factor back once the heap reaches the floor (a big heap must not grow x10)", () => {
    expect(growingPercentFor(128 * MIB, 128 * MIB)).toBe(0);
    expect(growingPercentFor(900 * MIB, 128 * MIB)).toBe(0);
  });

  it('bounds the factor for a nearly empty heap', () => {
    expect(growingPercentFor(0, 128 * MIB)).toBeLessThanOrEqual(2000);
    expect(growingPercentFor(100, 128 * MIB)).toBeLessThanOrEqual(2000);
  });

  it('keeps the floor small on a small router', () => {
    expect(defaultHeapFloor(24 * 1024 * MIB)).toBe(128 * MIB);
    expect(defaultHeapFloor(512 * MIB)).toBe(32 * MIB);
    expect(defaultHeapFloor(128 * MIB)).toBe(16 * MIB);
  });

  it('sets the factor for the current heap and resets it on stop', () => {
    const floor = getHeapStatistics().used_heap_size * 4;
    const t = tuneHeapForThroughput(floor);
    try {
      expect(t.percent).toBeGreaterThan(0);
    } finally {
      t.stop();
    }
    expect(t.percent).toBe(0);
  });
});
