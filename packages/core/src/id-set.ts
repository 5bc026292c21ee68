/**
 * A set of non-negative integers stored as sorted, merged [start, end)
 * intervals, so memory grows with the number of gaps, not of members.
 * Used to remember finished stream ids (PROTOCOL.md section 7: frames for
 * them are ignored, ids are never reused).
 *
 * Only n and n + 1 merge. Stream ids of one side share a parity, so callers
 * keep one set per parity and store `id >>> 1`, or the ids 1, 3, 5 ... would
 * never merge.
 */
import { ErrorCode, PlaitError } from './errors.js';

export class IntervalSet {
  /** Flat pairs: starts[i] .. ends[i] (exclusive), sorted, disjoint, never touching. */
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  /** Number of intervals held (the memory cost). */
  get intervals(): number {
    return this.starts.length;
  }

  /** Index of the last interval starting at or below n, or -1. */
  private floor(n: number): number {
    let lo = 0;
    let hi = this.starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! <= n) lo = mid + 1;
      else hi = mid;
    }
    return lo - 1;
  }

  has(n: number): boolean {
    const i = this.floor(n);
    return i >= 0 && n < this.ends[i]!;
  }

  add(n: number): void {
    // n + 1 must be exact for the merge test below.
    if (!Number.isSafeInteger(n) || n < 0 || n === Number.MAX_SAFE_INTEGER) {
      throw new PlaitError(ErrorCode.INTERNAL, `IntervalSet: invalid member ${n}`);
    }
    const starts = this.starts;
    const ends = this.ends;
    const i = this.floor(n);
    if (i >= 0 && n < ends[i]!) return; // already in
    const joinsLeft = i >= 0 && ends[i] === n;
    const joinsRight = i + 1 < starts.length && starts[i + 1] === n + 1;
    if (joinsLeft && joinsRight) {
      ends[i] = ends[i + 1]!;
      starts.splice(i + 1, 1);
      ends.splice(i + 1, 1);
    } else if (joinsLeft) {
      ends[i] = n + 1;
    } else if (joinsRight) {
      starts[i + 1] = n;
    } else {
      starts.splice(i + 1, 0, n);
      ends.splice(i + 1, 0, n + 1);
    }
  }
}
