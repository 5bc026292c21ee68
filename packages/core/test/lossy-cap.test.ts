import { describe, expect, it } from 'vitest';
import type { ByteChannel, KernelPathInfo } from '../src/channel.js';
import type { RecordOpener, RecordSealer } from '../src/record.js';
import { Subflow } from '../src/subflow.js';

/**
 * The cap of a lossy path follows the kernel (path-state.ts kernelFeedCap).
 * Recorded on the testbed (15mbit:40ms with 1 % loss, server sending): the
 * kernel's RTT is 83 ms, the app-level one ~155 ms (bytes behind each lost
 * segment wait for its repair at the receiver, and so do their acks), the
 * app inflight ~290 KB, the kernel's window 104-230 segments of 1448 bytes
 * (BBR in and out of recovery). Time is plain ms passed in; no wall clock.
 */
const CONFIG = { initialInflight: 256 * 1024, minInflight: 96 * 1024, ackSlackMs: 5, inflightGain: 1, recordTarget: 65536 };
const RATE = 1750; // bytes/ms: 14 Mbit/s

class Path {
  kernel: KernelPathInfo = {
    rttMs: 83,
    minRttMs: 80,
    cwnd: 104,
    unackedSegments: 150,
    notsentBytes: 0,
    totalRetrans: 0,
    deliveryRateBytesPerSec: RATE * 1000,
    caState: 3,
    mss: 1448,
  };
  readonly sf: Subflow;
  now = 1000;
  constructor(opts: { kernel: boolean }) {
    const channel = {
      write: () => true,
      ...(opts.kernel ? { kernelInfo: () => ({ ...this.kernel }) } : {}),
    } as unknown as ByteChannel;
    const sealer = { sealParts: (parts: Uint8Array[]) => new Uint8Array(parts.reduce((n, p) => n + p.length, 0)) } as unknown as RecordSealer;
    this.sf = new Subflow(channel, sealer, {} as RecordOpener, { id: 1, backup: false, addrId: 0, awaitOk: false, now: 0 });
    const m = this.sf.metrics;
    for (let t = 0; t < 10; t++) m.onRttSample(t, t === 0 ? 85 : 155);
    // Past startup (three cap-limited round trips without growth), on a clean path so far.
    for (let r = 0; r < 4; r++) {
      m.onRateSample(this.now, RATE * 85, 85);
      this.sf.markCapLimited();
      this.now += 85;
      this.sf.refreshView(this.now, CONFIG);
    }
  }
  /** The peer acknowledged everything sent so far. */
  ackAll(): void {
    this.sf.onAck(this.sf.sentRecords, this.now);
  }
  /** Put `bytes` of ack-eliciting records in flight (16 KiB each). */
  send(bytes: number): void {
    for (let left = bytes; left > 0; left -= 16384) {
      const rec = this.sf.stage(16384, 16384, this.now);
      rec.pos = Math.min(16384, left);
      rec.eliciting = true;
      this.sf.sealStaged(this.now);
    }
  }
  /** A refresh `ms` later, the kernel having retransmitted `retrans` more segments. */
  refresh(ms: number, retrans = 1): number {
    this.now += ms;
    this.kernel = { ...this.kernel, totalRetrans: this.kernel.totalRetrans + retrans };
    this.sf.refreshView(this.now, CONFIG);
    return this.sf.cap;
  }
  roomFor(bytes: number): boolean {
    return this.sf.inflight === 0 || this.sf.inflight + bytes <= this.sf.cap;
  }
}

