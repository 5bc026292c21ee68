/** --state-dir on client and server: created private, a warning when others can read it, one usage line when unusable. */
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { UsageError } from '../src/args.js';
import { checkStateDir } from '../src/state-dir-flag.js';

const made: string[] = [];
afterEach(() => {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
});
const scratch = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'plait-state-dir-'));
  made.push(d);
  return d;
};

describe('checkStateDir', () => {
  it('creates a missing directory 0700 and says nothing; none given, nothing done', () => {
    const dir = join(scratch(), 'state');
    expect(checkStateDir(dir)).toBeUndefined();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(checkStateDir(undefined)).toBeUndefined();
  });

  it('warns, with the fix, when others can read the directory', () => {
    const dir = scratch();
    chmodSync(dir, 0o755);
    expect(checkStateDir(dir)).toMatch(/--state-dir: .* is accessible to other users \(mode 755\); run: chmod 700/);
  });

  it('a file in the way is a usage error naming the flag', () => {
    const file = join(scratch(), 'not-a-dir');
    writeFileSync(file, 'x');
    expect(() => checkStateDir(file)).toThrow(UsageError);
    expect(() => checkStateDir(file)).toThrow(/^--state-dir: cannot use .*not-a-dir: /);
  });
});
