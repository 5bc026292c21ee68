import { describe, expect, it } from 'vitest';
import type { KernelPathInfo } from '../src/channel.js';
import { acknowledgedByKernel, kernelFeedCap, kernelWindowBytes, MIN_RATE, overdueAfter, pathState, recoveryDelay, type PathInputs } from '../src/path-state.js';

/**
 * Recorded path states: a 40 Mbit/s path (5000 bytes/ms) at 20 ms RTT, as
 * the subflow would hand them over, with and without the kernel's view.
 */
const kernel = (k: Partial<KernelPathInfo> = {}): KernelPathInfo => ({
  rttMs: 20,
  minRttMs: 20,
  cwnd: 80,
  unackedSegments: 60,
  notsentBytes: 0,
  totalRetrans: 0,
  deliveryRateBytesPerSec: 5_000_000,
  caState: 0,
  mss: 1448,
  ...k,
});
const inputs = (i: Partial<PathInputs> = {}): PathInputs => ({
  now: 10_000,
  appRate: 5000,
  srtt: 20,
  inflight: 100_000,
  cap: 120_000,
  delivered: 50_000_000,
  ...i,
});

describe('pathState: rate collapse', () => {
  it('keeps the windowed max while the kernel delivers at about that rate', () => {
    expect(pathState(inputs({ kernel: kernel() }))).toEqual({ rate: 5000, collapsed: false, overdue: false });
  });

  it("sees a collapse at once in the kernel's delivery rate (a link cut to 100 kbit)", () => {
    const st = pathState(inputs({ kernel: kernel({ deliveryRateBytesPerSec: 12_500 }) }));
    expect(st.collapsed).toBe(true);
    expect(st.rate).toBeCloseTo(12.5, 9);
  });

  it('does not read an app-limited kernel sample (under half a cap outstanding) as a collapse', () => {
    const st = pathState(inputs({ inflight: 20_000, kernel: kernel({ deliveryRateBytesPerSec: 12_500 }) }));
    expect(st).toEqual({ rate: 5000, collapsed: false, overdue: false });
  });

  it('without the kernel: an overdue oldest record and little delivered since it was sent is a collapse', () => {
    const now = 10_000;
    const oldest = { sentAt: now - 500, delivered: 50_000_000 - 5000, deliveredAt: now - 520 };
    const st = pathState(inputs({ now, oldest }));
    expect(st.overdue).toBe(true);
    expect(st.collapsed).toBe(true);
    expect(st.rate).toBeCloseTo(5000 / 520, 9);
  });

  it('without the kernel: a record that is late but whose path delivers at its rate is overdue, not collapsed', () => {
    const now = 10_000;
    const oldest = { sentAt: now - 200, delivered: 50_000_000 - 1_000_000, deliveredAt: now - 220 };
    expect(pathState(inputs({ now, oldest }))).toEqual({ rate: 5000, collapsed: false, overdue: true });
    // Not overdue before max(2 srtt, srtt + 100 ms) = 120 ms.
    expect(overdueAfter(20)).toBe(120);
    expect(pathState(inputs({ now, oldest: { ...oldest, sentAt: now - 110 } })).overdue).toBe(false);
  });

  it('never plans with a zero rate (that would drop the queue term from the arrival estimate)', () => {
    const st = pathState(inputs({ kernel: kernel({ deliveryRateBytesPerSec: 0.001 }) }));
    expect(st.collapsed).toBe(true);
    expect(st.rate).toBe(MIN_RATE);
  });
});

describe('pathState: the kernel where the app has less', () => {
  it('on a lossy path takes the larger of the app rate and the kernel rate (a loss repaired underneath drags app samples down)', () => {
    expect(pathState(inputs({ appRate: 900, lossy: true, kernel: kernel({ deliveryRateBytesPerSec: 1_750_000 }) })).rate).toBe(1750);
    // A clean path keeps the app's rate: a high kernel sample (after an ack burst) would only deepen the queue.
    expect(pathState(inputs({ appRate: 900, kernel: kernel({ deliveryRateBytesPerSec: 1_750_000 }) })).rate).toBe(900);
    // Until the app has measured one, the kernel's.
    expect(pathState(inputs({ appRate: 0, srtt: 0, kernel: kernel() })).rate).toBe(5000);
  });

  it("on a lossy path plans with the kernel's windowed max, not an app-level sample inflated by bytes held behind a hole", () => {
    // Recorded: 15 Mbit/s lossy link; after a hole's repair the app's windowed max read 59 Mbit/s
    // (7400 bytes/ms), the kernel's samples 1800 at most, its latest 1700.
    const st = pathState(inputs({ appRate: 7400, lossy: true, kernelRateMax: 1800, kernel: kernel({ deliveryRateBytesPerSec: 1_700_000 }) }));
    // Against 7400 the path's true rate would be a collapse (1700 < 7400 / 4).
    expect(st).toEqual({ rate: 1800, collapsed: false, overdue: false });
    // A clean path keeps the app's (here app-limited, so the kernel's sample is not read as a collapse).
    expect(pathState(inputs({ appRate: 7400, inflight: 20_000, kernelRateMax: 1800, kernel: kernel({ deliveryRateBytesPerSec: 1_700_000 }) })).rate).toBe(7400);
  });

  it('uses the kernel srtt for the overdue test until the app has measured one', () => {
    const now = 10_000;
    const oldest = { sentAt: now - 130, delivered: 0, deliveredAt: now - 130 };
    expect(pathState(inputs({ now, srtt: 0, oldest, kernel: kernel({ rttMs: 20 }) })).overdue).toBe(true);
    expect(pathState(inputs({ now, srtt: 0, oldest })).overdue).toBe(false);
  });

  it('the congestion window in bytes and a loss-repair delay', () => {
    expect(kernelWindowBytes(kernel({ cwnd: 100, mss: 1448 }))).toBe(144_800);
    expect(kernelWindowBytes(kernel({ mss: undefined }))).toBe(0);
    expect(kernelWindowBytes(undefined)).toBe(0);
    expect(recoveryDelay(kernel({ caState: 3 }), 40)).toBe(40);
    expect(recoveryDelay(kernel({ caState: 4 }), 40)).toBe(40);
    expect(recoveryDelay(kernel({ caState: 1 }), 40)).toBe(0);
    expect(recoveryDelay(undefined, 40)).toBe(0);
  });
});

