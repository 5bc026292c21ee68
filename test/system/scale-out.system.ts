/**
 * Scale-out through a real HAProxy (issue 11 item 4): deploy/haproxy.cfg as shipped, three
 * `plait server --instance-id N` on loopback, a dozen clients with two subflows each (from
 * 127.0.0.1 and 127.0.0.2) through the balancer's one address. Needs Debian's haproxy, so it
 * runs in `npm run test:system` (test/system/run.sh), not in `npm test`.
 *
 * Checked through every instance's /stats and every client's /stats:
 *   - every session's two subflows are on one instance, and sessions are spread over several;
 *   - SIGKILL of one instance: transfers in progress on the others complete intact and their
 *     sessions keep their token; the orphaned clients get a new session on a live instance and
 *     serve a download again, within a bounded wait;
 *   - SIGTERM (drain) of another: a new client is sent to a live instance at once (proven
 *     DRAINING, retried through the balancer), the drained instance's clients move after its
 *     grace, and it exits.
 * No wall-clock assertions: only bounded waits for conditions.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFileServer, type FileServer } from '@plait/testkit';
import {
  freePort,
  killAll,
  MiB,
  REPO_ROOT,
  startClient,
  startCurl,
  startServer,
  waitUntil,
  type ClientHandle,
  type ServerHandle,
} from '../e2e/cli-helpers.js';

const CLIENTS = 12;
const secret = randomBytes(32).toString('base64url');

interface Node {
  id: number;
  server: ServerHandle;
}

let fileServer: FileServer;
let nodes: Node[] = [];
let lbPort = 0;
let haproxy: { child: ReturnType<typeof spawn>; out: () => string } | undefined;
const clients: ClientHandle[] = [];

async function startNode(id: number): Promise<Node> {
  const server = await startServer({ secret, allowPrivate: true, extraArgs: ['--instance-id', String(id), '--drain-grace', '4'] });
  return { id, server };
}

async function startHaproxy(): Promise<void> {
  lbPort = await freePort();
  const env = {
    ...process.env,
    PLAIT_LB_BIND: `127.0.0.1:${lbPort}`,
    PLAIT_NODE1: nodes[0]!.server.addr,
    PLAIT_NODE2: nodes[1]!.server.addr,
    PLAIT_NODE3: nodes[2]!.server.addr,
  };
  let out = '';
  const child = spawn('haproxy', ['-db', '-f', `${REPO_ROOT}/deploy/haproxy.cfg`], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  haproxy = { child, out: () => out };
  await waitUntil('haproxy to listen', async () => {
    if (child.exitCode !== null) throw new Error(`haproxy exited: ${out}`);
    const net = await import('node:net');
    return new Promise<boolean>((res) => {
      const s = net.connect(lbPort, '127.0.0.1', () => {
        s.destroy();
        res(true);
      });
      s.on('error', () => res(false));
    });
  });
}

/** The token of a client's current session, if any. */
async function tokenOf(c: ClientHandle): Promise<string | undefined> {
  const st = await c.stats();
  const s = st.sessions[0];
  return s && s.subflows.filter((f) => f.state === 'active').length >= 2 ? s.token : undefined;
}

/** Which node holds each session token, with its subflow count there. */
async function placement(live: Node[]): Promise<Map<string, { node: number; subflows: number }[]>> {
  const m = new Map<string, { node: number; subflows: number }[]>();
  for (const n of live) {
    for (const s of (await n.server.stats()).sessions) {
      const list = m.get(s.token) ?? [];
      list.push({ node: n.id, subflows: s.subflows.length });
      m.set(s.token, list);
    }
  }
  return m;
}

function download(c: ClientHandle, extra: string[] = []): ReturnType<typeof startCurl> {
  return startCurl(['-sS', '--fail', '--max-time', '110', ...extra, '--socks5-hostname', `127.0.0.1:${c.socksPort}`, fileServer.url], 120_000);
}

beforeAll(async () => {
  fileServer = await startFileServer({ size: 16 * MiB });
  nodes = [await startNode(1), await startNode(2), await startNode(3)];
  await startHaproxy();
  for (let i = 0; i < CLIENTS; i++) {
    clients.push(await startClient({ secret, servers: [`127.0.0.1:${lbPort}`], binds: ['127.0.0.1', '127.0.0.2'], waitSubflows: 2 }));
  }
}, 180_000);

afterAll(async () => {
  await killAll();
  haproxy?.child.kill('SIGKILL');
  await fileServer?.close();
});

