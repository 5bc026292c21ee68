/**
 * What the scheduler should believe about a path right now, from the
 * app-level measurements and, where the platform gives it (Linux TCP_INFO,
 * ByteChannel.kernelInfo), the kernel's own view. Pure: the subflow feeds
 * it numbers and uses the answer.
 *
 * The windowed max rate (path-metrics.ts) remembers a path's rate for two
 * seconds, which is right for a path that is only briefly quiet and wrong
 * for one whose rate collapsed (a link cut to a trickle): it keeps its old
 * share and strands data there. A collapse shows at once in the kernel's
 * delivery rate, and (without the kernel) in the rate achieved since the
 * oldest unacknowledged record was sent, once that record is overdue.
 */
import type { KernelPathInfo } from './channel.js';

/** A rate under this fraction of the windowed max is a collapse. */
export const COLLAPSE_FRACTION = 0.25;
/** Overdue: the oldest record has waited more than this many smoothed RTTs (and OVERDUE_MIN_MS). */
export const OVERDUE_RTTS = 2;
export const OVERDUE_MIN_MS = 100;
/** Bytes/ms: the floor of a collapsed path's rate (10 kB/s). */
export const MIN_RATE = 0.01;
/** tcpi_ca_state: 1 disorder (SACKs or duplicate acks seen), 3 fast recovery, 4 after a retransmission timeout. */
export const CA_DISORDER = 1;
export const CA_RECOVERY = 3;
export const CA_LOSS = 4;

/**
 * Extra delay for data sent now on a path whose kernel is repairing a loss:
 * what is queued behind the hole waits about one round trip for it.
 */
export function recoveryDelay(k: KernelPathInfo | undefined, srtt: number): number {
  return k && k.caState !== undefined && k.caState >= CA_RECOVERY ? srtt : 0;
}

/**
 * The kernel's congestion window in bytes: how much its congestion control
 * (which sees every loss and retransmission) lets the path hold. 0 if unknown.
 */
export function kernelWindowBytes(k: KernelPathInfo | undefined): number {
  return k && k.mss && k.mss > 0 && k.cwnd > 0 ? k.cwnd * k.mss : 0;
}

/**
 * The cap of a lossy path whose kernel reports its unsent queue: the bytes
 * the kernel has sent and whose app-level ack has not come back (`inflight`
 * and `notsent` read together), plus `rate x horizonMs` of unsent data for
 * the kernel to send until the next look. On a lossy path the bytes behind
 * each lost segment wait at the receiver for its repair, and so do their
 * acks (and the acks' own losses on the way back): the app-level inflight
 * runs a round trip or so above the kernel's window, and a cap at the
 * window starves the kernel while it could send. Keeping the kernel's
 * unsent queue short but never empty lets its congestion control, which
 * sees the losses for what they are, set the path's rate. 0 if unknown.
 */
export function kernelFeedCap(k: KernelPathInfo | undefined, inflightAtSample: number, rate: number, horizonMs: number): number {
  if (!k || rate <= 0) return 0;
  return Math.max(0, inflightAtSample - k.notsentBytes) + rate * horizonMs;
}

/**
 * Bytes the peer's kernel has acknowledged and its app not yet (a receiver
 * busy for a moment, its acks queued behind our data): the app-level bytes
 * in flight when the kernel was read, less what the kernel still holds
 * (segments unacknowledged, x mss, and bytes not yet sent). They are off
 * the path, so they need not count against a cap that sizes the path's
 * queue. 0 if unknown.
 */
export function acknowledgedByKernel(k: KernelPathInfo | undefined, inflightAtSample: number): number {
  if (!k || !k.mss || k.mss <= 0) return 0;
  return Math.max(0, inflightAtSample - k.unackedSegments * k.mss - k.notsentBytes);
}

export interface PathInputs {
  now: number;
  /** Windowed max delivery rate, bytes/ms (0: not measured). */
  appRate: number;
  /** App-level smoothed RTT, ms (0: not measured). */
  srtt: number;
  /** Bytes sent and not acknowledged at the app level. */
  inflight: number;
  /** The cap on `inflight` last computed. */
  cap: number;
  /** Bytes acknowledged so far on this subflow. */
  delivered: number;
  /** The oldest unacknowledged record: when it was sent, and `delivered` (and its time) then. */
  oldest?: { sentAt: number; delivered: number; deliveredAt: number };
  kernel?: KernelPathInfo;
  /** Windowed max of the kernel's delivery-rate samples, bytes/ms (0 or absent: none). */
  kernelRateMax?: number;
  /** The kernel retransmitted on this path within the rate window (a lossy path). */
  lossy?: boolean;
}

export interface PathState {
  /** Rate to plan with, bytes/ms (0: unknown). */
  rate: number;
  /** The current rate fell under COLLAPSE_FRACTION of the windowed max. */
  collapsed: boolean;
  /** The oldest unacknowledged record waits longer than this path should take. */
  overdue: boolean;
}

/** When the oldest record of a path with smoothed RTT `srtt` is overdue. */
export function overdueAfter(srtt: number): number {
  return Math.max(OVERDUE_RTTS * srtt, srtt + OVERDUE_MIN_MS);
}

export function pathState(i: PathInputs): PathState {
  const k = i.kernel;
  const kernelRate = k && k.deliveryRateBytesPerSec > 0 ? k.deliveryRateBytesPerSec / 1000 : 0;
  // The app's windowed max first; the kernel's rate until the app has one.
  // On a lossy path, the kernel's own windowed max: it counts bytes as
  // delivered when they arrive (SACKs), while the app's delivered count is
  // cumulative and misleads both ways: a hole's wait drags samples down,
  // and the bytes held behind it, acknowledged in the round trip after the
  // repair together with that round trip's own, inflate a sample to twice
  // the path's rate or more, which the max then keeps for the whole window
  // (and against which the path's true rate looks like a collapse). On a
  // clean path the app's own (the kernel's single samples run high after
  // ack bursts, and every byte of overestimate is queue ahead of
  // latency-class frames).
  const kernelMax = Math.max(i.kernelRateMax ?? 0, kernelRate);
  const rate = i.lossy && kernelMax > 0 ? kernelMax : i.appRate <= 0 ? kernelRate : i.appRate;
  const srtt = i.srtt > 0 ? i.srtt : k && k.rttMs > 0 ? k.rttMs : 0;
  const overdue = !!i.oldest && srtt > 0 && i.now - i.oldest.sentAt > overdueAfter(srtt);
  if (rate <= 0) return { rate, collapsed: false, overdue };
  let current = Infinity;
  // The kernel's rate sample says little when we gave it little to send
  // (app-limited): trust it only while half a cap or more is outstanding.
  if (kernelRate > 0 && i.inflight >= i.cap / 2) current = kernelRate;
  // The app-level rate since the oldest record stalls while the receiver
  // waits behind a hole in the TCP stream; a kernel repairing one with
  // SACKs still flowing (disorder, fast recovery) says the path delivers,
  // and its own rate sample above judges it. After a timeout (or without
  // the kernel) nothing else can tell a dead path.
  const repairing = k?.caState === CA_DISORDER || k?.caState === CA_RECOVERY;
  if (overdue && i.oldest && !repairing) {
    const span = i.now - i.oldest.deliveredAt;
    if (span > 0) current = Math.min(current, (i.delivered - i.oldest.delivered) / span);
  }
  // Never 0: a zero rate would drop the queue term from the arrival estimate.
  if (current < rate * COLLAPSE_FRACTION) return { rate: Math.max(current, MIN_RATE), collapsed: true, overdue };
  return { rate, collapsed: false, overdue };
}
