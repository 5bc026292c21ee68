/**
 * Published ports through the real CLI (README "Serving several
 * households"): `plait server --users FILE` and `plait client --user alice
 * --publish P:127.0.0.1:HTTP`, with an HTTP server on the client's side and
 * curl on the server's side fetching a file through server port P. The
 * session has two subflows, each through its own link relay; the busier
 * one is reset mid-transfer and the download still arrives intact. Then a
 * port not in alice's list is refused (logged once), and a SIGHUP that
 * takes P from her list closes its listener.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeFixedPort, startFileServer, startLinkRelay, type FileServer, type LinkRelay } from '@plait/testkit';
import { curl, httpGet, killAll, MiB, parseLogLines, runPlait, sleep, startClient, startCurl, startServer, waitUntil, type ClientHandle, type ServerHandle } from './cli-helpers.js';

const FILE_SIZE = 32 * MiB;
const dir = mkdtempSync(join(tmpdir(), 'plait-publish-'));
const usersFile = join(dir, 'users.yaml');
const aliceSecret = randomBytes(32).toString('base64url');
let identityKey: string;
let serverKey: string;
let fileServer: FileServer;
let server: ServerHandle;
let client: ClientHandle;
let port: number;
let unlisted: number;
const relays: LinkRelay[] = [];

interface PublicationJson {
  port?: number;
  serverPort?: number;
  user?: string;
  state: string;
  code?: string;
  connections: number;
  connectionsTotal: number;
  bytesIn: number;
  bytesOut: number;
}
const publications = async (h: { stats(): Promise<unknown> }): Promise<PublicationJson[]> => ((await h.stats()) as { publications?: PublicationJson[] }).publications ?? [];

function writeUsers(publish: number[]): void {
  writeFileSync(usersFile, `identity-key: ${identityKey}\nusers:\n  - name: alice\n    secret: ${aliceSecret}\n    publish: [${publish.join(', ')}]\n`, { mode: 0o600 });
}

beforeAll(async () => {
  const kg = await runPlait(['keygen', '--identity']);
  expect(kg.code).toBe(0);
  identityKey = /identity-key: (\S+)/.exec(kg.stdout)![1]!;
  serverKey = /server-key: (\S+)/.exec(kg.stdout)![1]!;
  // Named in the users file before the server binds them: below the ephemeral range, so no outgoing connection takes one meanwhile.
  port = await freeFixedPort();
  do unlisted = await freeFixedPort();
  while (unlisted === port);
  writeUsers([port]);
  // The "LAN host" on the client's side.
  fileServer = await startFileServer({ size: FILE_SIZE });
  server = await startServer({ secret: randomBytes(32).toString('base64url'), extraArgs: ['--users', usersFile, '--publish-bind', '127.0.0.1'] });
  const r1 = await startLinkRelay({ target: { host: '127.0.0.1', port: server.port } });
  const r2 = await startLinkRelay({ target: { host: '127.0.0.1', port: server.port } });
  relays.push(r1, r2);
  client = await startClient({
    secret: aliceSecret,
    servers: [`127.0.0.1:${r1.port}`, `127.0.0.1:${r2.port}`],
    binds: ['127.0.0.1'],
    socks: false,
    waitSubflows: 2,
    extraArgs: ['--user', 'alice', '--server-key', serverKey, '--publish', `${port}:127.0.0.1:${fileServer.port}`, '--publish', `${unlisted}:127.0.0.1:${fileServer.port}`],
  });
  await waitUntil('the port published', async () => (await publications(client)).find((p) => p.serverPort === port)?.state === 'open' || undefined);
}, 60_000);

afterAll(async () => {
  await killAll();
  for (const r of relays) await r.close();
  await fileServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('plait client --publish through the real CLI', () => {
  it('curl on the server side fetches a file from the client side intact while the busier subflow is reset mid-transfer', async () => {
    const [r1, r2] = relays as [LinkRelay, LinkRelay];
    const run = startCurl(['-sS', '--fail', '--max-time', '55', `http://127.0.0.1:${port}/file`], 60_000);
    // The file goes up the session (client -> server): cut after about a quarter of it.
    const t0 = Date.now();
    while (r1.stats.bytesUp + r2.stats.bytesUp < FILE_SIZE / 4) {
      if (run.proc.exited) break;
      if (Date.now() - t0 > 30_000) throw new Error(`no progress: ${r1.stats.bytesUp + r2.stats.bytesUp} bytes up after 30 s\n${client.proc.dump()}`);
      await sleep(2);
    }
    expect(run.proc.exited, 'curl still running when the link is cut (the cut must happen mid-transfer)').toBe(false);
    const [victim, survivor] = r1.stats.bytesUp >= r2.stats.bytesUp ? [r1, r2] : [r2, r1];
    const totalAtCut = r1.stats.bytesUp + r2.stats.bytesUp;
    const survivorBefore = survivor.stats.bytesUp;
    expect(victim.stats.bytesUp, 'both subflows carried the file (striped)').toBeGreaterThan(0);
    victim.cut('reset');

    const res = await run.done;
    const logs = `${client.proc.dump()}\n${server.proc.dump()}`;
    expect(res.code, `curl exit ${res.code}: ${res.stderr}\n${logs}`).toBe(0);
    expect(res.bytes, logs).toBe(FILE_SIZE);
    expect(res.sha256).toBe(fileServer.sha256);
    expect(totalAtCut).toBeLessThan(FILE_SIZE * 0.75);
    expect(survivor.stats.bytesUp - survivorBefore, 'the surviving link carried the rest').toBeGreaterThan(FILE_SIZE / 4);
    const st = await client.stats();
    expect((st.counters as Record<string, number>).sessions, 'the session survived the cut: no new one').toBe(1);

    // Both sides count the connection and its bytes (out: from the client's side to curl).
    const mine = await waitUntil('client figures', async () => (await publications(client)).find((p) => p.serverPort === port && p.connectionsTotal === 1 && p.connections === 0));
    expect(mine.bytesOut).toBeGreaterThanOrEqual(FILE_SIZE);
    const theirs = await waitUntil('server figures', async () => (await publications(server)).find((p) => p.port === port && p.connectionsTotal === 1 && p.connections === 0));
    expect(theirs).toMatchObject({ user: 'alice', state: 'open' });
    expect(theirs.bytesOut).toBeGreaterThanOrEqual(FILE_SIZE);
    const metrics = await httpGet(`http://127.0.0.1:${server.statsPort}/metrics`);
    expect(metrics.body).toMatch(new RegExp(`plait_publication_connections_total\\{port="${port}",user="alice",session="[0-9a-f]{8}"\\} 1`));
    expect(metrics.body).toMatch(new RegExp(`plait_publication_bytes_total\\{port="${port}",user="alice",session="[0-9a-f]{8}",direction="out"\\} \\d{8,}`));
  }, 70_000);

  it('a port not in the user\'s list is refused, logged once, and nothing listens there', async () => {
    const pub = (await publications(client)).find((p) => p.serverPort === unlisted);
    expect(pub).toMatchObject({ state: 'refused', code: 'NOT_ALLOWED' });
    const warned = parseLogLines(client.proc.stderr()).filter((l) => String(l.msg).includes(`server port ${unlisted} not published`));
    expect(warned).toHaveLength(1);
    const r = await curl(['-sS', '--max-time', '5', `http://127.0.0.1:${unlisted}/file`], 10_000);
    expect(r.code).toBe(7); // curl: could not connect
    expect(client.proc.exited).toBe(false);
  }, 30_000);

  it('SIGHUP after taking the port from the user closes its listener; the session stays', async () => {
    writeUsers([]);
    server.proc.child.kill('SIGHUP');
    await waitUntil('withdrawn on the client', async () => (await publications(client)).find((p) => p.serverPort === port)?.code === 'NOT_ALLOWED' || undefined);
    const r = await curl(['-sS', '--max-time', '5', `http://127.0.0.1:${port}/file`], 10_000);
    expect(r.code).toBe(7);
    expect(server.logLines().some((l) => l.msg === 'published port withdrawn: no longer allowed')).toBe(true);
    expect((await client.stats()).sessions).toHaveLength(1);
  }, 30_000);
});
