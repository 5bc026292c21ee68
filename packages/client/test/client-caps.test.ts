/**
 * Data caps in the client, with real sockets to a real server and the
 * client on a test clock whose wall time starts a minute before the next
 * local midnight (the server accepts the skew), so crossing into a new day
 * is a clock step, not a wait.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { deriveSecretKeys } from '@plait/core';
import { EgressPolicy, PlaitServer } from '@plait/server';
import { startEchoServer } from '@plait/testkit';
import { PlaitClient } from '../src/client.js';
import { CapLedger, type CapSpec } from '../src/cap-ledger.js';
import { nextPeriodStart } from '../src/cap-period.js';
import { echoRoundTrip, sha } from './socket-helpers.js';
import { TestClock, track } from './test-clock.js';

const secretKeys = deriveSecretKeys('client-caps-test-secret-0123456789abc');
const KiB = 1024;
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A TestClock whose wall time is `beforeMidnightMs` before the next local midnight. */
class EveningClock extends TestClock {
  private readonly shift: number;
  constructor(beforeMidnightMs: number) {
    super();
    const now = super.wallNow();
    this.shift = nextPeriodStart('day', now) - beforeMidnightMs - now;
  }
  override wallNow(): number {
    return super.wallNow() + this.shift;
  }
}

async function setup(cap: CapSpec) {
  const echo = await startEchoServer();
  cleanups.push(() => echo.close());
  // The client's wall clock is up to a day off the server's: widen the HELLO window for this test.
  const server = new PlaitServer({
    listen: { host: '127.0.0.1', port: 0 },
    secretKeys,
    policy: new EgressPolicy({ allowPrivate: true }),
    config: { timestampWindowMs: 25 * 3_600_000 },
  });
  const addr = await server.listen();
  cleanups.push(() => server.close());
  const clock = new EveningClock(60_000);
  const ledger = new CapLedger([cap], { clock, log: { info: () => undefined, warn: () => undefined } });
  cleanups.push(() => ledger.close());
  const client = new PlaitClient({
    servers: [{ host: '127.0.0.1', port: addr.port }],
    secretKeys,
    sources: { binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: [] },
    caps: ledger,
    clock,
  });
  cleanups.push(() => client.close());
  const start = track(client.start());
  await clock.advanceUntil(() => start.settled && client.stats().paths.every((p) => p.state === 'up'), 5_000, 'both paths up');
  const path = (local: string) => client.stats().paths.find((p) => p.local === local)!;
  /** The server's view of its subflows: id -> role and bytes sent. */
  const serverSubflows = () => new Map((server.sessions()[0]?.stats().subflows ?? []).filter((s) => s.state === 'active').map((s) => [s.id, s]));
  const conn = await client.dial({ host: '127.0.0.1', port: echo.port });
  cleanups.push(() => conn.destroy());
  /** Echo `n` random bytes through the session, moving the clock in small steps meanwhile. */
  const roundTrip = async (n: number): Promise<void> => {
    const data = randomBytes(n);
    const back = track(echoRoundTrip(conn, data));
    // Real I/O gets as much time as the clock moves: on a loaded machine a faster clock
    // would make the healthy path look silent (suspect), and the backup would carry data.
    await clock.advanceUntil(() => back.settled, 20_000, `${n} bytes echoed`, { stepMs: 5, realMs: 5 });
    expect(sha(await back.promise)).toBe(sha(data));
  };
  return { clock, client, path, serverSubflows, roundTrip };
}

