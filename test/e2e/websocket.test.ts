/**
 * WebSocket subflows through the real CLI on loopback: a server listening on
 * TCP and ws:// at once, a client mixing TCP and WebSocket subflows in one
 * session, wss:// through a TLS terminator with a test CA (--ca), and the
 * flags' usage errors.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFileServer, startTlsTerminator, TEST_ONLY_TLS_DIR, testOnlyTls, type FileServer, type TlsTerminator } from '@plait/testkit';
import { curl, startCurl, freePort, getStats, killAll, MiB, runPlait, spawnPlait, startClient, startServer, waitUntil, type ServerHandle } from './cli-helpers.js';

const FILE_SIZE = 8 * MiB;
let fileServer: FileServer;
let server: ServerHandle;
let terminator: TlsTerminator;
const secret = randomBytes(32).toString('base64url');

beforeAll(async () => {
  fileServer = await startFileServer({ size: FILE_SIZE });
  server = await startServer({ secret, allowPrivate: true, wsPath: '/plait' });
  expect(server.wsPort).toBeGreaterThan(0);
  terminator = await startTlsTerminator(server.wsPort!);
}, 60_000);

/** Each test's own processes (the server is shared and stays up). */
const mine: { kill(): Promise<unknown> }[] = [];
afterEach(async () => {
  await Promise.all(mine.splice(0).map((p) => p.kill()));
});

afterAll(async () => {
  await killAll();
  await terminator?.close();
  await fileServer?.close();
});

/** Bytes each subflow of the client's session received, by its remote. */
async function bytesByRemote(stats: () => Promise<{ sessions: { subflows: { remote: string; bytesReceived: number }[] }[] }>) {
  const st = await stats();
  return st.sessions[0]!.subflows.map((s) => ({ remote: s.remote, received: s.bytesReceived }));
}

describe('WebSocket subflows', () => {
  it('TCP and ws:// subflows mix in one session: a download arrives intact over both kinds', async () => {
    const ws = `ws://127.0.0.1:${server.wsPort}/plait`;
    const client = await startClient({ secret, servers: [ws, server.addr], binds: ['127.0.0.1', '127.0.0.2'] });
    mine.push(client.proc);
    const res = await curl(['-sS', '--fail', '--max-time', '50', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fileServer.url], 55_000);
    expect(res.code, `curl failed: ${res.stderr}\n${client.proc.dump()}`).toBe(0);
    expect(res.sha256).toBe(fileServer.sha256);
    const subflows = await bytesByRemote(client.stats);
    expect(subflows.map((s) => s.remote).sort()).toEqual([server.addr, server.addr, ws, ws].sort());
    // Every subflow carried records (at least its acks and pings); the WebSocket ones carried payload.
    const wsBytes = subflows.filter((s) => s.remote === ws).reduce((a, s) => a + s.received, 0);
    expect(wsBytes).toBeGreaterThan(64 * 1024);
    const paths = (await client.stats()).paths as { key: string; state: string }[];
    expect(paths.filter((p) => p.key.endsWith(`>${ws}`)).map((p) => p.state)).toEqual(['up', 'up']);
  }, 90_000);

  it('wss:// through a TLS-terminating proxy with --ca: two paths, the file intact', async () => {
    const wss = `wss://127.0.0.1:${terminator.port}/plait`;
    const client = await startClient({ secret, servers: [wss], binds: ['127.0.0.1', '127.0.0.2'], extraArgs: ['--ca', testOnlyTls().caPath] });
    mine.push(client.proc);
    const res = await curl(['-sS', '--fail', '--max-time', '50', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fileServer.url], 55_000);
    expect(res.code, `curl failed: ${res.stderr}\n${client.proc.dump()}`).toBe(0);
    expect(res.sha256).toBe(fileServer.sha256);
    const subflows = await bytesByRemote(client.stats);
    expect(subflows).toHaveLength(2);
    for (const s of subflows) expect(s.remote).toBe(wss);
  }, 90_000);

  it('wss:// without --ca refuses the private certificate and says so', async () => {
    const wss = `wss://127.0.0.1:${terminator.port}/plait`;
    const [statsPort, socksPort] = [await freePort(), await freePort()];
    const proc = spawnPlait(['client', '--secret', secret, '--server', wss, '--socks', `127.0.0.1:${socksPort}`, '--stats', `127.0.0.1:${statsPort}`]);
    mine.push(proc);
    const path = await waitUntil('the path to report its TLS problem', async () => {
      const p = ((await getStats(statsPort)).paths as { problem?: string; lastError?: string }[])[0];
      return p?.problem ? p : undefined;
    });
    expect(path.problem, proc.dump()).toBe('tls-untrusted');
    expect(path.lastError).toMatch(/--ca FILE/);
    expect((await getStats(statsPort)).sessions).toHaveLength(0);
    const res = await curl(['-sS', '--max-time', '5', '--socks5-hostname', `127.0.0.1:${socksPort}`, fileServer.url], 10_000);
    expect(res.code).not.toBe(0);
    expect(proc.stderr()).toMatch(/self[- ]signed|unable to (get|verify)/i);
  }, 60_000);
});

