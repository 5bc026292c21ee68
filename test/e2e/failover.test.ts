/**
 * Losing one subflow mid-transfer. Each subflow goes through its own link
 * relay (@plait/testkit link-relay): the client is given two server
 * addresses, `--server 127.0.0.1:RELAY1 --server 127.0.0.1:RELAY2`, with
 * one `--bind 127.0.0.1`, so the fullmesh plan (planPaths) is two paths.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startFileServer, type FileServer } from '@plait/testkit';
import { startLinkRelay, type CutMode, type LinkRelay } from '@plait/testkit';
import { killAll, MiB, sleep, startClient, startCurl, startServer, type ServerHandle } from './cli-helpers.js';

const FILE_SIZE = 64 * MiB;

let fileServer: FileServer;
let server: ServerHandle;
let secret: string;
const relays: LinkRelay[] = [];

beforeAll(async () => {
  secret = randomBytes(32).toString('base64url');
  fileServer = await startFileServer({ size: FILE_SIZE });
  server = await startServer({ secret, allowPrivate: true });
}, 60_000);

afterEach(async () => {
  // Each test kills its own client (finally); the relays go here; the server is shared.
  for (const r of relays.splice(0)) await r.close();
});

afterAll(async () => {
  await killAll();
  await fileServer?.close();
});

async function downloadWhileCutting(mode: CutMode): Promise<void> {
  // Rate-limited links: the transfer takes seconds whatever the machine's load,
  // so the cut surely lands mid-transfer (unlimited loopback can finish 64 MiB
  // between two polls of a busy test process).
  const link = { target: { host: '127.0.0.1', port: server.port }, rateBitsPerSec: 200e6 };
  const r1 = await startLinkRelay(link);
  const r2 = await startLinkRelay(link);
  relays.push(r1, r2);
  const client = await startClient({
    secret,
    servers: [`127.0.0.1:${r1.port}`, `127.0.0.1:${r2.port}`],
    binds: ['127.0.0.1'],
    waitSubflows: 2,
  });
  try {
    const st = await client.stats();
    expect(st.sessions[0]!.subflows.map((s) => s.remote.split(':')[1]).sort()).toEqual([String(r1.port), String(r2.port)].sort());
    expect(r1.stats.active + r2.stats.active).toBeGreaterThanOrEqual(2);

    const run = startCurl(['-sS', '--fail', '--max-time', '55', '--socks5-hostname', `127.0.0.1:${client.socksPort}`, fileServer.url], 60_000);
    // Cut after ~1/4 of the file has gone down the two links.
    const quarter = FILE_SIZE / 4;
    const t0 = Date.now();
    while (r1.stats.bytesDown + r2.stats.bytesDown < quarter) {
      if (run.proc.exited) break;
      if (Date.now() - t0 > 30_000) throw new Error(`no progress: ${r1.stats.bytesDown + r2.stats.bytesDown} bytes down after 30 s\n${client.proc.dump()}`);
      await sleep(2);
    }
    expect(run.proc.exited, 'curl still running when the link is cut (the cut must happen mid-transfer)').toBe(false);
    // Cut the busier link, so the cut really hurts.
    const [victim, survivor] = r1.stats.bytesDown >= r2.stats.bytesDown ? [r1, r2] : [r2, r1];
    const victimBefore = victim.stats.bytesDown;
    const survivorBefore = survivor.stats.bytesDown;
    const totalAtCut = victimBefore + survivorBefore;
    expect(victimBefore).toBeGreaterThan(0);
    victim.cut(mode);

    const res = await run.done;
    const logs = `${client.proc.dump()}\n${server.proc.dump()}`;
    expect(res.code, `curl exit ${res.code}: ${res.stderr}\n${logs}`).toBe(0);
    expect(res.bytes, logs).toBe(FILE_SIZE);
    expect(res.sha256).toBe(fileServer.sha256);
    // The cut happened mid-transfer (not after it was practically done) and the rest went over the survivor.
    expect(totalAtCut).toBeLessThan(FILE_SIZE * 0.75);
    expect(survivor.stats.bytesDown - survivorBefore, 'the surviving link carried the rest').toBeGreaterThan(FILE_SIZE / 4);

    const after = await client.stats();
    const sess = after.sessions[0];
    expect(sess, 'the session survived the cut').toBeDefined();
    expect(after.counters.sessions, 'no new session was needed').toBe(1);
    // The dead subflow was noticed (closed on RST; suspect, then closed, on
    // silence): by the server, which sends the download and so must, and
    // maybe by the client too (it sends only window updates, which may all
    // have gone the other way before the download ended).
    const c = sess!.counters;
    const srv = (await server.stats()).sessions.find((x) => x.token === sess!.token);
    const sc = srv?.counters ?? {};
    const noticed = (c.subflowsClosed ?? 0) + (c.subflowsSuspected ?? 0) + (sc.subflowsClosed ?? 0) + (sc.subflowsSuspected ?? 0);
    expect(noticed, `client ${JSON.stringify(c)} server ${JSON.stringify(sc)}`).toBeGreaterThanOrEqual(1);
  } finally {
    await client.proc.kill();
  }
}

describe('a subflow dies mid-download (64 MiB via SOCKS, two relayed subflows)', () => {
  it("cut('reset'): the download completes intact", async () => {
    await downloadWhileCutting('reset');
  }, 70_000);

  it("cut('blackhole') (silent death): the download completes intact", async () => {
    await downloadWhileCutting('blackhole');
  }, 70_000);
});
