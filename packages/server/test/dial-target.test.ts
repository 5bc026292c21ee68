import * as net from 'node:net';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResetCode } from '@plait/core';
import { TestClock, track } from '@plait/testkit';
import { dialTarget, EgressError, interleave, resetCodeForErrno, type LookupFn } from '../src/dial-target.js';
import { EgressPolicy } from '../src/egress-policy.js';

// ---- helpers ----

// Real pauses only give loopback I/O a chance to happen (or show it did not); no test asserts on real time.
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Lets real I/O run until `cond` holds; for tests whose clock is not in play. */
const until = (cond: () => boolean, what: string): Promise<void> => new TestClock().settle(cond, what);

/** A loopback listener that counts the connections it accepts. */
interface Counting {
  server: net.Server;
  port: number;
  accepted: net.Socket[];
}

const cleanup: (() => unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

function listenOn(host: string, port = 0): Promise<Counting> {
  return new Promise((resolve, reject) => {
    const accepted: net.Socket[] = [];
    const server = net.createServer((s) => {
      s.on('error', () => {});
      accepted.push(s);
    });
    server.once('error', reject);
    server.listen(port, host, () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') {
        reject(new Error('no address'));
        return;
      }
      cleanup.push(
        () =>
          new Promise<void>((r) => {
            for (const s of accepted) s.destroy();
            server.close(() => r());
          }),
      );
      resolve({ server, port: addr.port, accepted });
    });
  });
}

/** A port on `host` with nothing listening: bind one, then let it go. */
async function unusedPort(host = '127.0.0.1'): Promise<number> {
  const l = await listenOn(host);
  await new Promise<void>((r) => l.server.close(() => r()));
  return l.port;
}

/**
 * A listener whose connection attempts hang: it lives in a worker thread that
 * is blocked, so nothing accepts, and its accept queue (backlog 1) is filled
 * first. Linux then drops further SYNs, so a connect neither succeeds nor
 * fails for seconds. `release()` unblocks the worker and returns how many
 * connections it accepted besides the fillers within 1.5 s: long enough for
 * a still-live attempt's first SYN retransmission (1 s) to get through.
 */
async function hangingListener(host: string): Promise<{ port: number; release: () => Promise<number> }> {
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `
    const { parentPort, workerData } = require('node:worker_threads');
    const net = require('node:net');
    let count = 0;
    const s = net.createServer((c) => { count++; c.destroy(); });
    s.listen({ port: 0, host: workerData.host, backlog: 1 }, () => {
      parentPort.postMessage(s.address().port);
      Atomics.wait(workerData.flag, 0, 0);
      setTimeout(() => { parentPort.postMessage(count); s.close(); }, 1500);
    });
    `,
    { eval: true, workerData: { host, flag } },
  );
  const port = await new Promise<number>((r) => worker.once('message', r));
  const fillers: net.Socket[] = [];
  const attempt = (): Promise<boolean> =>
    new Promise((resolve) => {
      const s = net.connect({ port, host });
      s.on('error', () => {});
      s.once('connect', () => {
        fillers.push(s);
        resolve(true);
      });
      setTimeout(() => {
        // The probe that hangs proves the queue is full; gone before its SYN is retried.
        s.destroy();
        resolve(false);
      }, 300);
    });
  let hung = false;
  for (let i = 0; i < 8 && !hung; i++) hung = !(await attempt());
  if (!hung) throw new Error('could not make a hanging listener');
  let released: Promise<number> | undefined;
  const release = (): Promise<number> => {
    released ??= (async () => {
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      const count = await new Promise<number>((r) => worker.once('message', r));
      for (const s of fillers) s.destroy();
      await worker.terminate();
      return count - fillers.length;
    })();
    return released;
  };
  cleanup.push(release);
  return { port, release };
}

type Answer = string[] | NodeJS.ErrnoException | 'hang';

/**
 * A resolver answering from a table, recording its calls. `answered` counts
 * the answers given: once it moves, the dial's first connection attempt has
 * started (it follows the answer within the same event-loop turn).
 */
function fakeLookup(table: Record<string, Answer>, calls: { host: string; all: boolean }[] = []): LookupFn & { answered: number } {
  const lookup: LookupFn & { answered: number } = Object.assign(
    (hostname: string, options: Parameters<LookupFn>[1], callback: Parameters<LookupFn>[2]) => {
      calls.push({ host: hostname, all: options.all });
      const answer = table[hostname];
      if (answer === 'hang') return;
      setImmediate(() => {
        lookup.answered++;
        if (answer === undefined) callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), []);
        else if (answer instanceof Error) callback(answer, []);
        else callback(null, answer.map((address) => ({ address, family: net.isIPv6(address) ? 6 : 4 })));
      });
    },
    { answered: 0 },
  );
  return lookup;
}

