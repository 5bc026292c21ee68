/**
 * CI slice of `npm run fuzz`: a fixed-seed run of mutated and random
 * handshakes, sealed records and frames into the real Acceptor and Session
 * (scripts/fuzz/engine.mjs), a few thousand cases per layer in a few
 * seconds. Any crash, unhandled rejection, broken invariant (unbounded
 * buffers, a refused channel left open, a pending handshake that never
 * ends) or a failed health check afterwards (a fresh client must still move
 * bytes) fails the test with the seed, case index and a hex dump.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeFailure, runFuzz, type FuzzReport } from '../scripts/fuzz/engine.mjs';

const SEED = 20240601;
let rejections: unknown[] = [];
const onRejection = (e: unknown): void => void rejections.push(e);

beforeAll(() => {
  rejections = [];
  process.on('unhandledRejection', onRejection);
});
afterAll(() => {
  process.off('unhandledRejection', onRejection);
});

function expectClean(r: FuzzReport): void {
  const text = r.failures.map((f) => describeFailure(f, 256)).join('\n\n');
  expect(r.failures.length, text).toBe(0);
  expect(rejections).toEqual([]);
}

describe('fuzz slice (seed-fixed)', () => {
  for (const [layer, cases] of [
    ['handshake', 4000],
    ['records', 1000],
    ['frames', 2500],
    ['all', 2000],
  ] as const) {
    it(`${layer}: ${cases} cases, no crash, bounded state, server still serves`, async () => {
      const r = await runFuzz({ cases, seed: SEED, layer, healthEvery: 1000 });
      expectClean(r);
      expect(r.cases).toBe(cases);
      expect(r.stats.healthChecks).toBeGreaterThanOrEqual(1);
    }, 120_000);
  }
});
