import { afterEach, describe, expect, it } from 'vitest';
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { deriveSecretKeys, ResetCode, type Clock } from '@plait/core';
import { EgressPolicy, PlaitServer } from '@plait/server';
import { echoRoundTrip, settles, sha, waitFor } from './socket-helpers.js';
import { TestClock, track } from './test-clock.js';
import { PlaitClient } from '../src/client.js';
import { DialError } from '../src/dialer.js';
import { startLinkRelay, type LinkRelay } from '@plait/testkit';
import { startEchoServer } from '@plait/testkit';

const secretKeys = deriveSecretKeys('client-test-secret-0123456789');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { relays: number; advertiseRelay?: boolean; graceMs?: number }) {
  const echo = await startEchoServer();
  cleanups.push(() => echo.close());
  const server = new PlaitServer({
    listen: { host: '127.0.0.1', port: 0 },
    secretKeys,
    policy: new EgressPolicy({ allowPrivate: true }),
    graceMs: opts.graceMs ?? 30_000,
  });
  const addr = await server.listen();
  cleanups.push(() => server.close());
  const relays: LinkRelay[] = [];
  for (let i = 0; i < opts.relays; i++) {
    const r = await startLinkRelay({ target: { host: '127.0.0.1', port: addr.port } });
    relays.push(r);
    cleanups.push(() => r.close());
  }
  return { echo, server, relays, port: addr.port };
}

function startClient(
  servers: { host: string; port: number }[],
  graceMs = 30_000,
  vias: string[] = [],
  sources?: { binds: string[]; backups: string[] },
  clock?: Clock,
): PlaitClient {
  const binds = sources?.binds ?? (vias.length > 0 ? [] : ['127.0.0.1']);
  const client = new PlaitClient({ servers, secretKeys, sources: { binds, vias, backups: sources?.backups ?? [] }, graceMs, ...(clock ? { clock } : {}) });
  cleanups.push(() => client.close());
  return client;
}



