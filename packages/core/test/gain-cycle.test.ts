import { describe, expect, it } from 'vitest';
import type { ByteChannel } from '../src/channel.js';
import type { RecordOpener, RecordSealer } from '../src/record.js';
import { Subflow } from '../src/subflow.js';

/**
 * The cap's gain (PROTOCOL section 9): 2 during startup, until the rate grows
 * by less than 25 % for three round trips in which the cap held the subflow
 * back; then 1.25, 0.85 and six times 1, one round trip each.
 *
 * The pacing state lives in Subflow.refreshView. With no floor and no ack
 * slack the cap is rate x gain x minRtt, so the gain reads back as
 * cap / (rate x minRtt). Time is plain ms passed in; no wall clock.
 */
const RTT = 20; // one round = max(minRtt, 10 ms)
const CONFIG = { initialInflight: 256 * 1024, minInflight: 0, ackSlackMs: 0, inflightGain: 1, recordTarget: 65536 };

function makeSubflow(): Subflow {
  // The pacing logic touches neither the channel nor the record keys.
  const none = {} as ByteChannel & RecordSealer & RecordOpener;
  return new Subflow(none, none, none, { id: 1, backup: false, addrId: 0, awaitOk: false, now: 0 });
}

class Driver {
  readonly sf = makeSubflow();
  now = 0;
  constructor() {
    this.sf.metrics.onRttSample(0, RTT);
  }
  /**
   * One round trip at delivery rate `rate` (bytes/ms). `capLimited` does what
   * the session does when the cap refuses a frame: it only ever sets the flag;
   * clearing it at the round's end is the subflow's job.
   */
  round(rate: number, capLimited: boolean): number {
    this.sf.metrics.onRateSample(this.now, rate * RTT, RTT);
    if (capLimited) this.sf.markCapLimited();
    this.now += RTT;
    this.sf.refreshView(this.now, CONFIG);
    return this.gain();
  }
  /** Rounded to 1e-9: 0.85 x 20 ms is not exact in binary. */
  gain(): number {
    return Math.round((this.sf.cap / (this.sf.rate * this.sf.minRtt)) * 1e9) / 1e9;
  }
  /** Idle rounds until the gain is `g`; bounded so a broken cycle fails instead of hanging. */
  roundsUntil(g: number): number {
    for (let i = 0; i < 16; i++) if (this.round(1000, false) === g) return this.now;
    throw new Error(`gain ${g} not seen in 16 rounds`);
  }
}

describe('startup', () => {
  it('uses the unmeasured initial cap before any rate sample', () => {
    const sf = makeSubflow();
    sf.refreshView(0, CONFIG);
    expect(sf.cap).toBe(CONFIG.initialInflight);
  });

  it('holds gain 2 while the rate grows by 25 % or more per round', () => {
    const d = new Driver();
    let rate = 1000;
    for (let i = 0; i < 10; i++) {
      expect(d.round(rate, true)).toBe(2);
      rate *= 1.25; // exactly +25 % still counts as growth
    }
  });

  it('ends after three cap-limited rounds without 25 % growth', () => {
    const d = new Driver();
    expect(d.round(1000, true)).toBe(2); // sets the full-rate mark
    expect(d.round(1240, true)).toBe(2); // +24 %: flat 1
    expect(d.round(1240, true)).toBe(2); // flat 2
    expect(d.round(1240, true)).not.toBe(2); // flat 3: startup over
  });

  it('starts counting again after a round that grows', () => {
    const d = new Driver();
    d.round(1000, true);
    d.round(1000, true);
    d.round(1000, true); // two flat rounds
    expect(d.round(1250, true)).toBe(2); // growth resets the count
    expect(d.round(1250, true)).toBe(2);
    expect(d.round(1250, true)).toBe(2);
    expect(d.round(1250, true)).not.toBe(2);
  });

  it('never ends in rounds the cap did not limit (idle or starved by the scheduler)', () => {
    const d = new Driver();
    for (let i = 0; i < 50; i++) expect(d.round(1000, false)).toBe(2);
  });

  it('skips idle rounds without forgetting the cap-limited flat ones (as BBR skips app-limited rounds)', () => {
    const d = new Driver();
    d.round(1000, true);
    d.round(1000, true);
    d.round(1000, true); // flat 2
    for (let i = 0; i < 5; i++) expect(d.round(1000, false)).toBe(2);
    expect(d.round(1000, true)).not.toBe(2); // flat 3
  });

  it('a cap-limited round counts once: the flag is cleared at the round\'s end', () => {
    const d = new Driver();
    d.round(1000, true);
    d.round(1000, true);
    d.round(1000, true); // flat 2
    expect(d.sf.capLimitedThisRound).toBe(false);
    expect(d.round(1000, false)).toBe(2); // idle, not flat 3
  });

  it('starts again after restartProbe (a path back from suspect is measured afresh)', () => {
    const d = new Driver();
    for (let i = 0; i < 4; i++) d.round(1000, true);
    expect(d.gain()).not.toBe(2);
    d.sf.restartProbe();
    expect(d.round(1000, true)).toBe(2);
    expect(d.round(1000, true)).toBe(2);
    expect(d.round(1000, true)).toBe(2);
    expect(d.round(1000, true)).not.toBe(2);
  });
});