describe('data caps (real sockets, test clock)', () => {
  it('at its cap a path becomes a backup here and at the server; a reload or a role request does not lift it; the next local day does', async () => {
    const { clock, client, path, serverSubflows, roundTrip } = await setup({ path: '127.0.0.2', bytes: 256 * KiB, period: 'day', action: 'backup' });
    const id = path('127.0.0.2').subflow!;
    expect(path('127.0.0.2')).toMatchObject({ role: 'regular', caps: ['127.0.0.2'], capped: undefined });
    expect(path('127.0.0.1').caps).toEqual([]);

    await roundTrip(2 * 1024 * KiB);
    await clock.advanceUntil(() => serverSubflows().get(id)?.role === 'backup', 1_000, 'the server learns the capped path is a backup');
    expect(path('127.0.0.2')).toMatchObject({ role: 'backup', configuredRole: 'regular', capped: 'backup', backup: true, subflow: id });
    const [cap] = client.stats().caps!;
    expect(cap).toMatchObject({ path: '127.0.0.2', state: 'reached', capBytes: 256 * KiB, action: 'backup', period: 'day' });
    // The cap counts exactly the path's bytes both ways.
    expect(cap!.usedBytes).toBe(path('127.0.0.2').bytesSent + path('127.0.0.2').bytesReceived);
    expect(cap!.usedBytes).toBeGreaterThanOrEqual(256 * KiB);

    // While capped, the regular path carries the data.
    const onCapped = serverSubflows().get(id)!.bytesSent;
    const onOther = serverSubflows().get(path('127.0.0.1').subflow!)!.bytesSent;
    await roundTrip(1024 * KiB);
    const cappedGrew = serverSubflows().get(id)!.bytesSent - onCapped;
    const otherGrew = serverSubflows().get(path('127.0.0.1').subflow!)!.bytesSent - onOther;
    expect(otherGrew).toBeGreaterThan(1024 * KiB);
    expect(cappedGrew, `${cappedGrew} bytes on the capped path, ${otherGrew} on the other`).toBeLessThan(32 * KiB);

    // A reload re-applying (or changing) its role, and a role request, change the role it returns to, not the one it has.
    client.reconfigure({ binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: [], overflows: ['127.0.0.2'] });
    expect(path('127.0.0.2')).toMatchObject({ role: 'backup', configuredRole: 'overflow', capped: 'backup' });
    expect(client.setSubflowRole(id, 'regular')).toBe(path('127.0.0.2').key);
    expect(path('127.0.0.2')).toMatchObject({ role: 'backup', configuredRole: 'regular' });
    await clock.advance(200);
    expect(serverSubflows().get(id)?.role).toBe('backup');

    // Midnight (local): the cap lifts and the path takes its configured role, here and at the server; not a second before.
    const midnight = nextPeriodStart('day', clock.wallNow());
    await clock.advanceUntil(() => clock.wallNow() >= midnight - 1_000, 70_000, 'a second before midnight', { stepMs: 100 });
    expect(path('127.0.0.2').capped).toBe('backup');
    expect(serverSubflows().get(id)?.role).toBe('backup');
    await clock.advanceUntil(() => serverSubflows().get(id)?.role === 'regular', 5_000, 'the path is regular again after midnight');
    expect(clock.wallNow()).toBeGreaterThanOrEqual(midnight);
    expect(path('127.0.0.2')).toMatchObject({ role: 'regular', capped: undefined });
    expect(client.stats().caps![0]).toMatchObject({ state: 'ok' });
    expect(client.stats().caps![0]!.usedBytes).toBeLessThan(64 * KiB);
  });

  it('action off: the path closes and stays down while the stream goes on; the next day it reconnects and its totals go on from where they were', async () => {
    const { clock, client, path, serverSubflows, roundTrip } = await setup({ path: '127.0.0.2', bytes: 256 * KiB, period: 'day', action: 'off' });
    const first = path('127.0.0.2').subflow!;
    await roundTrip(2 * 1024 * KiB);
    await clock.advanceUntil(() => path('127.0.0.2').state === 'off', 1_000, 'the capped path goes off');
    await clock.advanceUntil(() => !serverSubflows().has(first), 1_000, 'the server sees its subflow close');
    expect(path('127.0.0.2')).toMatchObject({ subflow: undefined, capped: 'off', lastError: 'data cap reached' });
    const totals = { sent: path('127.0.0.2').bytesSent, received: path('127.0.0.2').bytesReceived };
    const attempts = path('127.0.0.2').attempts;
    // The stream goes on over the other path; the capped one is not retried.
    await roundTrip(1024 * KiB);
    await clock.advance(20_000);
    expect(path('127.0.0.2')).toMatchObject({ state: 'off', attempts });
    expect(serverSubflows().size).toBe(1);

    await clock.advanceUntil(() => path('127.0.0.2').state === 'up', 50_000, 'the path reconnects after midnight', { stepMs: 100 });
    const second = path('127.0.0.2').subflow!;
    expect(second).not.toBe(first);
    await roundTrip(64 * KiB); // under the cap: the path stays on
    expect(path('127.0.0.2')).toMatchObject({ state: 'up', subflow: second });
    // The path's totals include the closed subflow's bytes; the new subflow's own counters started at 0.
    const now = path('127.0.0.2');
    expect(now.bytesSent).toBeGreaterThan(totals.sent);
    expect(now.bytesReceived).toBeGreaterThan(totals.received);
    const sf = client.stats().session!.subflows.find((s) => s.id === second)!;
    expect(now.bytesSent - totals.sent).toBeGreaterThanOrEqual(sf.bytesSent);
    expect(sf.bytesSent).toBeLessThan(now.bytesSent);
    expect(client.stats().caps![0]).toMatchObject({ state: 'ok' });
  });
});
