import { closeSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, statSync, writeSync, constants } from 'node:fs';
import { join } from 'node:path';
import { CAP_PERIODS, type CapPeriod } from './cap-period.js';

/** One cap's usage as stored: the period it counts and the bytes used in it. */
export interface StoredUsage {
  period: CapPeriod;
  /** Unix ms of the period's start (local midnight). */
  periodStart: number;
  used: number;
}

export interface CapStore {
  /** Usage by cap path; empty when there is no state yet (or it could not be read: reported by `warn`). */
  load(): Map<string, StoredUsage>;
  save(usage: ReadonlyMap<string, StoredUsage>): void;
}

/** A state file bigger than this is not ours. */
const MAX_STATE_BYTES = 1024 * 1024;
/** Entries kept at most (caps no longer configured are kept too, so a cap removed and restored keeps its count). */
const MAX_ENTRIES = 1024;
const FORMAT = 'plait-cap-usage';
const VERSION = 1;

/**
 * Cap usage in `DIR/caps.json` (created 0700 / 0600). Writes go to a temp
 * file, fsync'd, then renamed over the old one, so a crash leaves the old or
 * the new state, never half of one. A file that is not valid plait state is
 * reported once and ignored (usage starts at 0), never a crash; it is moved
 * aside to caps.json.bad so the next save does not destroy it.
 */
export class CapStateFile implements CapStore {
  readonly file: string;
  private lastSaveError: string | undefined;

  constructor(
    readonly dir: string,
    private readonly warn: (msg: string) => void,
  ) {
    this.file = join(dir, 'caps.json');
  }

  load(): Map<string, StoredUsage> {
    let text: string;
    try {
      text = readBounded(this.file);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return new Map();
      this.warn(`--state-dir: cannot read ${this.file} (${code ?? (e instanceof Error ? e.message : String(e))}); cap usage starts at 0`);
      return new Map();
    }
    const parsed = parseState(text);
    if (typeof parsed === 'string') {
      let aside = '';
      try {
        renameSync(this.file, `${this.file}.bad`);
        aside = `; moved it to ${this.file}.bad`;
      } catch {
        /* left in place: the next save replaces it */
      }
      this.warn(`--state-dir: ${this.file} is not plait cap state (${parsed}); ignoring it, cap usage starts at 0${aside}`);
      return new Map();
    }
    return parsed;
  }

  save(usage: ReadonlyMap<string, StoredUsage>): void {
    // No prototype: a stored path named __proto__ stays a plain key.
    const caps = Object.create(null) as Record<string, StoredUsage>;
    for (const [path, u] of [...usage].slice(0, MAX_ENTRIES)) caps[path] = { period: u.period, periodStart: u.periodStart, used: u.used };
    const body = JSON.stringify({ format: FORMAT, version: VERSION, caps }, null, 2) + '\n';
    const tmp = `${this.file}.tmp-${process.pid}`;
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | (constants.O_NOFOLLOW ?? 0), 0o600);
      try {
        writeSync(fd, body);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.file);
      this.lastSaveError = undefined;
    } catch (e) {
      const msg = `--state-dir: cannot save cap usage to ${this.file}: ${(e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e))}`;
      // Once per distinct failure: a full disk must not flood the log every few seconds.
      if (msg !== this.lastSaveError) this.warn(msg);
      this.lastSaveError = msg;
    }
  }
}

/** Create DIR (0700) if missing; a warning if others can read or write an existing one. */
export function prepareStateDir(dir: string): string | undefined {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR' });
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    return `--state-dir: ${dir} is accessible to other users (mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}); run: chmod 700 ${dir}`;
  }
  return undefined;
}

function readBounded(file: string): string {
  const fd = openSync(file, constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0));
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EISDIR' });
    const buf = Buffer.alloc(Math.min(st.size, MAX_STATE_BYTES + 1));
    let n = 0;
    while (n < buf.length) {
      const r = readSync(fd, buf, n, buf.length - n, n);
      if (r === 0) break;
      n += r;
    }
    if (n > MAX_STATE_BYTES) return '\u0000too large';
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The stored usage, or why the text is not plait cap state. */
export function parseState(text: string): Map<string, StoredUsage> | string {
  if (text.startsWith('\u0000too large')) return `larger than ${MAX_STATE_BYTES} bytes`;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return `not JSON: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a JSON object';
  const o = raw as Record<string, unknown>;
  if (o.format !== FORMAT) return `no "format": "${FORMAT}"`;
  if (o.version !== VERSION) return `version ${JSON.stringify(o.version)}, this plait reads version ${VERSION}`;
  const caps = o.caps;
  if (typeof caps !== 'object' || caps === null || Array.isArray(caps)) return '"caps" is not an object';
  const entries = Object.entries(caps as Record<string, unknown>);
  if (entries.length > MAX_ENTRIES) return `more than ${MAX_ENTRIES} caps`;
  const out = new Map<string, StoredUsage>();
  for (const [path, v] of entries) {
    if (typeof v !== 'object' || v === null) return `caps.${path} is not an object`;
    const e = v as Record<string, unknown>;
    if (!CAP_PERIODS.includes(e.period as CapPeriod)) return `caps.${path}.period is not day or month`;
    if (!isCount(e.periodStart)) return `caps.${path}.periodStart is not a time`;
    if (!isCount(e.used)) return `caps.${path}.used is not a byte count`;
    out.set(path, { period: e.period as CapPeriod, periodStart: e.periodStart, used: e.used });
  }
  return out;
}
