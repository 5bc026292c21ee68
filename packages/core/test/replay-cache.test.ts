import { describe, expect, it } from 'vitest';
import { VirtualClock, type Clock } from '../src/clock.js';
import { DEFAULT_CONFIG } from '../src/config.js';
import { PlaitError } from '../src/errors.js';
import { NonceLog, ReplayCache } from '../src/replay-cache.js';

const nonce = (i: number): Uint8Array => {
  const n = new Uint8Array(32);
  new DataView(n.buffer).setUint32(28, i);
  return n;
};

describe('ReplayCache', () => {
  it('reports fresh, then replay for the same bytes (even in another array)', () => {
    const c = new ReplayCache(10, 1000, new VirtualClock());
    expect(c.checkAndAdd(nonce(1))).toBe('fresh');
    expect(c.checkAndAdd(nonce(1).slice())).toBe('replay');
    expect(c.checkAndAdd(nonce(2))).toBe('fresh');
    // A view with an offset is keyed by its own bytes only.
    const big = new Uint8Array(40);
    big.set(nonce(2), 8);
    expect(c.checkAndAdd(big.subarray(8))).toBe('replay');
  });

  it('forgets entries after ttl and only then', async () => {
    const clock = new VirtualClock();
    const c = new ReplayCache(10, 1000, clock);
    c.checkAndAdd(nonce(1));
    await clock.advance(999);
    expect(c.checkAndAdd(nonce(1))).toBe('replay');
    await clock.advance(1);
    expect(c.checkAndAdd(nonce(1))).toBe('fresh');
  });

  it('is bounded: full until the oldest entries age out', async () => {
    const clock = new VirtualClock();
    const c = new ReplayCache(3, 1000, clock);
    expect(c.checkAndAdd(nonce(1))).toBe('fresh');
    await clock.advance(500);
    expect(c.checkAndAdd(nonce(2))).toBe('fresh');
    expect(c.checkAndAdd(nonce(3))).toBe('fresh');
    expect(c.checkAndAdd(nonce(4))).toBe('full');
    expect(c.size).toBe(3);
    // A known nonce is still a replay when full.
    expect(c.checkAndAdd(nonce(2))).toBe('replay');
    await clock.advance(500); // nonce 1 expires
    expect(c.checkAndAdd(nonce(4))).toBe('fresh');
    expect(c.checkAndAdd(nonce(5))).toBe('full');
    await clock.advance(1000);
    expect(c.checkAndAdd(nonce(5))).toBe('fresh');
    expect(c.size).toBe(1);
  });

  it('forConfig keeps nonces for twice the timestamp window', () => {
    const c = ReplayCache.forConfig(DEFAULT_CONFIG, new VirtualClock());
    expect(c.ttlMs).toBe(60_000);
    expect(c.maxEntries).toBe(65536);
  });

  it('rejects nonsense sizes', () => {
    expect(() => new ReplayCache(0, 1000, new VirtualClock())).toThrow(PlaitError);
    expect(() => new ReplayCache(1, 0, new VirtualClock())).toThrow(PlaitError);
  });

  it('expiry is amortised O(1): a large steady-state cache stays fast', () => {
    // A plain clock: VirtualClock.advance would dominate the timing.
    let t = 0;
    const clock: Clock = { now: () => t, wallNow: () => t, setTimeout: () => ({ cancel() {} }) };
    const c = new ReplayCache(100_000, 5000, clock);
    // ~50k live entries; a full scan per call would cost ~10^10 steps and
    // run into the test timeout (no wall-clock assertion here: a busy
    // machine must not fail a correct cache).
    for (let i = 0; i < 200_000; i++) {
      if (c.checkAndAdd(nonce(i)) !== 'fresh') throw new Error(`nonce ${i} not fresh`);
      if (i % 10 === 9) t++;
    }
    expect(c.size).toBeLessThanOrEqual(50_010);
    expect(c.size).toBeGreaterThanOrEqual(49_990);
  });
});

describe('NonceLog', () => {
  it('remembers the last max nonces', () => {
    const log = new NonceLog(3);
    expect(log.checkAndAdd(nonce(1))).toBe(true);
    expect(log.checkAndAdd(nonce(1))).toBe(false);
    expect(log.checkAndAdd(nonce(2))).toBe(true);
    expect(log.checkAndAdd(nonce(3))).toBe(true);
    expect(log.checkAndAdd(nonce(4))).toBe(true); // evicts 1
    expect(log.size).toBe(3);
    expect(log.checkAndAdd(nonce(2))).toBe(false);
    expect(log.checkAndAdd(nonce(4))).toBe(false);
    expect(log.checkAndAdd(nonce(1))).toBe(true);
    expect(() => new NonceLog(0)).toThrow(PlaitError);
  });
});
