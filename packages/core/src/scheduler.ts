import type { SubflowRole } from './roles.js';

/**
 * The scheduler decides which subflow(s) carry the next frame. It sees a
 * read-only view of each usable subflow and never touches sockets.
 */
export interface SubflowView {
  readonly id: number;
  readonly role: SubflowRole;
  /** Bytes sent (or staged) and not yet acknowledged. */
  readonly inflight: number;
  /** Cap on `inflight` from the measured bandwidth-delay product. */
  readonly cap: number;
  /** Smoothed RTT in ms (0 = not measured yet). */
  readonly srtt: number;
  /** Minimum RTT seen recently in ms (0 = not measured yet). */
  readonly minRtt: number;
  /** Delivery rate in bytes/ms (0 = not measured yet). */
  readonly rate: number;
  /** Extra delay ahead of new data in ms (the kernel repairing a loss, path-state.ts); 0 if none. */
  readonly extraDelayMs?: number;
  /**
   * Plaintext bytes per record on this subflow (sized to its rate): at its
   * cap's edge a bulk frame is cut to what fits, down to this. Absent:
   * frames go whole.
   */
  readonly recordTarget?: number;
}

/**
 * What a frame is: `bulk` goes where it arrives first (one copy, within
 * caps); `latency` (a latency-sensitive stream, stream-class.ts) is copied
 * to the two subflows where it arrives first, whatever their caps (it is
 * small, and waiting for room behind bulk data is the delay it must avoid).
 */
export type FrameClass = 'bulk' | 'latency';

export interface Scheduler {
  readonly name: string;
  /**
   * Every frame goes on every working subflow: the session then waits
   * while a usable subflow of the tier is not writable, rather than skip it.
   */
  readonly duplicatesAll?: boolean;
  /**
   * Subflows to send a frame of `bytes` on, or an empty array to wait (the
   * session retries when an ack frees room). `candidates` holds only usable,
   * writable subflows of one role tier (roles.ts dataTiers): the session asks
   * the next tier only when this returns nothing. Returning several subflows
   * sends a copy on each.
   */
  pick(candidates: readonly SubflowView[], bytes: number): readonly SubflowView[];
}

/**
 * Room for at least the part of a frame `s` would carry: at the cap's edge
 * a frame is cut down to the subflow's record size, so a slow subflow is
 * not held back for want of room for a whole 16 KiB frame (up to 12 % of
 * its cap unused).
 */
export const hasRoom = (s: SubflowView, bytes: number): boolean =>
  s.inflight === 0 || s.inflight + (s.recordTarget ? Math.min(bytes, s.recordTarget) : bytes) <= s.cap;

/** Unmeasured paths are assumed to be this slow (ms one way), so measured ones win. */
const UNKNOWN_OWD_MS = 50;

/**
 * Expected arrival time of `bytes` sent now on `s`: one-way delay plus the
 * time to drain what is already queued ahead of it.
 */
export function expectedArrival(s: SubflowView, bytes: number): number {
  const owd = s.minRtt > 0 ? s.minRtt / 2 : s.srtt > 0 ? s.srtt / 2 : UNKNOWN_OWD_MS;
  const queue = s.rate > 0 ? (s.inflight + bytes) / s.rate : 0;
  return owd + queue + (s.extraDelayMs ?? 0);
}

/** Default: the subflow with room where the frame arrives first (minRTT/ECF family). */
export class EarliestArrivalScheduler implements Scheduler {
  readonly name = 'earliest-arrival';
  pick(candidates: readonly SubflowView[], bytes: number): readonly SubflowView[] {
    let best: SubflowView | undefined;
    let bestEta = Infinity;
    for (const s of candidates) {
      if (!hasRoom(s, bytes)) continue;
      const eta = expectedArrival(s, bytes);
      if (eta < bestEta) {
        best = s;
        bestEta = eta;
      }
    }
    return best ? [best] : [];
  }
}

/** Rotates over subflows with room; a baseline for comparisons. */
export class RoundRobinScheduler implements Scheduler {
  readonly name = 'round-robin';
  private last = -1;
  pick(candidates: readonly SubflowView[], bytes: number): readonly SubflowView[] {
    const n = candidates.length;
    for (let i = 1; i <= n; i++) {
      const s = candidates[(this.last + i) % n];
      if (s && hasRoom(s, bytes)) {
        this.last = (this.last + i) % n;
        return [s];
      }
    }
    return [];
  }
}

/**
 * Every frame on every working subflow; the first copy to arrive wins. It
 * waits until all of them have room, so the slowest subflow's window bounds
 * the rate and a loaded path never misses frames (a copy skipped on a full
 * subflow would leave that path unable to stand in for the others).
 */
export class RedundantScheduler implements Scheduler {
  readonly name = 'redundant';
  readonly duplicatesAll = true;
  pick(candidates: readonly SubflowView[], bytes: number): readonly SubflowView[] {
    if (candidates.length === 0) return [];
    for (const s of candidates) if (!hasRoom(s, bytes)) return [];
    return candidates;
  }
}

/**
 * The latency class: the (up to) two subflows where `bytes` sent now arrive
 * first, ignoring caps. Two copies make one path's queue or loss burst
 * invisible; more would only add load to paths that lose the race anyway.
 */
export function pickLatency(candidates: readonly SubflowView[], bytes: number): readonly SubflowView[] {
  let a: SubflowView | undefined;
  let b: SubflowView | undefined;
  let ea = Infinity;
  let eb = Infinity;
  for (const s of candidates) {
    const eta = expectedArrival(s, bytes);
    if (eta < ea) {
      b = a;
      eb = ea;
      a = s;
      ea = eta;
    } else if (eta < eb) {
      b = s;
      eb = eta;
    }
  }
  return a ? (b ? [a, b] : [a]) : [];
}

const SCHEDULERS: Record<string, () => Scheduler> = {
  'earliest-arrival': () => new EarliestArrivalScheduler(),
  'round-robin': () => new RoundRobinScheduler(),
  redundant: () => new RedundantScheduler(),
};

export const schedulerNames = Object.keys(SCHEDULERS);

export function createScheduler(name: string): Scheduler {
  const make = SCHEDULERS[name];
  if (!make) throw new Error(`unknown scheduler "${name}" (choose one of: ${schedulerNames.join(', ')})`);
  return make();
}