describe('lossy path: the cap keeps the kernel fed', () => {
  it('a kernel with nothing unsent gets more, though the app inflight is far over its window', () => {
    const p = new Path({ kernel: true });
    p.send(290 * 1024);
    p.refresh(20); // the next look (every 20 ms on a clean path): retransmitted, so lossy; 290 KB in flight, nothing unsent
    expect(p.sf.inflight).toBeGreaterThan(104 * 1448 * 1.5);
    expect(p.roomFor(16 * 1024)).toBe(true);
    // The kernel's window alone would have stopped it: 150 KB < 290 KB.
    expect(p.sf.cap).toBeGreaterThanOrEqual(290 * 1024 + RATE * 10);
  });

  it('stops once the kernel holds data it has not sent: more would only queue', () => {
    const p = new Path({ kernel: true });
    p.send(290 * 1024);
    p.kernel.notsentBytes = 120 * 1024;
    p.refresh(20);
    expect(p.sf.cap).toBeLessThan(p.sf.inflight);
    expect(p.roomFor(16 * 1024)).toBe(false);
  });

  it('follows the kernel look by look: what it sent since the last is topped up, no more', () => {
    const p = new Path({ kernel: true });
    p.send(290 * 1024);
    p.refresh(20);
    // Fill to the cap, as the session would.
    while (p.roomFor(4096)) p.send(4096);
    const full = p.sf.inflight;
    // No app ack comes back (the receiver waits for a repair); the kernel
    // sends 8 KiB of what it held unsent, so the next look allows 8 KiB more.
    p.kernel.notsentBytes = full - 290 * 1024 - 8 * 1024;
    p.refresh(5);
    expect(p.sf.cap - full).toBeGreaterThanOrEqual(8 * 1024);
    expect(p.sf.cap - full).toBeLessThan(8 * 1024 + RATE * 10 + 1);
  });

  it('a clean path keeps the app cap (rate x (gain x min RTT + slack)), whatever the kernel says', () => {
    const p = new Path({ kernel: true });
    p.send(290 * 1024);
    const cap = p.refresh(20, 0);
    expect(cap).toBeLessThan(290 * 1024);
    expect(p.roomFor(16 * 1024)).toBe(false);
  });

  it('without TCP_INFO the app-level cap stands', () => {
    const p = new Path({ kernel: false });
    p.send(290 * 1024);
    expect(p.refresh(20)).toBeLessThan(290 * 1024);
  });

  it('stays lossy for 2 s after the last retransmission, then goes back to the app cap', () => {
    const p = new Path({ kernel: true });
    p.send(290 * 1024);
    expect(p.refresh(20)).toBeGreaterThan(290 * 1024);
    // Acked and refilled every 100 ms, with no retransmission since.
    for (let t = 100; t <= 1900; t += 100) {
      p.refresh(100, 0);
      p.ackAll();
      p.send(290 * 1024);
      p.sf.metrics.onRateSample(p.now, RATE * 85, 85);
    }
    expect(p.refresh(5, 0)).toBeGreaterThan(290 * 1024);
    // (All of it still in the kernel: none counts as acknowledged there.)
    p.kernel.unackedSegments = Math.ceil((290 * 1024) / 1448);
    p.refresh(100, 0);
    p.ackAll();
    p.send(290 * 1024);
    expect(p.refresh(5, 0)).toBeLessThan(290 * 1024);
  });
});

describe('bytes the peer kernel has acknowledged are off the path', () => {
  // Recorded on the testbed (30mbit:8ms, clean, receiver on a loaded 2-core
  // machine): app-level RTT 37 ms against the kernel's 18, 129 KB in flight
  // at the app level of which the kernel holds 45 segments (65 KB), nothing unsent.
  it('a late receiver does not hold the path back: the cap grows by what the peer kernel has, at most one cap', () => {
    const p = new Path({ kernel: true });
    p.kernel = { ...p.kernel, rttMs: 18, minRttMs: 16, unackedSegments: 0, notsentBytes: 0, caState: 0 };
    p.refresh(20, 0);
    const appCap = p.sf.cap;
    p.send(appCap);
    p.kernel.unackedSegments = Math.floor((appCap - 64 * 1024) / 1448);
    const cap = p.refresh(20, 0);
    expect(cap - appCap).toBeGreaterThanOrEqual(64 * 1024);
    expect(cap - appCap).toBeLessThan(64 * 1024 + 1448);
    expect(p.roomFor(16 * 1024)).toBe(true);
    // Whatever the peer kernel has, at most one cap more.
    p.kernel.unackedSegments = 0;
    expect(p.refresh(20, 0)).toBe(2 * appCap);
  });

  it('with everything still in the sender kernel, the app cap alone', () => {
    const p = new Path({ kernel: true });
    p.refresh(20, 0);
    const appCap = p.sf.cap;
    p.send(appCap);
    p.kernel = { ...p.kernel, unackedSegments: 60, notsentBytes: appCap - 60 * 1448, caState: 0 };
    expect(p.refresh(20, 0)).toBe(appCap);
    expect(p.roomFor(4096)).toBe(false);
  });
});
