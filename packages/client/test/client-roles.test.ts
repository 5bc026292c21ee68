import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { deriveSecretKeys } from '@plait/core';
import { EgressPolicy, PlaitServer } from '@plait/server';
import { startEchoServer } from '@plait/testkit';
import { echoRoundTrip, sha, waitFor } from './socket-helpers.js';
import { PlaitClient } from '../src/client.js';

const secretKeys = deriveSecretKeys('client-roles-test-secret-0123456789');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup() {
  const echo = await startEchoServer();
  cleanups.push(() => echo.close());
  const server = new PlaitServer({ listen: { host: '127.0.0.1', port: 0 }, secretKeys, policy: new EgressPolicy({ allowPrivate: true }) });
  const addr = await server.listen();
  cleanups.push(() => server.close());
  /** The server's view of each subflow: id -> role. */
  const serverRoles = (): Record<number, string> =>
    Object.fromEntries((server.sessions()[0]?.stats().subflows ?? []).filter((s) => s.state === 'active').map((s) => [s.id, s.role]));
  return { echo, server, port: addr.port, serverRoles };
}

describe('path roles at runtime (real sockets)', () => {
  it('setSubflowRole changes the role here and at the server; the path keeps it; an unknown id changes nothing', async () => {
    const env = await setup();
    const client = new PlaitClient({ servers: [{ host: '127.0.0.1', port: env.port }], secretKeys, sources: { binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: [] } });
    cleanups.push(() => client.close());
    await client.start();
    await waitFor(() => Object.keys(env.serverRoles()).length === 2 && client.stats().paths.every((p) => p.subflow !== undefined), 'two subflows up');
    const path = client.stats().paths.find((p) => p.local === '127.0.0.2')!;
    expect(path.role).toBe('regular');
    expect(client.setSubflowRole(path.subflow!, 'overflow')).toBe(path.key);
    await waitFor(() => env.serverRoles()[path.subflow!] === 'overflow', 'the server learns overflow');
    expect(client.stats().paths.find((p) => p.key === path.key)!.role).toBe('overflow');
    expect(client.stats().session!.subflows.find((s) => s.id === path.subflow)!.role).toBe('overflow');
    expect(client.setSubflowRole(path.subflow!, 'backup')).toBe(path.key);
    await waitFor(() => env.serverRoles()[path.subflow!] === 'backup', 'the server learns backup');
    expect(client.setSubflowRole(9999, 'regular')).toBeUndefined();
    // The server may change it too (prio the other way): the path takes it.
    const serverSession = env.server.sessions()[0]!;
    serverSession.setSubflowRole(serverSession.liveSubflows.find((s) => s.id === path.subflow)!, 'overflow');
    await waitFor(() => client.stats().paths.find((p) => p.key === path.key)!.role === 'overflow', 'the path follows the server');
    const conn = await client.dial({ host: '127.0.0.1', port: env.echo.port });
    const data = randomBytes(200_000);
    expect(sha(await echoRoundTrip(conn, data))).toBe(sha(data));
    conn.destroy();
  });

  it('reconfigure adds a path, removes one and changes a role, while a stream goes on', async () => {
    const env = await setup();
    const client = new PlaitClient({ servers: [{ host: '127.0.0.1', port: env.port }], secretKeys, sources: { binds: ['127.0.0.1'], vias: [], backups: [] } });
    cleanups.push(() => client.close());
    await client.start();
    const conn = await client.dial({ host: '127.0.0.1', port: env.echo.port });
    const one = randomBytes(100_000);
    expect(sha(await echoRoundTrip(conn, one))).toBe(sha(one));

    // Add 127.0.0.2 as a backup path: it joins as backup.
    client.reconfigure({ binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: ['127.0.0.2'] });
    await waitFor(() => Object.values(env.serverRoles()).sort().join() === 'backup,regular', 'the backup path joins');
    const two = randomBytes(100_000);
    expect(sha(await echoRoundTrip(conn, two))).toBe(sha(two));

    // Drop 127.0.0.1 and make 127.0.0.2 overflow (the only path left: it carries the stream).
    client.reconfigure({ binds: ['127.0.0.2'], vias: [], backups: [], overflows: ['127.0.0.2'] });
    await waitFor(() => Object.values(env.serverRoles()).join() === 'overflow', 'one overflow subflow left at the server');
    expect(client.stats().paths.map((p) => [p.local, p.role])).toEqual([['127.0.0.2', 'overflow']]);
    const three = randomBytes(300_000);
    expect(sha(await echoRoundTrip(conn, three))).toBe(sha(three));
    conn.destroy();
  });

  it('a role set at runtime stays when a reload does not change what the sources say about that path', async () => {
    const env = await setup();
    const client = new PlaitClient({ servers: [{ host: '127.0.0.1', port: env.port }], secretKeys, sources: { binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: [] } });
    cleanups.push(() => client.close());
    await client.start();
    await waitFor(() => Object.keys(env.serverRoles()).length === 2 && client.stats().paths.every((p) => p.subflow !== undefined), 'two subflows up');
    const p2 = client.stats().paths.find((p) => p.local === '127.0.0.2')!;
    client.setSubflowRole(p2.subflow!, 'backup');
    client.reconfigure({ binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: [] });
    expect(client.stats().paths.find((p) => p.local === '127.0.0.2')!.role).toBe('backup');
    // The file now names it overflow: that is a change, and it applies.
    client.reconfigure({ binds: ['127.0.0.1', '127.0.0.2'], vias: [], backups: [], overflows: ['127.0.0.2'] });
    expect(client.stats().paths.find((p) => p.local === '127.0.0.2')!.role).toBe('overflow');
    await waitFor(() => env.serverRoles()[p2.subflow!] === 'overflow', 'the server follows');
  });
});
