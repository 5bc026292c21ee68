import { VirtualClock } from '@plait/core';

/**
 * A virtual clock for tests that also do real I/O (sockets, relays, a real
 * server). Clock time moves only when the test says so, so "after N ms of
 * clock time X happened, and before it did not" is exact however busy the
 * machine is; real sockets still need real event-loop turns, so the test
 * waits for them with the clock standing still (`settle`), or moves the
 * clock in small steps with real turns in between (`advanceUntil`).
 *
 * Real-time limits here are hang guards only (a clear message instead of the
 * test timeout), never the thing a test asserts.
 */
export class TestClock extends VirtualClock {
  constructor() {
    // Wall time starts at the real time: a server on the real clock accepts our HELLO timestamps.
    super(Date.now());
  }

  /** Let real I/O run, the clock standing still, until `cond` holds. */
  async settle(cond: () => boolean, what: string, guardMs = 20_000): Promise<void> {
    const giveUp = performance.now() + guardMs;
    while (!cond()) {
      if (performance.now() > giveUp) throw new Error(`never happened (clock standing at ${this.now()} ms): ${what}`);
      await realPause();
    }
  }

  /**
   * Move the clock `stepMs` at a time, letting real I/O run for `realMs`
   * between steps, until `cond` holds. Resolves with the clock time it took;
   * throws once `maxMs` of clock time passed without it (that is the
   * assertion). Where real I/O must finish inside the clock window, a longer
   * `realMs` gives a busy machine more room.
   */
  async advanceUntil(cond: () => boolean, maxMs: number, what: string, opts: { stepMs?: number; realMs?: number } = {}): Promise<number> {
    const stepMs = opts.stepMs ?? 25;
    const start = this.now();
    await realPause(opts.realMs);
    while (!cond()) {
      if (this.now() - start >= maxMs) throw new Error(`not within ${maxMs} ms of clock time: ${what}`);
      await this.advance(Math.min(stepMs, start + maxMs - this.now()));
      await realPause(opts.realMs);
    }
    return this.now() - start;
  }
}

/** A real pause: the event loop polls for I/O (a few ms, so loopback traffic and relay delay lines move on). */
function realPause(ms = 2): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Whether a promise has settled yet (for "still waiting" checks without a race against a timer). */
export function track<T>(p: Promise<T>): { readonly settled: boolean; readonly promise: Promise<T> } {
  const state = { settled: false, promise: p };
  p.then(
    () => void (state.settled = true),
    () => void (state.settled = true),
  );
  return state;
}
