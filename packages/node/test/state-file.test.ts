/**
 * The shared --state-dir file: what it refuses to read, what it moves aside,
 * and that a save either replaces the file whole or leaves the old one.
 * Everything here works as root too (tests may run as root, where a
 * read-only directory stops nothing): failures are made with directories
 * standing where files should be.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { scratchDirs } from '@plait/testkit';
import { isStoredCount, parseStateText, prepareStateDir, readRegularFile, StateFile, StateFileRefused, type StateFileSpec } from '../src/state-file.js';

const MiB = 1024 * 1024;
const scratch = scratchDirs('plait-state-');
afterAll(() => scratch.remove());
const freshDir = (): string => scratch.fresh();

/** A body of counts by name, as the ledgers keep. */
function parseCounts(body: unknown): Map<string, number> | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return '"counts" is not an object';
  const out = new Map<string, number>();
  for (const [k, v] of Object.entries(body as Record<string, unknown>)) {
    if (!isStoredCount(v)) return `counts.${k} is not a count`;
    out.set(k, v);
  }
  return out;
}

const SPEC: StateFileSpec<Map<string, number>> = {
  name: 'counts.json',
  format: 'plait-test-counts',
  version: 1,
  key: 'counts',
  maxBytes: 64 * 1024,
  kind: 'plait test state',
  contents: 'the count',
  parseBody: parseCounts,
};
const LEGACY_SPEC: StateFileSpec<Map<string, number>> = { ...SPEC, parseLegacy: (raw) => parseCounts(raw) };

function open(dir: string, spec = SPEC) {
  const warnings: string[] = [];
  return { state: new StateFile(dir, spec, (m) => warnings.push(m)), warnings };
}

/** Bytes this process has read through read(2) and friends so far (Linux). */
function bytesReadByProcess(): number {
  const m = /^rchar: (\d+)$/m.exec(readFileSync('/proc/self/io', 'utf8'));
  if (!m) throw new Error('no rchar in /proc/self/io');
  return Number(m[1]);
}

