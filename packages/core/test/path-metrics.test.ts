import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PathMetrics, WindowedExtreme } from '../src/path-metrics.js';

/** Times are plain ms on a clock the test owns; nothing reads the wall clock. */

describe('RTT smoothing (RFC 6298 section 2)', () => {
  it('follows the RFC on a known sample sequence, exactly', () => {
    const m = new PathMetrics();
    // Dyadic samples keep every step exact in binary floating point.
    const steps: [sample: number, srtt: number, rttvar: number][] = [
      [100, 100, 50], // 2.2: SRTT <- R, RTTVAR <- R/2
      [200, 112.5, 62.5], // 2.3: RTTVAR from the *old* SRTT, then SRTT
      [50, 104.6875, 62.5],
      [100, 104.1015625, 48.046875],
      [100, 103.5888671875, 37.060546875],
    ];
    let t = 0;
    for (const [r, srtt, rttvar] of steps) {
      m.onRttSample((t += 100), r);
      expect([m.srtt, m.rttvar]).toEqual([srtt, rttvar]);
    }
  });

  it('treats a zero sample as tiny, so a measured path never looks unmeasured again', () => {
    const m = new PathMetrics();
    m.onRttSample(0, 0);
    expect(m.srtt).toBe(0.01);
    expect(m.minRtt(0)).toBe(0.01);
  });
});

describe('retransmission timeout', () => {
  const MIN = 200;
  const MAX = 3000;

  it('is the ceiling before any sample', () => {
    expect(new PathMetrics().rto(MIN, MAX)).toBe(MAX);
  });

  it('is srtt + 4 rttvar when the variance term is above the floor', () => {
    const m = new PathMetrics();
    m.onRttSample(0, 100);
    m.onRttSample(100, 200); // srtt 112.5, rttvar 62.5
    expect(m.rto(MIN, MAX)).toBe(112.5 + 250);
  });

  it('floors the variance term, not the sum: a steady 120 ms path gets 320 ms, not 200', () => {
    const m = new PathMetrics();
    for (let i = 0; i < 50; i++) m.onRttSample(i * 120, 120);
    expect(m.rttvar).toBeLessThan(1);
    expect(m.rto(MIN, MAX)).toBe(120 + MIN);
    const lan = new PathMetrics();
    lan.onRttSample(0, 1);
    expect(lan.rto(MIN, MAX)).toBe(1 + MIN);
  });

  it('never exceeds the ceiling', () => {
    const m = new PathMetrics();
    m.onRttSample(0, 2000); // 2000 + 4 * 1000 = 6000
    expect(m.rto(MIN, MAX)).toBe(MAX);
  });
});

describe('windowed min RTT (10 s)', () => {
  it('is 0 before any sample', () => {
    expect(new PathMetrics().minRtt(5)).toBe(0);
  });

  it('keeps the minimum for 10 s, then falls back to the best newer sample', () => {
    const m = new PathMetrics();
    m.onRttSample(0, 30);
    m.onRttSample(5_000, 40);
    m.onRttSample(9_000, 50);
    expect(m.minRtt(9_000)).toBe(30);
    expect(m.minRtt(10_000)).toBe(30); // exactly 10 s old: still inside
    expect(m.minRtt(10_001)).toBe(40);
    expect(m.minRtt(15_001)).toBe(50);
  });

  it('keeps the newest sample when every sample is stale: an old estimate beats none', () => {
    const m = new PathMetrics();
    m.onRttSample(0, 30);
    m.onRttSample(1_000, 50);
    expect(m.minRtt(60_000)).toBe(50);
  });

  it('takes a lower sample at once', () => {
    const m = new PathMetrics();
    m.onRttSample(0, 30);
    m.onRttSample(100, 20);
    expect(m.minRtt(100)).toBe(20);
  });
});

describe('windowed max delivery rate (2 s)', () => {
  it('is the max of the samples of the last 2 s, in bytes per ms', () => {
    const m = new PathMetrics();
    expect(m.rate(0)).toBe(0);
    m.onRateSample(0, 10_000, 2); // 5000 B/ms
    m.onRateSample(500, 3_000, 1); // 3000 B/ms
    m.onRateSample(1_500, 8_000, 4); // 2000 B/ms
    expect(m.rate(1_500)).toBe(5000);
    expect(m.rate(2_000)).toBe(5000);
    expect(m.rate(2_001)).toBe(3000);
    expect(m.rate(2_501)).toBe(2000);
    expect(m.rate(60_000)).toBe(2000); // stale but newest: kept
  });

  it('ignores empty samples and zero intervals', () => {
    const m = new PathMetrics();
    m.onRateSample(0, 1000, 0);
    m.onRateSample(0, 0, 10);
    expect(m.rate(0)).toBe(0);
  });
});

describe('WindowedExtreme against an obvious model', () => {
  // Model: best of the samples at most `window` old; if none is, the newest sample.
  const model = (samples: readonly [number, number][], now: number, window: number, max: boolean): number => {
    const live = samples.filter(([t]) => now - t <= window).map(([, v]) => v);
    if (live.length === 0) return samples.length > 0 ? samples[samples.length - 1]![1] : 0;
    return max ? Math.max(...live) : Math.min(...live);
  };

  it('agrees on random sample sequences (including long runs that compact the queue)', () => {
    const op = fc.record({
      dt: fc.integer({ min: 0, max: 400 }),
      value: fc.integer({ min: 1, max: 50 }),
      query: fc.boolean(),
    });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 600 }), fc.boolean(), (ops, max) => {
        const window = 1000;
        const w = new WindowedExtreme(window, max ? (a, b) => a > b : (a, b) => a < b);
        const samples: [number, number][] = [];
        let now = 0;
        for (const o of ops) {
          now += o.dt;
          if (o.query) {
            expect(w.get(now)).toBe(model(samples, now, window, max));
          } else {
            w.update(now, o.value);
            samples.push([now, o.value]);
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('stays correct over a long monotone run (every sample kept, then compacted)', () => {
    const w = new WindowedExtreme(100, (a, b) => a > b);
    // Strictly decreasing values: nothing is dominated, so the queue only shrinks by expiry.
    for (let t = 0; t < 5_000; t++) {
      w.update(t, 10_000 - t);
      expect(w.get(t)).toBe(10_000 - Math.max(0, t - 100));
    }
  });
});