describe('PlaitClient against a real server', () => {
  it('--via lo: a subflow bound to the interface (SO_BINDTODEVICE), with the kernel view in stats', async () => {
    const env = await setup({ relays: 0 });
    const client = startClient([{ host: '127.0.0.1', port: env.port }], 30_000, ['lo']);
    await client.start();
    const paths = client.stats().paths;
    expect(paths.map((p) => p.local)).toEqual(['127.0.0.1']); // ::1 cannot reach an IPv4 server
    const conn = await client.dial({ host: '127.0.0.1', port: env.echo.port });
    const data = randomBytes(300_000);
    expect(sha(await echoRoundTrip(conn, data))).toBe(sha(data));
    const sub = client.stats().session!.subflows[0]!;
    // Linux with koffi: the kernel's own RTT and congestion window are reported.
    expect(sub.kernel?.cwnd).toBeGreaterThan(0);
    expect(sub.kernel?.rttMs).toBeGreaterThan(0);
    conn.destroy();
  });

  it('opens a subflow to each server address and to addresses the server advertises (ADD_ADDR)', async () => {
    const env = await setup({ relays: 0 });
    // The server's second address is a relay in front of it; reserve the port first.
    const port = await freePort();
    const relay = await startLinkRelay({ target: { host: '127.0.0.1', port } });
    cleanups.push(() => relay.close());
    const server2 = new PlaitServer({
      listen: { host: '127.0.0.1', port },
      secretKeys,
      policy: new EgressPolicy({ allowPrivate: true }),
      advertise: [{ host: '127.0.0.1', port: relay.port }],
    });
    const a2 = await server2.listen();
    cleanups.push(() => server2.close());
    const client = startClient([{ host: '127.0.0.1', port: a2.port }]);
    await client.start();
    await waitFor(() => client.currentSession?.subflowCount === 2, 'a subflow to the advertised address');
    expect(relay.stats.connections).toBe(1);
    const conn = await client.dial({ host: '127.0.0.1', port: env.echo.port });
    const data = randomBytes(1 << 20);
    expect(sha(await echoRoundTrip(conn, data))).toBe(sha(data));
    conn.destroy();
  });

  it('keeps streams through a total outage and resumes them when a subflow rejoins', async () => {
    const env = await setup({ relays: 2 });
    const client = startClient(env.relays.map((r) => ({ host: '127.0.0.1', port: r.port })));
    await client.start();
    await waitFor(() => client.currentSession?.subflowCount === 2, 'both paths joined');
    const conn = await client.dial({ host: '127.0.0.1', port: env.echo.port });
    const first = randomBytes(200_000);
    expect(sha(await echoRoundTrip(conn, first))).toBe(sha(first));
    // Every path dies at once.
    for (const r of env.relays) r.cut('reset');
    await waitFor(() => (client.currentSession?.subflowCount ?? 0) === 0, 'every subflow closed');
    // Data written during the outage waits, then flows once the client rejoins.
    const second = randomBytes(300_000);
    const back = echoRoundTrip(conn, second);
    await waitFor(() => (client.currentSession?.subflowCount ?? 0) > 0, 'a subflow rejoined');
    expect(sha(await back)).toBe(sha(second));
    expect(env.server.sessions().length).toBe(1);
    conn.destroy();
  });

  it('a subflow stuck after an outage is replaced by a fresh connection soon after the link returns', async () => {
    const env = await setup({ relays: 0 });
    const relays: LinkRelay[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await startLinkRelay({ target: { host: '127.0.0.1', port: env.port }, delayMs: 5 });
      relays.push(r);
      cleanups.push(() => r.close());
    }
    const clock = new TestClock();
    const client = startClient(relays.map((r) => ({ host: '127.0.0.1', port: r.port })), 30_000, [], undefined, clock);
    await client.start();
    await clock.settle(() => client.currentSession?.subflowCount === 2, 'both paths joined');
    const conn = await client.dial({ host: '127.0.0.1', port: env.echo.port });
    const onDead = () => client.stats().session!.subflows.filter((s) => s.remote.endsWith(`:${relays[0]!.port}`));
    const stuckId = onDead()[0]!.id;
    // The link dies silently; its old connection never recovers ('drop' leaves a gap, like a TCP stuck in backoff).
    relays[0]!.cut('blackhole');
    const atCut = relays[0]!.stats.connections;
    const during = randomBytes(200_000);
    const back = track(echoRoundTrip(conn, during));
    // Suspected within one retransmission timeout of clock time (maxRtoMs at most), long before deadAfterMs (15 s).
    await clock.advanceUntil(() => onDead()[0]?.state === 'suspect', 3_100, 'the blackholed subflow is suspect');
    // A fresh connection is tried beside the stuck subflow REPLACE_AFTER_MS (500 ms of clock) after it became suspect, not before.
    const toRetry = await clock.advanceUntil(() => relays[0]!.stats.connections > atCut, 1_500, 'a fresh connection tried on the dead link');
    expect(toRetry).toBeGreaterThan(475);
    await clock.advanceUntil(() => back.settled, 5_000, 'the transfer completes on the other path');
    expect(sha(await back.promise)).toBe(sha(during));
    const atRestore = relays[0]!.stats.connections;
    relays[0]!.restore();
    // Back to two working subflows soon after the link returns (replaced, or closed on the gap and rejoined):
    // at most the pending attempt's join timeout (2 s of clock) and a join; real I/O gets 5 ms per 25 ms step.
    await clock.advanceUntil(
      () => client.currentSession!.liveSubflows.filter((s) => s.state === 'active').length === 2 && client.currentSession!.subflowCount === 2,
      2_500,
      'two working subflows again',
      { realMs: 5 },
    );
    expect(onDead().map((s) => s.id)).not.toContain(stuckId);
    const after = randomBytes(200_000);
    expect(sha(await echoRoundTrip(conn, after))).toBe(sha(after));
    conn.destroy();
  });

  it('a backup path carries nothing while the regular one works, takes over when it dies, and hands back', async () => {
    const env = await setup({ relays: 0 });
    // Pin 127.0.0.1 to the regular link and 127.0.0.2 (the backup) to its own link.
    const regular = await startLinkRelay({ target: { host: '127.0.0.1', port: env.port }, delayMs: 5, blackhole: 'hold', allowFrom: '127.0.0.1' });
    const spare = await startLinkRelay({ target: { host: '127.0.0.1', port: env.port }, delayMs: 5, blackhole: 'hold', allowFrom: '127.0.0.2' });
    cleanups.push(() => regular.close(), () => spare.close());
    const clock = new TestClock();
    const client = startClient(
      [
        { host: '127.0.0.1', port: regular.port },
        { host: '127.0.0.1', port: spare.port },
      ],
      30_000,
      [],
      { binds: ['127.0.0.1', '127.0.0.2'], backups: ['127.0.0.2'] },
      clock,
    );
    // Four paths (two sources x two relays); each relay lets one source through, the others are refused and back off.
    await client.start();
    await clock.advanceUntil(() => client.currentSession?.liveSubflows.filter((s) => s.state === 'active').length === 2, 2_000, 'regular and backup subflows up');
    const onRegular = () => client.stats().session!.subflows.find((s) => s.remote.endsWith(`:${regular.port}`));
    const conn = await client.dial({ host: '127.0.0.1', port: env.echo.port });
    const first = randomBytes(1 << 20);
    expect(sha(await echoRoundTrip(conn, first))).toBe(sha(first));
    expect(spare.stats.bytesUp).toBeLessThan(16 * 1024); // handshake and keepalives only
    regular.cut('blackhole');
    const during = randomBytes(1 << 20);
    const back = track(echoRoundTrip(conn, during));
    // The regular subflow is suspected after one retransmission timeout of clock time (at most maxRtoMs, 3 s)...
    await clock.advanceUntil(() => onRegular()?.state === 'suspect', 3_100, 'the regular subflow is suspect');
    // ...and from then on the backup carries the transfer, with no more clock time needed.
    await clock.settle(() => back.settled, 'the transfer completes over the backup');
    expect(sha(await back.promise)).toBe(sha(during));
    expect(spare.stats.bytesUp).toBeGreaterThan(1 << 20);
    regular.restore();
    await clock.advanceUntil(() => client.currentSession?.liveSubflows.every((s) => s.state === 'active') ?? false, 3_000, 'the regular subflow is active again');
    const spareBefore = spare.stats.bytesUp;
    const after = randomBytes(1 << 20);
    expect(sha(await echoRoundTrip(conn, after))).toBe(sha(after));
    expect(spare.stats.bytesUp - spareBefore).toBeLessThan(64 * 1024); // handed back
    conn.destroy();
  });

  it('a refused target gives DialError REFUSED from the server, not from a timer, and does not disturb other streams', async () => {
    const env = await setup({ relays: 0 });
    const clock = new TestClock();
    const client = startClient([{ host: '127.0.0.1', port: env.port }], 30_000, [], undefined, clock);
    await client.start();
    const good = await client.dial({ host: '127.0.0.1', port: env.echo.port });
    const closedPort = await freePort();
    const at = clock.now();
    const err = await settles(
      client.dial({ host: '127.0.0.1', port: closedPort }).then(
        () => undefined,
        (e: unknown) => e,
      ),
      'the dial to a closed port fails',
    );
    expect(err).toBeInstanceOf(DialError);
    expect((err as DialError).code).toBe(ResetCode.REFUSED);
    // The clock never moved: no dial timeout (15 s) could have fired.
    expect(clock.now()).toBe(at);
    const data = randomBytes(100_000);
    expect(sha(await echoRoundTrip(good, data))).toBe(sha(data));
    good.destroy();
  });
});


function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}