describe('reading a state file', () => {
  it('a 100 MiB file is refused as too large without being read whole', () => {
    const dir = freshDir();
    const file = join(dir, 'counts.json');
    const fd = openSync(file, 'w');
    ftruncateSync(fd, 100 * MiB); // sparse: no disk used
    closeSync(fd);
    const before = bytesReadByProcess();
    const { state, warnings } = open(dir);
    expect(state.load()).toBeUndefined();
    const read = bytesReadByProcess() - before;
    // An unbounded reader reads 100 MiB here; the bound is 64 KiB (the /proc read itself and test-runner traffic are small).
    expect(read).toBeLessThan(4 * MiB);
    expect(warnings).toEqual([`--state-dir: ${file} is not plait test state (larger than 65536 bytes); ignoring it, the count starts at 0; moved it to ${file}.bad`]);
    expect(statSync(`${file}.bad`).size).toBe(100 * MiB);
    expect(readRegularFile(`${file}.bad`, 1024)).toBe('too large');
  });

  it('reads no more than the bound plus one byte, whatever the size', () => {
    const dir = freshDir();
    const file = join(dir, 'f');
    writeFileSync(file, 'x'.repeat(100));
    expect(readRegularFile(file, 100)).toEqual(Buffer.from('x'.repeat(100)));
    expect(readRegularFile(file, 99)).toBe('too large');
  });

  it('a symlink is not followed: refused, reported, and the next save replaces the link, not its target', () => {
    const dir = freshDir();
    const target = join(freshDir(), 'elsewhere.json');
    const body = JSON.stringify({ format: 'plait-test-counts', version: 1, counts: { a: 5 } });
    writeFileSync(target, body);
    const file = join(dir, 'counts.json');
    symlinkSync(target, file);
    const { state, warnings } = open(dir);
    expect(state.load()).toBeUndefined();
    expect(warnings).toEqual([`--state-dir: cannot read ${file} (a symbolic link, not followed); the count starts at 0`]);
    expect(() => readRegularFile(file, 1024)).toThrow(StateFileRefused);
    expect(state.save({ b: 1 })).toBe(true);
    expect(lstatSync(file).isFile()).toBe(true);
    expect(readFileSync(target, 'utf8')).toBe(body);
  });

  it('a FIFO, a device or a directory is refused without blocking on it', () => {
    const dir = freshDir();
    const file = join(dir, 'counts.json');
    execFileSync('mkfifo', [file]); // opened for reading, a FIFO with no writer would block forever
    const { state, warnings } = open(dir);
    expect(state.load()).toBeUndefined();
    expect(warnings).toEqual([`--state-dir: cannot read ${file} (not a regular file); the count starts at 0`]);
    expect(() => readRegularFile('/dev/zero', 1024)).toThrow(/not a regular file/);
    const d2 = freshDir();
    mkdirSync(join(d2, 'counts.json'));
    const second = open(d2);
    expect(second.state.load()).toBeUndefined();
    expect(second.warnings).toEqual([`--state-dir: cannot read ${join(d2, 'counts.json')} (not a regular file); the count starts at 0`]);
  });

  it('no file is no state and no warning', () => {
    const { state, warnings } = open(freshDir());
    expect(state.load()).toBeUndefined();
    expect(warnings).toEqual([]);
  });

  it('a file that is not this state is reported once, moved aside byte for byte, and usage starts afresh', () => {
    const cases: [string, string | Buffer, string][] = [
      ['bad JSON', '{"format": "plait-test-counts", ', 'not JSON: '],
      ['binary', Buffer.from([0xff, 0x00, 0x13, 0x37]), 'not JSON: '],
      ['not an object', '[1, 2]', 'not a JSON object'],
      ['wrong format', JSON.stringify({ format: 'plait-cap-usage', version: 1, counts: {} }), 'no "format": "plait-test-counts"'],
      ['no format', JSON.stringify({ a: 1 }), 'no "format": "plait-test-counts"'],
      ['wrong version', JSON.stringify({ format: 'plait-test-counts', version: 2, counts: {} }), 'version 2, this plait reads version 1'],
      ['bad body', JSON.stringify({ format: 'plait-test-counts', version: 1, counts: { a: -1 } }), 'counts.a is not a count'],
      ['body missing', JSON.stringify({ format: 'plait-test-counts', version: 1 }), '"counts" is not an object'],
    ];
    for (const [name, body, reason] of cases) {
      const dir = freshDir();
      const file = join(dir, 'counts.json');
      writeFileSync(file, body);
      const { state, warnings } = open(dir);
      expect(state.load(), name).toBeUndefined();
      expect(warnings, name).toHaveLength(1);
      expect(warnings[0], name).toContain(`--state-dir: ${file} is not plait test state (${reason}`);
      expect(warnings[0], name).toMatch(/\); ignoring it, the count starts at 0; moved it to .*counts\.json\.bad$/);
      expect(readFileSync(`${file}.bad`).equals(Buffer.from(body)), name).toBe(true);
      // Moved aside: loading again finds nothing and says nothing.
      expect(state.load(), name).toBeUndefined();
      expect(warnings, name).toHaveLength(1);
    }
  });

  it('a file from before the envelope is read when the spec knows it; a foreign one is still refused, saying both', () => {
    const dir = freshDir();
    const file = join(dir, 'counts.json');
    // A legacy key named "format" holding a count is still legacy: only a string "format" is an envelope.
    writeFileSync(file, JSON.stringify({ a: 3, format: 4 }));
    expect(open(dir, LEGACY_SPEC).state.load()).toEqual(new Map([['a', 3], ['format', 4]]));
    expect(open(dir, SPEC).state.load()).toBeUndefined();
    writeFileSync(file, JSON.stringify({ hello: 'world' }));
    const { state, warnings } = open(dir, LEGACY_SPEC);
    expect(state.load()).toBeUndefined();
    expect(warnings[0]).toContain('(no "format": "plait-test-counts", and not the older unversioned file either: counts.hello is not a count)');
    expect(parseStateText(LEGACY_SPEC, JSON.stringify({ format: 'plait-test-counts', version: 1, counts: { z: 1 } }))).toEqual(new Map([['z', 1]]));
  });
});