describe('scale-out behind HAProxy', () => {
  it('puts both subflows of every session on one instance and spreads sessions over the instances', async () => {
    const where = await placement(nodes);
    for (const c of clients) {
      const token = await tokenOf(c);
      expect(token, 'client has a two-subflow session').toBeDefined();
      const holders = where.get(token!) ?? [];
      expect(holders, `session ${token} is on exactly one instance`).toHaveLength(1);
      expect(holders[0]!.subflows).toBe(2);
    }
    const used = new Set([...where.values()].map((h) => h[0]!.node));
    expect(used.size).toBeGreaterThanOrEqual(2);
    const perNode = nodes.map((n) => [...where.values()].filter((h) => h[0]!.node === n.id).length);
    console.log(`sessions per instance: ${perNode.join(', ')}`);
  });

  it('killing one instance leaves the others\' sessions and transfers intact; its clients get a new session on a live one', async () => {
    const where = await placement(nodes);
    const victim = nodes[0]!;
    const byClient = await Promise.all(clients.map(async (c) => ({ c, token: (await tokenOf(c))!, node: where.get((await tokenOf(c))!)![0]!.node })));
    const orphans = byClient.filter((x) => x.node === victim.id);
    const others = byClient.filter((x) => x.node !== victim.id);
    expect(orphans.length, 'the victim holds some sessions').toBeGreaterThan(0);
    expect(others.length).toBeGreaterThan(0);

    // Slow downloads on the survivors' sessions, in progress when the instance dies.
    const runs = others.slice(0, 4).map((x) => ({ x, run: download(x.c, ['--limit-rate', '4M']) }));
    await waitUntil('downloads under way', async () => {
      for (const { x } of runs) {
        const st = await x.c.stats();
        if ((st.sessions[0]?.openStreams ?? 0) < 1) return false;
      }
      return true;
    }, 20_000);
    victim.server.proc.child.kill('SIGKILL');
    const killedAt = Date.now();
    const live = nodes.filter((n) => n !== victim);
    // The orphans are watched while the survivors' downloads run.
    const newTokens = Promise.all(
      orphans.map(async (o) => {
        const token = await waitUntil('an orphaned client to get a new two-subflow session', async () => {
          const t = await tokenOf(o.c);
          return t !== undefined && t !== o.token ? t : undefined;
        }, 30_000, 100);
        return { o, token, at: Date.now() };
      }),
    );
    await victim.server.proc.waitExit(10_000);

    for (const { run } of runs) {
      const r = await run.done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.sha256).toBe(fileServer.sha256);
    }
    for (const x of others) expect(await tokenOf(x.c), 'a survivor keeps its session').toBe(x.token);

    const recovered = await newTokens;
    for (const { o, token } of recovered) {
      const holders = (await placement(live)).get(token) ?? [];
      expect(holders).toHaveLength(1);
      expect(holders[0]!.subflows).toBe(2);
      const r = await download(o.c).done;
      expect(r.code, r.stderr).toBe(0);
      expect(r.sha256).toBe(fileServer.sha256);
    }
    // For the record, not asserted (a shared machine's timing is no test).
    const last = Math.max(...recovered.map((x) => x.at));
    console.log(`${orphans.length} orphaned sessions replaced on live instances, the last ${((last - killedAt) / 1000).toFixed(1)} s after the kill`);
    nodes = live;
  }, 180_000);

  it('draining one instance (SIGTERM) sends new sessions elsewhere, moves its clients after the grace, and exits', async () => {
    const where = await placement(nodes);
    const drained = nodes[0]!;
    const mine: { c: ClientHandle; token: string }[] = [];
    for (const c of clients) {
      const t = await tokenOf(c);
      if (t && where.get(t)?.[0]?.node === drained.id) mine.push({ c, token: t });
    }
    drained.server.proc.child.kill('SIGTERM');
    await waitUntil('the instance to say it drains', () => drained.server.logLines().some((l) => String(l.msg).startsWith('draining')));
    // New sessions while it drains: none of them lands there.
    const fresh: ClientHandle[] = [];
    for (let i = 0; i < 3; i++) fresh.push(await startClient({ secret, servers: [`127.0.0.1:${lbPort}`], binds: ['127.0.0.1', '127.0.0.2'], waitSubflows: 2 }));
    const live = nodes.filter((n) => n !== drained);
    const after = await placement(live);
    for (const f of fresh) expect(after.has((await tokenOf(f))!), 'a new session is on a live instance').toBe(true);
    // After the grace its clients start new sessions on the others, and it exits.
    await drained.server.proc.waitExit(30_000);
    for (const m of mine) {
      const token = await waitUntil('a drained client to get a new session', async () => {
        const t = await tokenOf(m.c);
        return t !== undefined && t !== m.token ? t : undefined;
      }, 30_000, 200);
      expect((await placement(live)).has(token)).toBe(true);
    }
    expect(drained.server.logLines().some((l) => String(l.msg).startsWith('drain grace over')) || mine.length === 0).toBe(true);
    const moved = (await Promise.all(mine.map((m) => m.c.logLines()))).flat().filter((l) => /DRAINING/.test(String(l.msg)));
    if (mine.length > 0) expect(moved.length, 'the clients saw the DRAINING reason').toBeGreaterThan(0);
  }, 180_000);
});

