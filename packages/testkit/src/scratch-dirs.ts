import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Fresh directories (0700) under one temp root, removed together (call `remove` in afterAll). */
export function scratchDirs(prefix: string): { root: string; fresh(): string; remove(): void } {
  const root = mkdtempSync(join(tmpdir(), prefix));
  let n = 0;
  return {
    root,
    fresh(): string {
      const d = join(root, `d${n++}`);
      mkdirSync(d, { mode: 0o700 });
      return d;
    },
    remove(): void {
      rmSync(root, { recursive: true, force: true });
    },
  };
}