describe('saving a state file', () => {
  it('writes the envelope 0600 in a 0700 directory it creates, with no temp file left', () => {
    const dir = join(freshDir(), 'nested', 'state');
    const { state, warnings } = open(dir);
    expect(state.save({ a: 1, b: 2 })).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'counts.json'), 'utf8'))).toEqual({ format: 'plait-test-counts', version: 1, counts: { a: 1, b: 2 } });
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'counts.json')).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['counts.json']);
    expect(open(dir).state.load()).toEqual(new Map([['a', 1], ['b', 2]]));
    expect(warnings).toEqual([]);
  });

  it('a save that fails before the rename leaves the old file whole', () => {
    const dir = freshDir();
    const file = join(dir, 'counts.json');
    const { state, warnings } = open(dir);
    expect(state.save({ a: 1 })).toBe(true);
    const before = readFileSync(file);
    // A directory (not empty) where the temp file goes: it cannot be created, nor removed to make room.
    const tmp = `${file}.tmp-${process.pid}`;
    mkdirSync(join(tmp, 'x'), { recursive: true });
    expect(state.save({ a: 2 })).toBe(false);
    expect(readFileSync(file).equals(before)).toBe(true);
    expect(open(dir).state.load()).toEqual(new Map([['a', 1]]));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toBe(`--state-dir: cannot save the count to ${file}: EISDIR (unlink ${tmp})`);
    rmSync(tmp, { recursive: true });
    expect(state.save({ a: 3 })).toBe(true);
    expect(open(dir).state.load()).toEqual(new Map([['a', 3]]));
  });

  it('a stale temp file (a crash of a process with our pid) or a symlink there is replaced, not written through', () => {
    const dir = freshDir();
    const file = join(dir, 'counts.json');
    const victim = join(freshDir(), 'victim');
    writeFileSync(victim, 'untouched');
    symlinkSync(victim, `${file}.tmp-${process.pid}`);
    const { state } = open(dir);
    expect(state.save({ a: 1 })).toBe(true);
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(open(dir).state.load()).toEqual(new Map([['a', 1]]));
  });

  it('a save that keeps failing is reported once per distinct failure, not once per call', () => {
    const dir = freshDir();
    const file = join(dir, 'counts.json');
    mkdirSync(join(file, 'x'), { recursive: true }); // rename onto a non-empty directory fails
    const { state, warnings } = open(dir);
    for (let i = 0; i < 5; i++) expect(state.save({ a: i })).toBe(false);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^--state-dir: cannot save the count to .*counts\.json: (EISDIR|ENOTEMPTY|EEXIST) \(rename .*counts\.json\.tmp-\d+\)$/);
    // Another failure is new news; the same one again after it is too.
    const tmp = `${file}.tmp-${process.pid}`;
    mkdirSync(join(tmp, 'x'), { recursive: true });
    state.save({ a: 9 });
    state.save({ a: 9 });
    expect(warnings).toHaveLength(2);
    rmSync(tmp, { recursive: true });
    state.save({ a: 10 });
    expect(warnings).toHaveLength(3);
    // Once it works, a later failure is reported again.
    rmSync(file, { recursive: true });
    expect(state.save({ a: 11 })).toBe(true);
    mkdirSync(join(tmp, 'x'), { recursive: true });
    state.save({ a: 12 });
    expect(warnings).toHaveLength(4);
    expect(existsSync(file)).toBe(true);
  });
});

describe('prepareStateDir', () => {
  it('creates the directory 0700 and warns about one others can reach', () => {
    const dir = join(freshDir(), 'nested');
    expect(prepareStateDir(dir)).toBeUndefined();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const open = join(scratch.root, 'open');
    mkdirSync(open, { mode: 0o755 });
    expect(prepareStateDir(open)).toMatch(/accessible to other users \(mode 755\); run: chmod 700/);
    const notDir = join(freshDir(), 'file');
    writeFileSync(notDir, '');
    expect(() => prepareStateDir(notDir)).toThrow();
  });
});
