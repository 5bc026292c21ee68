import { describe, expect, it } from 'vitest';
import { joinSession } from '../src/connector.js';
import { ErrorCode, PlaitError } from '../src/errors.js';
import { MemoryLink } from '@plait/testkit';
import { makePair, settle } from './harness.js';

async function codeOf(p: Promise<unknown>, clock: Parameters<typeof settle>[0]): Promise<number | undefined> {
  try {
    await settle(clock, p);
    return undefined;
  } catch (e) {
    return e instanceof PlaitError ? e.code : -1;
  }
}

describe('joining subflows over channels', () => {
  it('a join to a full session is refused with SESSION_FULL', async () => {
    const pair = await makePair({ links: [{ delayMs: 3 }], config: { maxSubflows: 1 } });
    const link = new MemoryLink(pair.clock, { delayMs: 3 });
    void pair.acceptor.accept(link.b);
    expect(await codeOf(joinSession(pair.client, link.a, { clock: pair.clock, addrId: 1 }), pair.clock)).toBe(ErrorCode.SESSION_FULL);
  });

  it('two joins racing for the last slot: the loser gets SESSION_FULL after JOIN_CONFIRM, not a record error', async () => {
    const pair = await makePair({ links: [{ delayMs: 3 }], config: { maxSubflows: 2 } });
    const fast = new MemoryLink(pair.clock, { delayMs: 2 }, 'fast');
    const slow = new MemoryLink(pair.clock, { delayMs: 6 }, 'slow');
    void pair.acceptor.accept(fast.b);
    void pair.acceptor.accept(slow.b);
    const a = codeOf(joinSession(pair.client, fast.a, { clock: pair.clock, addrId: 1 }), pair.clock);
    const b = codeOf(joinSession(pair.client, slow.a, { clock: pair.clock, addrId: 2 }), pair.clock);
    expect(await a).toBeUndefined();
    expect(await b).toBe(ErrorCode.SESSION_FULL);
    expect(pair.client.subflowCount).toBe(2);
  });

  it('a join with a token the server does not know is refused with UNKNOWN_TOKEN', async () => {
    const pair = await makePair({ links: [{ delayMs: 3 }] });
    const other = await makePair({ links: [{ delayMs: 3 }] });
    const link = new MemoryLink(pair.clock, { delayMs: 3 });
    void other.acceptor.accept(link.b);
    expect(await codeOf(joinSession(pair.client, link.a, { clock: pair.clock, addrId: 1 }), pair.clock)).toBe(ErrorCode.UNKNOWN_TOKEN);
  });
});
