/**
 * Per-subflow measurements taken from data-level acks: RTT (RFC 6298
 * smoothing), windowed min RTT and windowed max delivery rate (BBR-style).
 */

/** Max (or min) of samples over a sliding time window; O(1) amortised. */
export class WindowedExtreme {
  private times: number[] = [];
  private values: number[] = [];
  private head = 0;
  constructor(
    private readonly windowMs: number,
    private readonly better: (a: number, b: number) => boolean,
  ) {}
  update(now: number, value: number): void {
    // Drop samples the new one dominates: they can never be the answer again.
    while (this.values.length > this.head && !this.better(this.values[this.values.length - 1]!, value)) {
      this.values.pop();
      this.times.pop();
    }
    this.values.push(value);
    this.times.push(now);
    this.expire(now);
  }
  get(now: number): number {
    this.expire(now);
    return this.values.length > this.head ? this.values[this.head]! : 0;
  }
  private expire(now: number): void {
    // Keep the newest sample even when stale: an old estimate beats none.
    while (this.values.length - this.head > 1 && now - this.times[this.head]! > this.windowMs) this.head++;
    if (this.head > 64 && this.head * 2 > this.values.length) {
      this.values = this.values.slice(this.head);
      this.times = this.times.slice(this.head);
      this.head = 0;
    }
  }
}

export class PathMetrics {
  srtt = 0;
  rttvar = 0;
  private readonly minRttFilter = new WindowedExtreme(10_000, (a, b) => a < b);
  private readonly rateFilter = new WindowedExtreme(2_000, (a, b) => a > b);
  /** Bytes acknowledged so far (for delivery-rate samples). */
  delivered = 0;
  deliveredAt = 0;

  onRttSample(now: number, rtt: number): void {
    const r = Math.max(rtt, 0.01);
    if (this.srtt === 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.minRttFilter.update(now, r);
  }

  /** A delivery-rate sample: bytes acknowledged over the interval they took. */
  onRateSample(now: number, bytes: number, intervalMs: number): void {
    if (intervalMs <= 0 || bytes <= 0) return;
    this.rateFilter.update(now, bytes / intervalMs);
  }

  minRtt(now: number): number {
    return this.minRttFilter.get(now);
  }
  /** bytes per ms */
  rate(now: number): number {
    return this.rateFilter.get(now);
  }
  rto(minRto: number, maxRto: number): number {
    if (this.srtt === 0) return maxRto;
    // As Linux does: the variance term never below the floor, so a long but
    // steady path (120 ms RTT) is not declared dead after 200 ms.
    return Math.min(maxRto, this.srtt + Math.max(minRto, 4 * this.rttvar));
  }
}
