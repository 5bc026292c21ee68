/**
 * Per-user data caps (users file `cap: SIZE/day|month`): stream bytes both
 * ways counted per user and period (UTC days and months, so a server's
 * timezone cannot move them), kept in `--state-dir` so a restart does not
 * forget them. One owner: the server's cap tick adds, this saves.
 */
import { StateFile, isStoredCount, type StateFileSpec } from '@plait/node';

export type CapPeriod = 'day' | 'month';

interface Usage {
  period: CapPeriod;
  /** Start of the period counted (Unix ms, UTC). */
  start: number;
  used: number;
}

/**
 * Users kept at most. The users file that names them is bounded far below
 * this; past periods are dropped at each save, so only a file that is not
 * ours comes near it.
 */
const MAX_ENTRIES = 100_000;

/**
 * `DIR/user-caps.json`: `{"format": "plait-user-caps", "version": 1,
 * "users": {NAME: Usage}}`. Servers before the envelope wrote the users
 * object alone: still read, written back in this format at the next save.
 */
export const USER_CAPS_FILE: StateFileSpec<Map<string, Usage>> = {
  name: 'user-caps.json',
  format: 'plait-user-caps',
  version: 1,
  key: 'users',
  // An entry is under 150 bytes with the longest user name.
  maxBytes: 16 * 1024 * 1024,
  kind: 'plait user cap state',
  contents: "users' cap usage",
  parseBody: (body) => parseUsers(body, 'users.'),
  parseLegacy: (raw) => parseUsers(raw, ''),
};

export function periodStart(period: CapPeriod, now: number): number {
  const d = new Date(now);
  return period === 'day' ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

export class UserCapLedger {
  private readonly usage: Map<string, Usage>;
  private readonly file: StateFile<Map<string, Usage>> | undefined;
  private dirty = false;

  constructor(
    /** Directory for the state file; undefined: counted in memory only. */
    dir: string | undefined,
    private readonly now: () => number = Date.now,
    warn: (msg: string) => void = () => undefined,
  ) {
    this.file = dir !== undefined ? new StateFile(dir, USER_CAPS_FILE, warn) : undefined;
    this.usage = this.file?.load() ?? new Map();
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

  /**
   * Write the file if anything changed. Never throws: a failure is warned
   * (once per distinct failure) and the next save tries again.
   */
  save(): void {
    if (!this.file || !this.dirty) return;
    const now = this.now();
    // No prototype: a user named __proto__ stays a plain key.
    const users = Object.create(null) as Record<string, Usage>;
    for (const [name, u] of this.usage) {
      // A period that ended counts nothing any more: dropped, so the file holds this period's users only.
      if (u.start < periodStart(u.period, now)) this.usage.delete(name);
      else users[name] = { period: u.period, start: u.start, used: u.used };
    }
    if (this.file.save(users)) this.dirty = false;
  }
}

/** Stored usage by user name, or why `body` is not that; `at` prefixes names in the reason. */
function parseUsers(body: unknown, at: string): Map<string, Usage> | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return `${at ? '"users"' : 'the file'} is not an object`;
  const entries = Object.entries(body as Record<string, unknown>);
  if (entries.length > MAX_ENTRIES) return `more than ${MAX_ENTRIES} users`;
  const out = new Map<string, Usage>();
  for (const [name, v] of entries) {
    const where = `${at}${JSON.stringify(name)}`;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return `${where} is not an object`;
    const e = v as Record<string, unknown>;
    if (e.period !== 'day' && e.period !== 'month') return `${where}.period is not day or month`;
    if (!isStoredCount(e.start)) return `${where}.start is not a time`;
    if (!isStoredCount(e.used)) return `${where}.used is not a byte count`;
    out.set(name, { period: e.period, start: e.start, used: e.used });
  }
  return out;
}
