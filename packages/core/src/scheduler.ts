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
}

export interface Scheduler {
  readonly name: string;
  /**
   * Subflows to send a frame of `bytes` on, or an empty array to wait (the
   * session retries when an ack frees room). `candidates` holds only usable,
   * writable subflows of one role tier (roles.ts dataTiers): the session asks
   * the next tier only when this returns nothing. Returning several subflows
   * sends a copy on each.
   */
  pick(candidates: readonly SubflowView[], bytes: number): readonly SubflowView[];
}

const hasRoom = (s: SubflowView, bytes: number): boolean => s.inflight === 0 || s.inflight + bytes <= s.cap;

/** Unmeasured paths are assumed to be this slow (ms one way), so measured ones win. */
const UNKNOWN_OWD_MS = 50;

/**
 * Expected arrival time of `bytes` sent now on `s`: one-way delay plus the
 * time to drain what is already queued ahead of it.
 */
export function expectedArrival(s: SubflowView, bytes: number): number {
  const owd = s.minRtt > 0 ? s.minRtt / 2 : s.srtt > 0 ? s.srtt / 2 : UNKNOWN_OWD_MS;
  const queue = s.rate > 0 ? (s.inflight + bytes) / s.rate : 0;
  return owd + queue;
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
 * Every frame on every subflow that has room now; the first copy to arrive
 * wins. A full subflow misses the frame (it is not sent there later).
 */
export class RedundantScheduler implements Scheduler {
  readonly name = 'redundant';
  pick(candidates: readonly SubflowView[], bytes: number): readonly SubflowView[] {
    const withRoom = candidates.filter((s) => hasRoom(s, bytes));
    // No waiting for the fastest subflow: each one's own cap bounds how far
    // it runs ahead. Wait (empty) only when none has room.
    return withRoom.length > 0 ? withRoom : [];
  }
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