async function failure(p: Promise<net.Socket>): Promise<EgressError> {
  try {
    const s = await p;
    s.destroy();
  } catch (err) {
    if (err instanceof EgressError) return err;
    throw err;
  }
  throw new Error('expected the dial to fail');
}

/**
 * The dial still waits 1 ms of clock time before `budgetMs`, and fails once
 * it is up. The real pause in between is longer than the budget, so a dial
 * timed by real time instead of the clock fails here. Returns the error.
 */
async function timesOutAt(clock: TestClock, dial: ReturnType<typeof track<net.Socket>>, budgetMs: number): Promise<EgressError> {
  await clock.advance(budgetMs - 1);
  await sleep(budgetMs * 3);
  expect(dial.settled, `settled before ${budgetMs} ms of clock time`).toBe(false);
  await clock.advance(1);
  await clock.settle(() => dial.settled, `the dial to time out at ${budgetMs} ms of clock time`);
  const e = await failure(dial.promise);
  expect(e.code).toBe(ResetCode.TIMEOUT);
  expect(clock.pendingTimers).toBe(0);
  return e;
}

let hasIPv6 = false;
beforeAll(async () => {
  try {
    const l = await listenOn('::1');
    hasIPv6 = l.port > 0;
  } catch {
    hasIPv6 = false;
  }
});

const openPolicy = new EgressPolicy({ allowPrivate: true, ownAddresses: [] });

// ---- tests ----

