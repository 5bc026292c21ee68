/**
 * `plait server` on SIGTERM drains (issue 11 item 3), through the real CLI on loopback: new
 * sessions are refused with a proven DRAINING, a live session keeps working (and adding
 * subflows) for --drain-grace, then is ended with DRAINING and the server exits; a second
 * SIGTERM stops it at once. The balancer side (the retry landing elsewhere) is in
 * test/system/scale-out.system.ts. Only bounded waits for conditions, no timing assertions.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFileServer, type FileServer } from '@plait/testkit';
import { killAll, MiB, spawnPlait, startClient, startCurl, startServer, waitUntil, type ClientHandle } from './cli-helpers.js';

let fileServer: FileServer;
const secret = randomBytes(32).toString('base64url');

beforeAll(async () => {
  fileServer = await startFileServer({ size: 2 * MiB });
}, 30_000);

afterAll(async () => {
  await killAll();
  await fileServer?.close();
});

const get = (c: ClientHandle): ReturnType<typeof startCurl> =>
  startCurl(['-sS', '--fail', '--max-time', '20', '--socks5-hostname', `127.0.0.1:${c.socksPort}`, fileServer.url], 25_000);

describe('plait server draining on SIGTERM', () => {
  it('refuses new sessions with DRAINING, serves the live one through the grace, then ends it with DRAINING and exits', async () => {
    const server = await startServer({ secret, allowPrivate: true, extraArgs: ['--drain-grace', '3'] });
    const client = await startClient({ secret, servers: [server.addr], binds: ['127.0.0.1', '127.0.0.2'], waitSubflows: 2 });
    server.proc.child.kill('SIGTERM');
    await waitUntil('the server to say it drains', () => server.logLines().some((l) => String(l.msg).startsWith('draining')));

    // A new client is refused, with the proven reason.
    const late = spawnPlait(['client', '--secret', secret, '--server', server.addr, '--socks', '127.0.0.1:0'], { name: 'late client' });
    await waitUntil('the new client to be refused with DRAINING', () => /shutting down \(draining\)/.test(late.stderr()));
    expect((await server.stats()).sessions).toHaveLength(1);

    // The live session still works during the grace.
    const r = await get(client).done;
    expect(r.code, r.stderr).toBe(0);
    expect(r.sha256).toBe(fileServer.sha256);

    // After the grace: the session ends with DRAINING, the client says so, the server exits 0.
    const exit = await server.proc.waitExit(20_000);
    expect(exit.code).toBe(0);
    await waitUntil('the client to see the DRAINING close', () => client.logLines().some((l) => /DRAINING/.test(String(l.msg))));
    expect(server.logLines().some((l) => String(l.msg).startsWith('drain grace over'))).toBe(true);
  }, 60_000);

  it('a second SIGTERM stops a draining server at once', async () => {
    const server = await startServer({ secret, allowPrivate: true, extraArgs: ['--drain-grace', '600'] });
    await startClient({ secret, servers: [server.addr], waitSubflows: 1 });
    server.proc.child.kill('SIGTERM');
    await waitUntil('the server to say it drains', () => server.logLines().some((l) => String(l.msg).startsWith('draining')));
    expect(server.proc.exited).toBe(false);
    server.proc.child.kill('SIGTERM');
    const exit = await server.proc.waitExit(10_000);
    expect(exit.code).toBe(0);
  }, 60_000);
});
