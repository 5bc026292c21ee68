import { describe, expect, it } from 'vitest';
import { SendBudget } from '../src/send-budget.js';
import type { Stream } from '../src/stream.js';

const KiB = 1024;
const config = { streamSendBuffer: 1024 * KiB, streamSendMin: 64 * KiB, sessionSendBudget: 2048 * KiB };

/** The part of a Stream the budget reads: what it holds, and its blocked writer. */
function fakeStream(held: number): Stream & { woken: number; held: number } {
  const f = {
    held,
    woken: 0,
    blocked: true,
    get send() {
      return { bufferedBytes: f.held };
    },
    isClosed: false,
    get writerBlocked() {
      return f.blocked;
    },
    wakeWriter() {
      f.woken++;
      f.blocked = false;
    },
  };
  return f as unknown as Stream & { woken: number; held: number };
}

describe('SendBudget', () => {
  it('a stream under streamSendMin may always write, even with the session full', () => {
    const b = new SendBudget(config, undefined);
    b.changed(2048 * KiB);
    expect(b.mayWrite(fakeStream(10 * KiB))).toBe(true);
    expect(b.mayWrite(fakeStream(100 * KiB))).toBe(false);
    expect(b.blocked(fakeStream(100 * KiB))).toBe('session');
    expect(b.blocked(fakeStream(1024 * KiB))).toBe('stream');
  });

  it('freed room wakes blocked writers oldest first, a few at a time', () => {
    const b = new SendBudget(config, undefined);
    b.changed(2048 * KiB);
    const writers = [0, 1, 2, 3, 4, 5].map(() => fakeStream(200 * KiB));
    for (const w of writers) b.blocked(w);
    b.changed(-128 * KiB); // room for two 64 KiB reads
    expect(writers.map((w) => w.woken)).toEqual([1, 1, 0, 0, 0, 0]);
    b.changed(-64 * KiB);
    expect(writers.map((w) => w.woken)).toEqual([1, 1, 1, 0, 0, 0]);
  });
});
