import { prepareStateDir } from '@plait/node';
import { UsageError } from './args.js';

/**
 * `--state-dir DIR` (client caps, server user caps): created 0700 if
 * missing; returns a warning when others can read or write it. Checked
 * before anything listens, so a bad directory costs one line and exit 2.
 */
export function checkStateDir(dir: string | undefined): string | undefined {
  if (dir === undefined) return undefined;
  try {
    return prepareStateDir(dir);
  } catch (e) {
    throw new UsageError(`--state-dir: cannot use ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}