describe('WebSocket subflow failure', () => {
  it('the proxy in front dies mid-download: the TCP subflow finishes it, nothing lost', async () => {
    const own = await startTlsTerminator(server.wsPort!);
    const wss = `wss://127.0.0.1:${own.port}/plait`;
    // Larger than what the client may buffer ahead of curl (its stream window), so the cut lands mid-file.
    const BIG = 48 * MiB;
    const big = await startFileServer({ size: BIG });
    try {
      const client = await startClient({ secret, servers: [wss, server.addr], binds: ['127.0.0.1'], extraArgs: ['--ca', testOnlyTls().caPath] });
      mine.push(client.proc);
      // Slow enough (about 3 s) that the proxy dies while bytes are in flight on both subflows.
      const run = startCurl(['-sS', '--fail', '--max-time', '50', '--limit-rate', '16M', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, big.url], 55_000);
      const received = async (): Promise<number> => (await client.stats()).sessions[0]!.subflows.reduce((a, s) => a + s.bytesReceived, 0);
      await waitUntil('the download to be under way', async () => (await received()) > 2 * MiB);
      await own.close(); // every wss:// connection cut at once, as a proxy restart does
      expect(await received(), 'the cut came before the whole file had crossed').toBeLessThan(BIG);
      const res = await run.done;
      expect(res.code, `curl failed: ${res.stderr}\n${client.proc.dump()}`).toBe(0);
      expect(res.sha256).toBe(big.sha256);
      const paths = (await client.stats()).paths as { key: string; state: string }[];
      expect(paths.find((p) => p.key.endsWith(`>${wss}`))?.state).not.toBe('up');
    } finally {
      await own.close();
      await big.close();
    }
  }, 90_000);
});

describe('WebSocket flags', () => {
  const usage = async (args: string[]): Promise<string> => {
    const r = await runPlait(args);
    expect(r.code, r.stderr).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    return lines[0]!;
  };

  it('usage errors name the flag, one line, exit 2', async () => {
    expect(await usage(['server', '--secret', secret])).toMatch(/^plait: --listen: give at least one/);
    expect(await usage(['server', '--secret', secret, '--listen', 'wss://127.0.0.1:0/plait'])).toMatch(/^plait: --listen: .*ws:\/\/ only.*reverse proxy/);
    expect(await usage(['server', '--secret', secret, '--listen', 'http://127.0.0.1:0/plait'])).toMatch(/^plait: --listen: .*use ws:\/\//);
    expect(await usage(['server', '--secret', secret, '--listen', 'ws://user:pw@127.0.0.1:0/plait'])).toMatch(/^plait: --listen: .*no user or password/);
    expect(await usage(['client', '--secret', secret, '--socks', '0', '--server', 'ftp://h/x'])).toMatch(/^plait: --server: .*use ws:\/\/ or wss:\/\//);
    expect(await usage(['client', '--secret', secret, '--socks', '0', '--server', 'ws://h:1/x', '--ca', testOnlyTls().caPath])).toMatch(
      /^plait: --ca: only wss:\/\/ servers use a CA/,
    );
    expect(await usage(['client', '--secret', secret, '--socks', '0', '--server', 'wss://h/x', '--ca', '/nonexistent/ca.pem'])).toMatch(/^plait: --ca: cannot read/);
    expect(await usage(['client', '--secret', secret, '--socks', '0', '--server', 'wss://h/x', '--ca', `${TEST_ONLY_TLS_DIR}README.md`])).toMatch(
      /^plait: --ca: .*no PEM certificate/,
    );
  });

  it('a busy ws:// listen address is a usage error naming it', async () => {
    const r = await runPlait(['server', '--secret', secret, '--listen', '127.0.0.1:0', '--listen', `ws://127.0.0.1:${server.wsPort}/plait`]);
    expect(r.code, r.stderr).toBe(2);
    // One usage line (besides log lines such as the --secret warning, which the logger may write in either order).
    const usageLines = r.stderr.split('\n').filter((l) => l.startsWith('plait: '));
    expect(usageLines).toEqual([`plait: --listen: 127.0.0.1:${server.wsPort} is already in use`]);
  });
});
