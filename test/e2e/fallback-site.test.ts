/**
 * A second site (plait client --fallback-server), through the real CLI with two servers on
 * loopback: the primary dies mid-download, new streams go to the fallback, the lost session's
 * streams end (not after the 30 s outage grace), and the client returns to the primary once it
 * is back and has worked for --failback-after. Real time, but only bounded waits for conditions.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFileServer, type FileServer } from '@plait/testkit';
import { killAll, MiB, startClient, startCurl, startServer, waitUntil, type ClientHandle, type ServerHandle } from './cli-helpers.js';

let fileServer: FileServer;
let primary: ServerHandle;
let fallback: ServerHandle;
const secret = randomBytes(32).toString('base64url');

beforeAll(async () => {
  fileServer = await startFileServer({ size: 8 * MiB });
  primary = await startServer({ secret, allowPrivate: true });
  fallback = await startServer({ secret, allowPrivate: true });
}, 60_000);

afterAll(async () => {
  await killAll();
  await fileServer?.close();
});

function download(c: ClientHandle, extra: string[] = []): ReturnType<typeof startCurl> {
  return startCurl(['-sS', '--fail', '--max-time', '50', ...extra, '--socks5-hostname', `127.0.0.1:${c.socksPort}`, fileServer.url], 55_000);
}

const streamsOpened = async (s: ServerHandle): Promise<number> => (await s.stats()).counters.streamsOpened ?? 0;
const logSays = (c: ClientHandle, re: RegExp): boolean => c.logLines().some((l) => re.test(String(l.msg)));

describe('plait client --fallback-server', () => {
  it('fails over when the primary dies, ends the lost streams with the reason, and returns when the primary is back', async () => {
    const client = await startClient({
      secret,
      servers: [primary.addr],
      extraArgs: ['--fallback-server', fallback.addr, '--failover-after', '1', '--failback-after', '2'],
      waitSubflows: 1,
    });
    expect((await primary.stats()).sessions).toHaveLength(1);
    expect((await fallback.stats()).sessions).toHaveLength(0);

    // A slow download on the primary, in progress when it dies.
    const slow = download(client, ['--limit-rate', '1M']);
    await waitUntil('the download to start on the primary', async () => ((await primary.stats()).sessions[0]?.openStreams ?? 0) >= 1);
    primary.proc.child.kill('SIGKILL');
    await primary.proc.waitExit(10_000);

    // Its stream ends with the failover (well before the 30 s outage grace would have ended it).
    const cut = await slow.done;
    expect(cut.code).not.toBe(0);
    await waitUntil('the client to log the failover', () => logSays(client, /new streams go to fallback 1/));
    expect(logSays(client, /failed over from primary/) || logSays(client, /session closed: .*failed over/)).toBe(true);

    // New streams go to the fallback.
    const viaFallback = await download(client).done;
    expect(viaFallback.code, viaFallback.stderr).toBe(0);
    expect(viaFallback.sha256).toBe(fileServer.sha256);
    expect(await streamsOpened(fallback)).toBeGreaterThanOrEqual(1);

    // The primary comes back on its address: after --failback-after the client returns.
    const restarted = await startServer({ secret, allowPrivate: true, extraArgs: ['--listen', primary.addr] });
    await waitUntil('the client to return to the primary', () => logSays(client, /new streams go back to it/), 30_000, 100);
    const back = await download(client).done;
    expect(back.code, back.stderr).toBe(0);
    expect(back.sha256).toBe(fileServer.sha256);
    expect(await streamsOpened(restarted)).toBeGreaterThanOrEqual(1);
    // The fallback session is closed once its streams are done.
    await waitUntil('the fallback session to close', async () => (await fallback.stats()).sessions.length === 0, 15_000, 100);
  }, 90_000);
});
