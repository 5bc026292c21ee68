/**
 * Small JSON state files under `--state-dir` (the client's cap usage, the
 * server's per-user cap usage): one way to read them safely, to tell ours
 * from anything else, and to write them so that a crash leaves the old or
 * the new state, never half of one. What the body holds is the caller's to
 * check (`parseBody`); this module owns the file.
 */
import { closeSync, constants, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** 0 where the platform has no O_NOFOLLOW (then a final symlink is followed). */
const NOFOLLOW = constants.O_NOFOLLOW ?? 0;
/** A FIFO opened for reading would block until a writer comes: open without waiting, then refuse it. */
const NONBLOCK = constants.O_NONBLOCK ?? 0;

/**
 * Up to `limit` bytes of an open file, from its start (a buffer of `limit`
 * bytes at most: callers bound it by the fstat size or their own maximum).
 */
export function readOpenFile(fd: number, limit: number): Buffer {
  const buf = Buffer.alloc(limit);
  let n = 0;
  while (n < buf.length) {
    const r = readSync(fd, buf, n, buf.length - n, n);
    if (r === 0) break;
    n += r;
  }
  return buf.subarray(0, n);
}

/** The file is there but is not something to read state from. */
export class StateFileRefused extends Error {}

/**
 * The bytes of a regular file, or `'too large'` when it holds more than
 * `maxBytes` (then no more than `maxBytes + 1` bytes are read, however large
 * the file claims or grows to be). A final symlink is not followed and a
 * FIFO or device is not opened for reading: both throw StateFileRefused;
 * other failures throw the fs error (ENOENT when there is no file).
 */
export function readRegularFile(file: string, maxBytes: number): Buffer | 'too large' {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | NOFOLLOW | NONBLOCK);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ELOOP' && NOFOLLOW !== 0) throw new StateFileRefused('a symbolic link, not followed');
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new StateFileRefused('not a regular file');
    if (st.size > maxBytes) return 'too large';
    // One byte over the bound tells a file that grew since fstat.
    const data = readOpenFile(fd, Math.min(st.size, maxBytes) + 1);
    return data.length > maxBytes ? 'too large' : data;
  } finally {
    closeSync(fd);
  }
}

/** How one kind of state file looks and what its messages call it. */
export interface StateFileSpec<T> {
  /** File name inside the state directory, e.g. `caps.json`. */
  name: string;
  /** The envelope: `{"format": format, "version": version, [key]: body}`. */
  format: string;
  version: number;
  key: string;
  /** A file larger than this is not ours. */
  maxBytes: number;
  /** For messages: "is not <kind>", e.g. `plait cap state`. */
  kind: string;
  /** For messages: "<contents> starts at 0", "cannot save <contents>", e.g. `cap usage`. */
  contents: string;
  /** The body (the value under `key`), checked; a string says why it is not valid. */
  parseBody(body: unknown): T | string;
  /**
   * A file from before the envelope (a JSON object with no string "format"),
   * checked; a string says why it is not one. Without it such a file is bad.
   */
  parseLegacy?(raw: Record<string, unknown>): T | string;
}

/** Where a save failure or a bad file is told; each is told once. */
export type StateWarn = (msg: string) => void;

/**
 * One state file, `DIR/<spec.name>` (the directory created 0700, the file
 * written 0600). A file that cannot be read is reported and ignored; one
 * that is not valid state is reported once and moved aside to `<name>.bad`,
 * so the next save does not destroy what an operator may want to look at.
 * Saves go to a temp file, synced and renamed over the old one; a failing
 * save is reported once per distinct failure (a full disk must not flood the
 * log), and never throws.
 */
export class StateFile<T> {
  readonly file: string;
  private lastSaveError: string | undefined;

  constructor(
    readonly dir: string,
    private readonly spec: StateFileSpec<T>,
    private readonly warn: StateWarn,
  ) {
    this.file = join(dir, spec.name);
  }