describe('dialTarget with literals', () => {
  it('connects to an allowed literal and returns the connected socket', async () => {
    const l = await listenOn('127.0.0.1');
    const s = await dialTarget({ host: '127.0.0.1', port: l.port }, openPolicy);
    expect(s.remoteAddress).toBe('127.0.0.1');
    expect(s.remotePort).toBe(l.port);
    s.write('x');
    await until(() => l.accepted.length === 1, 'the listener to accept the dialled connection');
    s.destroy();
  });

  it('returns a socket that stays writable after the target half-closes', async () => {
    const got: Buffer[] = [];
    const server = net.createServer({ allowHalfOpen: true }, (c) => {
      c.on('data', (d: Buffer) => got.push(d));
      c.on('end', () => c.destroy());
      c.end('banner');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
    const addr = server.address();
    if (addr === null || typeof addr === 'string') throw new Error('no address');
    const s = await dialTarget({ host: '127.0.0.1', port: addr.port }, openPolicy);
    s.resume();
    await new Promise<void>((r) => s.once('end', () => r()));
    await sleep(20);
    const closed = new Promise<void>((r) => s.once('close', () => r()));
    s.end('after the banner');
    await closed;
    await until(() => Buffer.concat(got).length >= 16, 'the target to read what was sent after its FIN');
    expect(Buffer.concat(got).toString()).toBe('after the banner');
  });

  it('accepts a bracketed IPv6 literal', async () => {
    if (!hasIPv6) return;
    const l = await listenOn('::1');
    const s = await dialTarget({ host: '[::1]', port: l.port }, openPolicy);
    expect(s.remoteAddress).toBe('::1');
    s.destroy();
  });

  it('fails with REFUSED on a closed port at once, without waiting on any timer', async () => {
    const port = await unusedPort();
    const clock = new TestClock();
    const dial = track(dialTarget({ host: '127.0.0.1', port }, openPolicy, { clock }));
    // The clock stands still: the refusal alone must end the dial.
    await clock.settle(() => dial.settled, 'the dial to a closed port to fail');
    const e = await failure(dial.promise);
    expect(e.code).toBe(ResetCode.REFUSED);
    expect(clock.pendingTimers).toBe(0);
  });

  for (const host of ['127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1', '127.1', '0x7f.0.0.1', '2130706433']) {
    it(`refuses the denied literal ${host} with NOT_ALLOWED without connecting`, async () => {
      const l = await listenOn('127.0.0.1');
      const calls: { host: string; all: boolean }[] = [];
      const e = await failure(
        dialTarget({ host, port: l.port }, new EgressPolicy({ ownAddresses: [] }), { lookup: fakeLookup({}, calls) }),
      );
      expect(e.code).toBe(ResetCode.NOT_ALLOWED);
      expect(e.message).toMatch(/loopback/);
      await sleep(50);
      expect(l.accepted.length).toBe(0);
      // Numeric spellings are read as addresses, never sent to the resolver.
      expect(calls).toEqual([]);
    });
  }

  for (const port of [0, -1, 65536, 1.5, Number.NaN]) {
    it(`refuses port ${port}`, async () => {
      const e = await failure(dialTarget({ host: '127.0.0.1', port }, openPolicy));
      expect(e.code).toBe(ResetCode.NOT_ALLOWED);
      expect(e.message).toMatch(/invalid port/);
    });
  }
});

describe('dialTarget with names', () => {
  it('resolves all addresses of both families and connects', async () => {
    const l = await listenOn('127.0.0.1');
    const calls: { host: string; all: boolean }[] = [];
    const s = await dialTarget({ host: 'svc.test', port: l.port }, openPolicy, {
      lookup: fakeLookup({ 'svc.test': ['127.0.0.1'] }, calls),
    });
    expect(s.remoteAddress).toBe('127.0.0.1');
    expect(calls).toEqual([{ host: 'svc.test', all: true }]);
    s.destroy();
  });

  it('drops denied addresses and connects to the allowed one', async () => {
    const allowedL = await listenOn('127.0.0.1');
    const deniedL = await listenOn('127.0.0.2', allowedL.port);
    const policy = new EgressPolicy({ allow: ['127.0.0.1/32'], ownAddresses: [] });
    const s = await dialTarget({ host: 'mixed.test', port: allowedL.port }, policy, {
      lookup: fakeLookup({ 'mixed.test': ['127.0.0.2', '127.0.0.1'] }),
    });
    expect(s.remoteAddress).toBe('127.0.0.1');
    await until(() => allowedL.accepted.length === 1, 'the allowed address to accept');
    await sleep(50);
    expect(deniedL.accepted.length).toBe(0);
    s.destroy();
  });

  it('refuses with NOT_ALLOWED when every address is denied, naming the reasons', async () => {
    const l = await listenOn('127.0.0.1');
    const e = await failure(
      dialTarget({ host: 'inside.test', port: l.port }, new EgressPolicy({ ownAddresses: [] }), {
        lookup: fakeLookup({ 'inside.test': ['127.0.0.1', '::ffff:10.0.0.1', '169.254.169.254'] }),
      }),
    );
    expect(e.code).toBe(ResetCode.NOT_ALLOWED);
    expect(e.message).toMatch(/loopback/);
    expect(e.message).toMatch(/private/);
    expect(e.message).toMatch(/link-local/);
    await sleep(50);
    expect(l.accepted.length).toBe(0);
  });

  it('maps resolver errors to DNS_FAILED', async () => {
    const again: NodeJS.ErrnoException = Object.assign(new Error('getaddrinfo EAI_AGAIN'), { code: 'EAI_AGAIN' });
    const lookup = fakeLookup({ 'again.test': again, 'empty.test': [] });
    for (const host of ['missing.test', 'again.test', 'empty.test']) {
      const e = await failure(dialTarget({ host, port: 80 }, openPolicy, { lookup }));
      expect(e.code, host).toBe(ResetCode.DNS_FAILED);
    }
  });

  it('refuses a name that cannot be a host name with DNS_FAILED, without resolving it', async () => {
    const calls: { host: string; all: boolean }[] = [];
    for (const host of ['bad host', 'a%b', '']) {
      const e = await failure(dialTarget({ host, port: 80 }, openPolicy, { lookup: fakeLookup({}, calls) }));
      expect(e.code, host).toBe(ResetCode.DNS_FAILED);
    }
    expect(calls).toEqual([]);
  });

  it('times out a resolver that never answers, after the dial budget on the clock and not before', async () => {
    const clock = new TestClock();
    const dial = track(
      dialTarget({ host: 'slow.test', port: 80 }, openPolicy, { timeoutMs: 100, clock, lookup: fakeLookup({ 'slow.test': 'hang' }) }),
    );
    const e = await timesOutAt(clock, dial, 100);
    expect(e.message).toMatch(/resolving slow\.test timed out/);
  });

  it('reports the most telling error when every attempt fails', async () => {
    const port = await unusedPort();
    const e = await failure(
      dialTarget({ host: 'dead.test', port }, openPolicy, {
        lookup: fakeLookup({ 'dead.test': ['127.0.0.2', '127.0.0.3'] }),
      }),
    );
    expect(e.code).toBe(ResetCode.REFUSED);
    expect(e.message).toMatch(/127\.0\.0\.2: ECONNREFUSED/);
    expect(e.message).toMatch(/127\.0\.0\.3: ECONNREFUSED/);
  });
});

describe('dialTarget happy eyeballs', () => {
  it('starts the next address only once the attempt delay has passed on the clock, and destroys the loser', async () => {
    const hang = await hangingListener('127.0.0.2');
    const good = await listenOn('127.0.0.1', hang.port);
    const clock = new TestClock();
    const lookup = fakeLookup({ 'he.test': ['127.0.0.2', '127.0.0.1'] });
    const dial = track(dialTarget({ host: 'he.test', port: hang.port }, openPolicy, { attemptDelayMs: 100, clock, lookup }));
    await clock.settle(() => lookup.answered === 1, 'the name to resolve (the first attempt starts with it)');
    // 1 ms short of the delay, then longer than it in real time: the second address waits for the clock.
    await clock.advance(99);
    await sleep(300);
    expect(good.accepted.length).toBe(0);
    expect(dial.settled).toBe(false);
    await clock.advance(1);
    await clock.settle(() => dial.settled, 'the second attempt to connect once the delay is up');
    const s = await dial.promise;
    expect(s.remoteAddress).toBe('127.0.0.1');
    await until(() => good.accepted.length === 1, 'the second address to accept');
    expect(clock.pendingTimers).toBe(0);
    s.destroy();
    // A loser still alive would get through on its SYN retry once the listener accepts again.
    expect(await hang.release()).toBe(0);
  });

  it('moves on at once when an attempt fails, without waiting out the delay', async () => {
    const good = await listenOn('127.0.0.1');
    const clock = new TestClock();
    const dial = track(
      dialTarget({ host: 'ff.test', port: good.port }, openPolicy, {
        attemptDelayMs: 5000,
        clock,
        lookup: fakeLookup({ 'ff.test': ['127.0.0.2', '127.0.0.1'] }),
      }),
    );
    // The clock stands still: only the first attempt's refusal can start the second.
    await clock.settle(() => dial.settled, 'the dial to move on from the refused address');
    const s = await dial.promise;
    expect(s.remoteAddress).toBe('127.0.0.1');
    expect(clock.pendingTimers).toBe(0);
    s.destroy();
  });

  it('prefers the first address when it connects within the delay, and never tries the second', async () => {
    const first = await listenOn('127.0.0.2');
    const second = await listenOn('127.0.0.1', first.port);
    const clock = new TestClock();
    const dial = track(
      dialTarget({ host: 'both.test', port: first.port }, openPolicy, {
        clock,
        lookup: fakeLookup({ 'both.test': ['127.0.0.2', '127.0.0.1'] }),
      }),
    );
    await clock.settle(() => dial.settled, 'the first address to connect');
    const s = await dial.promise;
    expect(s.remoteAddress).toBe('127.0.0.2');
    // Well past the attempt delay and the dial budget: nothing left armed may start the second attempt.
    await clock.advance(20_000);
    await until(() => first.accepted.length === 1, 'the first address to accept');
    await sleep(50);
    expect(second.accepted.length).toBe(0);
    expect(clock.pendingTimers).toBe(0);
    s.destroy();
  });

  it('falls back across families (::1 refused, 127.0.0.1 listening)', async () => {
    if (!hasIPv6) return;
    const good = await listenOn('127.0.0.1');
    const s = await dialTarget({ host: 'dual.test', port: good.port }, openPolicy, {
      lookup: fakeLookup({ 'dual.test': ['::1', '127.0.0.1'] }),
    });
    expect(s.remoteAddress).toBe('127.0.0.1');
    s.destroy();
  });

  it('times out when every address hangs, after the dial budget on the clock and not before', async () => {
    const hang = await hangingListener('127.0.0.2');
    const clock = new TestClock();
    // A literal: the attempt starts within the call.
    const dial = track(dialTarget({ host: '127.0.0.2', port: hang.port }, openPolicy, { timeoutMs: 100, clock }));
    const e = await timesOutAt(clock, dial, 100);
    expect(e.message).toMatch(/connecting to 127\.0\.0\.2:\d+ timed out/);
    // The timed-out attempt was destroyed, not left to connect later.
    expect(await hang.release()).toBe(0);
  });
});

describe('interleave', () => {
  const a = (address: string): { address: string; family: 4 | 6 } => ({ address, family: net.isIPv6(address) ? 6 : 4 });
  it('alternates families starting with the first one resolved', () => {
    expect(interleave(['::1', '::2', '::3', '1.0.0.1', '1.0.0.2'].map(a)).map((x) => x.address)).toEqual([
      '::1',
      '1.0.0.1',
      '::2',
      '1.0.0.2',
      '::3',
    ]);
    expect(interleave(['1.0.0.1', '1.0.0.2', '::1'].map(a)).map((x) => x.address)).toEqual(['1.0.0.1', '::1', '1.0.0.2']);
    expect(interleave([])).toEqual([]);
  });
});

describe('resetCodeForErrno', () => {
  const table: [string, ResetCode][] = [
    ['ECONNREFUSED', ResetCode.REFUSED],
    ['EHOSTUNREACH', ResetCode.HOST_UNREACHABLE],
    ['ENETUNREACH', ResetCode.NETWORK_UNREACHABLE],
    ['ETIMEDOUT', ResetCode.TIMEOUT],
    ['ENOTFOUND', ResetCode.DNS_FAILED],
    ['EAI_AGAIN', ResetCode.DNS_FAILED],
    ['EPIPE', ResetCode.INTERNAL],
    ['', ResetCode.INTERNAL],
  ];
  for (const [errno, code] of table) {
    it(`${errno || '(none)'} -> ${code}`, () => expect(resetCodeForErrno(errno)).toBe(code));
  }
});
