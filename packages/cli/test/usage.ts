import { expect } from 'vitest';
import { UsageError } from '../src/args.js';

/** The UsageError message a call throws ('' if it does not throw). */
export function usage(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return (e as Error).message;
  }
  return '';
}
