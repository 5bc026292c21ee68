/**
 * Per-user data caps (users file `cap: SIZE/day|month`): stream bytes both
 * ways counted per user and period (UTC days and months, so a server's
 * timezone cannot move them), kept in `--state-dir` so a restart does not
 * forget them. One owner: the server's cap tick adds, this saves.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type CapPeriod = 'day' | 'month';

interface Usage {
  period: CapPeriod;
  /** Start of the period counted (Unix ms, UTC). */
  start: number;
  used: number;
}

const FILE = 'user-caps.json';
/** A state file bigger than this is not ours. */
const MAX_FILE = 64 * 1024 * 1024;

export function periodStart(period: CapPeriod, now: number): number {
  const d = new Date(now);
  return period === 'day' ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

export class UserCapLedger {
  private readonly usage = new Map<string, Usage>();
  private dirty = false;

  constructor(
    /** Directory for the state file; undefined: counted in memory only. */
    private readonly dir: string | undefined,
    private readonly now: () => number = Date.now,
    warn: (msg: string) => void = () => undefined,
  ) {
    if (!dir) return;
    try {
      const text = readFileSync(join(dir, FILE), 'utf8');
      if (text.length > MAX_FILE) throw new Error('too large');
      const raw = JSON.parse(text) as Record<string, Usage>;
      for (const [user, u] of Object.entries(raw)) {
        if ((u.period === 'day' || u.period === 'month') && Number.isFinite(u.start) && Number.isFinite(u.used) && u.used >= 0) this.usage.set(user, { period: u.period, start: u.start, used: u.used });
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`--state-dir: ${join(dir, FILE)} unreadable (${e instanceof Error ? e.message : String(e)}); cap usage starts from zero`);
    }
  }

  /** Bytes used by `user` in the current `period` (0 once a new period began). */
  used(user: string, period: CapPeriod): number {
    const u = this.usage.get(user);
    return u && u.period === period && u.start === periodStart(period, this.now()) ? u.used : 0;
  }

  add(user: string, period: CapPeriod, bytes: number): void {
    if (bytes <= 0) return;
    const start = periodStart(period, this.now());
    const u = this.usage.get(user);
    if (u && u.period === period && u.start === start) u.used += bytes;
    else this.usage.set(user, { period, start, used: bytes });
    this.dirty = true;
  }

  /** Write the file if anything changed (atomically: a crash leaves the old or the new one). */
  save(): void {
    if (!this.dir || !this.dirty) return;
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const tmp = join(this.dir, `${FILE}.tmp`);
    writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.usage)), { mode: 0o600 });
    renameSync(tmp, join(this.dir, FILE));
    this.dirty = false;
  }
}
