/**
 * Time as the core sees it. The core never calls setTimeout or Date itself,
 * so tests can drive sessions on a virtual clock, deterministically.
 */
export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Unix time in milliseconds (for HELLO timestamps only). */
  wallNow(): number;
  setTimeout(fn: () => void, ms: number): Timer;
}

export const realClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return { cancel: () => clearTimeout(t) };
  },
};

interface Pending {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A clock that only moves when told to. `advance` runs due timers in order,
 * draining microtasks between them so promise chains see each step.
 */
export class VirtualClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers: Pending[] = [];
  constructor(private readonly wallBase = 1_700_000_000_000) {}

  now(): number {
    return this.t;
  }
  wallNow(): number {
    return this.wallBase + this.t;
  }
  setTimeout(fn: () => void, ms: number): Timer {
    const p: Pending = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    this.timers.push(p);
    return { cancel: () => void (p.cancelled = true) };
  }
  /** Number of live timers (for leak checks in tests). */
  get pendingTimers(): number {
    return this.timers.filter((p) => !p.cancelled).length;
  }
  nextTimerAt(): number | undefined {
    let best: number | undefined;
    for (const p of this.timers) if (!p.cancelled && (best === undefined || p.at < best)) best = p.at;
    return best;
  }
  /** Move time forward by `ms`, firing every timer that falls due. */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    await flushMicrotasks();
    for (;;) {
      this.timers = this.timers.filter((p) => !p.cancelled);
      let next: Pending | undefined;
      for (const p of this.timers) {
        if (p.at <= end && (!next || p.at < next.at || (p.at === next.at && p.seq < next.seq))) next = p;
      }
      if (!next) break;
      this.t = Math.max(this.t, next.at);
      next.cancelled = true;
      next.fn();
      await flushMicrotasks();
    }
    this.t = end;
    await flushMicrotasks();
  }
}

export async function flushMicrotasks(): Promise<void> {
  // A few turns so chained promises settle; setImmediate would leave the virtual world.
  for (let i = 0; i < 10; i++) await Promise.resolve();
}
