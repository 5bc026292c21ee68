import type { Clock, Timer } from '@plait/core';
import { localTimeText, nextPeriodStart, periodStart, type CapPeriod } from './cap-period.js';
import type { CapStore, StoredUsage } from './cap-store.js';

/** What a path does at its cap: carry traffic only when no other path works, or none at all. */
export type CapAction = 'backup' | 'off';
export const CAP_ACTIONS: readonly CapAction[] = ['backup', 'off'];

/** `--cap PATH=SIZE[/day|/month][:backup|:off]`, parsed. */
export interface CapSpec {
  /** An address or interface name, as --bind/--via/--backup/--overflow take. */
  path: string;
  bytes: number;
  period: CapPeriod;
  action: CapAction;
}

/** One cap as /stats shows it. */
export interface CapStats {
  path: string;
  period: CapPeriod;
  capBytes: number;
  /** Bytes both ways on the path's subflows this period (all of them, replaced ones included). */
  usedBytes: number;
  /** Unix ms of the period's start and of the next one's. */
  periodStart: number;
  periodEnd: number;
  action: CapAction;
  /** `ok` under the cap; `reached`: the path is held at `action` until periodEnd. */
  state: 'ok' | 'reached';
}

interface Log {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

interface CapState {
  spec: CapSpec;
  used: number;
  start: number;
  end: number;
  reached: boolean;
}

export interface CapLedgerOptions {
  clock: Clock;
  log: Log;
  store?: CapStore;
  /** Save dirty usage at most this often (ms). */
  saveEveryMs?: number;
}

/** Period boundaries are looked at least this often (ms): the wall clock may jump (suspend, NTP) under a monotonic timer. */
const BOUNDARY_CHECK_MS = 10 * 60_000;
const MiB = 1024 * 1024;
const fmt = (n: number): string => (n >= 1024 * MiB ? `${(n / (1024 * MiB)).toFixed(2)} GiB` : `${(n / MiB).toFixed(1)} MiB`);

/**
 * Usage of every cap in its current period: counts bytes, decides when a
 * cap is reached (said once per period) and when a new period lifts it,
 * and persists the counts. It owns the usage; whoever creates it closes it
 * (the CLI, at shutdown). Clients (one per site with --fallback-server)
 * count into it, own their paths' roles, and hear of changes by `onChange`.
 */
export class CapLedger {
  private readonly caps = new Map<string, CapState>();
  /** Stored usage of caps not configured now: kept and saved again as it was. */
  private readonly foreign = new Map<string, StoredUsage>();
  private dirty = false;
  private saveTimer: Timer | undefined;
  private boundaryTimer: Timer | undefined;
  /** Caps reached since the last notice: `changed` runs from a timer, not inside a channel's read or write. */
  private pending = new Set<string>();
  private notifyTimer: Timer | undefined;
  private closed = false;
  private readonly listeners = new Set<(path: string) => void>();

  constructor(
    specs: readonly CapSpec[],
    private readonly opts: CapLedgerOptions,
  ) {
    const now = opts.clock.wallNow();
    const stored = opts.store?.load() ?? new Map<string, StoredUsage>();
    for (const spec of specs) {
      const s = stored.get(spec.path);
      stored.delete(spec.path);
      const start = periodStart(spec.period, now);
      const state: CapState = { spec, used: 0, start, end: nextPeriodStart(spec.period, now), reached: false };
      // The stored period goes on while its end is ahead (a clock set back does not start a new period).
      if (s && s.period === spec.period && now < nextPeriodStart(s.period, s.periodStart)) {
        state.used = s.used;
        state.start = s.periodStart;
        state.end = nextPeriodStart(s.period, s.periodStart);
      }
      this.caps.set(spec.path, state);
      if (state.used >= spec.bytes) this.reach(state, 'at start');
      else if (s && state.used > 0) opts.log.info({ cap: spec.path, usedBytes: state.used }, `data cap on ${spec.path}: ${fmt(state.used)} of ${fmt(spec.bytes)} used this ${spec.period} (from ${opts.store ? 'the state file' : 'before'})`);
    }
    for (const [path, u] of stored) this.foreign.set(path, u);
    this.armBoundary();
  }

  get specs(): CapSpec[] {
    return [...this.caps.values()].map((c) => c.spec);
  }

  /** Call `fn(path)` when a cap is reached or a new period lifts it (from a timer); returns the unsubscribe. */
  onChange(fn: (path: string) => void): () => void {
    this.listeners.add(fn);
    return () => void this.listeners.delete(fn);
  }