describe('after startup: the probe / drain / cruise cycle', () => {
  function leftStartup(): Driver {
    const d = new Driver();
    for (let i = 0; i < 4; i++) d.round(1000, true);
    expect(d.gain()).not.toBe(2);
    return d;
  }

  it('cycles 1.25, 0.85, then 1 for six rounds, one round each', () => {
    const d = leftStartup();
    const gains: number[] = [];
    for (let i = 0; i < 24; i++) gains.push(d.round(1000, i % 2 === 0));
    // The phase is not asserted, only the order and one gain per round.
    const at = gains.indexOf(1.25);
    expect(at).toBeGreaterThanOrEqual(0);
    expect(at).toBeLessThan(8);
    const cycle = [1.25, 0.85, 1, 1, 1, 1, 1, 1];
    for (let i = at; i < gains.length; i++) expect(gains[i]).toBe(cycle[(i - at) % 8]);
  });

  it('keeps one gain through a round and scales the cycle by inflightGain', () => {
    const d = leftStartup();
    const start = d.roundsUntil(1.25);
    // Re-reading inside the same round changes nothing.
    d.sf.refreshView(start + RTT / 2, CONFIG);
    expect(d.gain()).toBe(1.25);
    d.sf.refreshView(start + RTT - 1, CONFIG);
    expect(d.gain()).toBe(1.25);
    expect(d.roundsUntil(1.25) - start).toBe(8 * RTT);
    d.now += 8 * RTT;
    d.sf.refreshView(d.now, { ...CONFIG, inflightGain: 2 });
    expect(d.gain()).toBe(2.5);
  });

  it('sizes the cap as rate x (gain x minRtt + slack), floored at minInflight', () => {
    const d = leftStartup();
    d.roundsUntil(0.85);
    d.sf.refreshView(d.now, { ...CONFIG, ackSlackMs: 5 });
    expect(d.sf.cap).toBe(1000 * (0.85 * RTT + 5));
    d.sf.refreshView(d.now, { ...CONFIG, minInflight: 96 * 1024 });
    expect(d.sf.cap).toBe(96 * 1024);
  });
});

describe('calm (latency-class traffic in the session)', () => {
  it('never probes above the estimate, in startup or in the cycle, and probes again once calm ends', () => {
    const d = new Driver();
    d.sf.metrics.onRateSample(0, 1000 * RTT, RTT);
    d.now += RTT;
    d.sf.refreshView(d.now, CONFIG, true);
    expect(d.gain()).toBe(1); // startup would be 2
    d.sf.refreshView(d.now, CONFIG);
    expect(d.gain()).toBe(2);
    // In the cycle: the 1.25 round is held to 1, the 0.85 round stays 0.85.
    const p = new Driver();
    for (let i = 0; i < 4; i++) p.round(1000, true);
    const at = p.roundsUntil(1.25);
    p.sf.refreshView(at, CONFIG, true);
    expect(p.gain()).toBe(1);
    expect(p.roundsUntil(0.85)).toBeGreaterThan(at);
  });
});