describe('kernelFeedCap: a lossy path holds what the kernel has sent plus a little unsent', () => {
  it('is the app inflight minus the kernel unsent bytes, plus rate x horizon', () => {
    // 15 Mbit/s lossy path: 290 KB in flight at the app level, 10 KB of it not yet sent by the kernel.
    expect(kernelFeedCap(kernel({ notsentBytes: 10_000 }), 290_000, 1750, 10)).toBe(280_000 + 17_500);
    // The kernel holds more unsent than the app counts (acks only, not tracked): never negative.
    expect(kernelFeedCap(kernel({ notsentBytes: 50_000 }), 20_000, 1750, 10)).toBe(17_500);
  });

  it('is 0 (no opinion) without the kernel or a rate', () => {
    expect(kernelFeedCap(undefined, 290_000, 1750, 10)).toBe(0);
    expect(kernelFeedCap(kernel(), 290_000, 0, 10)).toBe(0);
  });
});

describe('pathState: a hole being repaired is not a collapse', () => {
  // Recorded on the testbed (15mbit:40ms, 1 % loss): a retransmission was
  // itself lost, the receiver waited ~400 ms behind the hole, so no app-level
  // ack came back, while the kernel kept sending on SACKs (cwnd 218, 495
  // segments unacknowledged) with a delivery rate at the link's.
  const now = 10_000;
  const lossy = inputs({
    now,
    appRate: 2700,
    srtt: 165,
    inflight: 698 * 1024,
    cap: 550 * 1024,
    oldest: { sentAt: now - 420, delivered: 50_000_000, deliveredAt: now - 425 },
    kernelRateMax: 1800,
    lossy: true,
  });
  const k = kernel({ rttMs: 84, minRttMs: 80, cwnd: 218, unackedSegments: 495, deliveryRateBytesPerSec: 1_800_000 });

  it('in fast recovery (or disorder), with the kernel delivering: overdue, not collapsed', () => {
    expect(pathState({ ...lossy, kernel: { ...k, caState: 3 } })).toEqual({ rate: 1800, collapsed: false, overdue: true });
    expect(pathState({ ...lossy, kernel: { ...k, caState: 1 } }).collapsed).toBe(false);
  });

  it('after a retransmission timeout, or without the kernel, the stalled app-level rate is a collapse', () => {
    expect(pathState({ ...lossy, kernel: { ...k, caState: 4 } }).collapsed).toBe(true);
    expect(pathState(lossy).collapsed).toBe(true);
  });

  it("in recovery the kernel's own rate still shows a real collapse (a link cut to 100 kbit)", () => {
    expect(pathState({ ...lossy, kernel: { ...k, caState: 3, deliveryRateBytesPerSec: 12_500 } }).collapsed).toBe(true);
  });
});

describe('acknowledgedByKernel', () => {
  it('is the app inflight less the kernel-held bytes (unacknowledged segments x mss, unsent), never negative, 0 without mss', () => {
    expect(acknowledgedByKernel(kernel({ unackedSegments: 45, mss: 1448, notsentBytes: 0 }), 129_000)).toBe(129_000 - 45 * 1448);
    expect(acknowledgedByKernel(kernel({ unackedSegments: 45, mss: 1448, notsentBytes: 10_000 }), 129_000)).toBe(129_000 - 45 * 1448 - 10_000);
    expect(acknowledgedByKernel(kernel({ unackedSegments: 200, mss: 1448 }), 129_000)).toBe(0);
    expect(acknowledgedByKernel(kernel({ mss: undefined }), 129_000)).toBe(0);
    expect(acknowledgedByKernel(undefined, 129_000)).toBe(0);
  });
});
