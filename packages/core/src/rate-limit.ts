/**
 * A token bucket on the injected clock: a user's `rate` (users file), one
 * per direction per session, whatever the number of subflows. Tokens are
 * bytes; the bucket may go below zero when bytes already arrived (receive
 * side), and the owner waits `waitMs` before taking more.
 */
import type { Clock } from './clock.js';

export class TokenBucket {
  private tokens: number;
  private at: number;

  /**
   * @param rate bytes per second
   * @param burst most tokens held: what may leave at once after an idle spell
   */
  constructor(
    readonly rate: number,
    readonly burst: number,
    private readonly clock: Clock,
  ) {
    this.tokens = burst;
    this.at = clock.now();
  }

  private refill(): void {
    const now = this.clock.now();
    if (now > this.at) this.tokens = Math.min(this.burst, this.tokens + ((now - this.at) * this.rate) / 1000);
    this.at = now;
  }

  /** Whole bytes that may go now. */
  available(): number {
    this.refill();
    return Math.max(0, Math.floor(this.tokens));
  }

  take(bytes: number): void {
    this.refill();
    this.tokens -= bytes;
  }

  /** Milliseconds until `bytes` tokens are there (0 if now). */
  waitMs(bytes: number): number {
    this.refill();
    return this.tokens >= bytes ? 0 : ((bytes - this.tokens) * 1000) / this.rate;
  }
}

/** Burst of a session's buckets: 50 ms of the rate, but at least two full DATA frames. */
export function rateBurst(bytesPerSec: number): number {
  return Math.max(2 * 16_384, bytesPerSec / 20);
}