  /** The stored state; undefined when there is none or it was unusable (reported). */
  load(): T | undefined {
    let data: Buffer | 'too large';
    try {
      data = readRegularFile(this.file, this.spec.maxBytes);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return undefined;
      const why = e instanceof StateFileRefused ? e.message : (code ?? (e instanceof Error ? e.message : String(e)));
      this.warn(`--state-dir: cannot read ${this.file} (${why}); ${this.spec.contents} starts at 0`);
      return undefined;
    }
    const parsed = data === 'too large' ? `larger than ${this.spec.maxBytes} bytes` : parseStateText(this.spec, data.toString('utf8'));
    if (typeof parsed !== 'string') return parsed;
    let aside = '';
    try {
      renameSync(this.file, `${this.file}.bad`);
      aside = `; moved it to ${this.file}.bad`;
    } catch {
      /* left in place: the next save replaces it */
    }
    this.warn(`--state-dir: ${this.file} is not ${this.spec.kind} (${parsed}); ignoring it, ${this.spec.contents} starts at 0${aside}`);
    return undefined;
  }

  /** Writes `{format, version, [key]: body}`; false (and reported, once per distinct failure) when it could not. */
  save(body: unknown): boolean {
    const { format, version, key } = this.spec;
    try {
      const bytes = Buffer.from(JSON.stringify({ format, version, [key]: body }, null, 2) + '\n');
      writeAtomically(this.dir, this.file, bytes);
      this.lastSaveError = undefined;
      return true;
    } catch (e) {
      const msg = `--state-dir: cannot save ${this.spec.contents} to ${this.file}: ${fsFailure(e)}`;
      if (msg !== this.lastSaveError) this.warn(msg);
      this.lastSaveError = msg;
      return false;
    }
  }
}

/** The state in `text` (a whole state file), or why it is not valid state. */
export function parseStateText<T>(spec: StateFileSpec<T>, text: string): T | string {
  const { format, version, key } = spec;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return `not JSON: ${e instanceof Error ? e.message : String(e)}`;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return 'not a JSON object';
  const o = raw as Record<string, unknown>;
  if (typeof o.format !== 'string' && spec.parseLegacy) {
    const legacy = spec.parseLegacy(o);
    return typeof legacy === 'string' ? `no "format": "${format}", and not the older unversioned file either: ${legacy}` : legacy;
  }
  if (o.format !== format) return `no "format": "${format}"`;
  if (o.version !== version) return `version ${JSON.stringify(o.version)}, this plait reads version ${version}`;
  return spec.parseBody(o[key]);
}

/** `ENOSPC (write /dir/caps.json.tmp-12)`: the code, and which step on which path. */
function fsFailure(e: unknown): string {
  const { code, syscall, path } = e as NodeJS.ErrnoException;
  if (code === undefined) return e instanceof Error ? e.message : String(e);
  return syscall !== undefined ? `${code} (${syscall}${path !== undefined ? ` ${path}` : ''})` : code;
}

/** `file` replaced by `bytes` in one rename (temp file created 0600 and synced first); throws the fs error. */
function writeAtomically(dir: string, file: string, bytes: Buffer): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  // A temp file left by a crash of a process with our pid goes first; O_EXCL then refuses anything planted in between (a symlink too).
  try {
    unlinkSync(tmp);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | NOFOLLOW, 0o600);
  try {
    try {
      let n = 0;
      while (n < bytes.length) n += writeSync(fd, bytes, n, bytes.length - n);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      /* already gone */
    }
    throw e;
  }
  syncDir(dir);
}

/** The rename made durable; best effort (some filesystems refuse fsync on a directory). */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, constants.O_RDONLY);
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    /* the file itself is synced; only the rename's durability is at stake */
  }
}

/** Creates DIR (0700) if missing; a warning when others can reach an existing one. */
export function prepareStateDir(dir: string): string | undefined {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw Object.assign(new Error(`${dir} is not a directory`), { code: 'ENOTDIR' });
  if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
    return `--state-dir: ${dir} is accessible to other users (mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}); run: chmod 700 ${dir}`;
  }
  return undefined;
}

/** A whole number of bytes or milliseconds, as stored: safe, not negative. */
export const isStoredCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