  /** Count bytes on a capped path. Cheap: called on every read and write of its subflows. */
  add(path: string, n: number): void {
    const c = this.caps.get(path);
    if (!c || n <= 0) return;
    c.used += n;
    if (!this.dirty) {
      this.dirty = true;
      this.armSave();
    }
    if (!c.reached && c.used >= c.spec.bytes) this.reach(c, 'now');
  }

  isReached(path: string): boolean {
    return this.caps.get(path)?.reached ?? false;
  }

  /** The cap's action while reached, else undefined. */
  actionFor(path: string): CapAction | undefined {
    const c = this.caps.get(path);
    return c?.reached ? c.spec.action : undefined;
  }

  stats(): CapStats[] {
    return [...this.caps.values()].map((c) => ({
      path: c.spec.path,
      period: c.spec.period,
      capBytes: c.spec.bytes,
      usedBytes: c.used,
      periodStart: c.start,
      periodEnd: c.end,
      action: c.spec.action,
      state: c.reached ? 'reached' : 'ok',
    }));
  }

  /** Save now and stop the timers (shutdown). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.saveTimer?.cancel();
    this.boundaryTimer?.cancel();
    this.notifyTimer?.cancel();
    this.save();
  }

  /** Write the usage now (also every `saveEveryMs` while it changes). */
  save(): void {
    this.dirty = false;
    if (!this.opts.store) return;
    const out = new Map(this.foreign);
    for (const c of this.caps.values()) out.set(c.spec.path, { period: c.spec.period, periodStart: c.start, used: c.used });
    this.opts.store.save(out);
  }

  private reach(c: CapState, when: 'now' | 'at start'): void {
    c.reached = true;
    const { path, bytes, period, action } = c.spec;
    const until = localTimeText(c.end);
    this.opts.log.warn(
      { cap: path, usedBytes: c.used, capBytes: bytes, action, until },
      when === 'now'
        ? `data cap reached on ${path}: ${fmt(c.used)} of ${fmt(bytes)} this ${period}; the path is ${action === 'off' ? 'off' : 'a backup'} until ${until}`
        : `data cap on ${path} already reached this ${period} (${fmt(c.used)} of ${fmt(bytes)}); the path is ${action === 'off' ? 'off' : 'a backup'} until ${until}`,
    );
    this.notify(path);
  }

  private notify(path: string): void {
    this.pending.add(path);
    if (this.notifyTimer || this.closed) return;
    this.notifyTimer = this.opts.clock.setTimeout(() => {
      this.notifyTimer = undefined;
      const paths = [...this.pending];
      this.pending.clear();
      for (const p of paths) for (const fn of [...this.listeners]) fn(p);
    }, 0);
  }

  private armSave(): void {
    if (this.saveTimer || this.closed || !this.opts.store) return;
    this.saveTimer = this.opts.clock.setTimeout(() => {
      this.saveTimer = undefined;
      if (this.dirty) this.save();
    }, this.opts.saveEveryMs ?? 5_000);
  }

  /** Start new periods that are due, and look again at the next boundary (or in BOUNDARY_CHECK_MS). */
  private armBoundary(): void {
    if (this.closed || this.caps.size === 0) return;
    const now = this.opts.clock.wallNow();
    let rolled = false;
    for (const c of this.caps.values()) {
      if (now < c.end) continue;
      const was = c.used;
      const wasReached = c.reached;
      c.used = 0;
      c.reached = false;
      c.start = periodStart(c.spec.period, now);
      c.end = nextPeriodStart(c.spec.period, now);
      rolled = true;
      this.opts.log.info(
        { cap: c.spec.path, lastPeriodBytes: was },
        `data cap on ${c.spec.path}: a new ${c.spec.period} started (${localTimeText(c.start)}); ${fmt(was)} were used in the last one${wasReached ? '; the path returns to its role' : ''}`,
      );
      if (wasReached) this.notify(c.spec.path);
    }
    if (rolled) this.save();
    const next = Math.min(...[...this.caps.values()].map((c) => c.end));
    // +1: the timer fires at or just after the boundary, never a hair before it.
    const wait = Math.max(1, Math.min(BOUNDARY_CHECK_MS, next - now + 1));
    this.boundaryTimer = this.opts.clock.setTimeout(() => {
      this.boundaryTimer = undefined;
      this.armBoundary();
    }, wait);
  }
}
