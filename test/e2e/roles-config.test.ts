/**
 * Link roles and the config file through the real CLI: a client whose paths
 * (127.0.0.1 and 127.0.0.2, both to one server) come from `--config FILE`,
 * a rate-limited download running through its SOCKS port, and the role of
 * a path changed by POST /subflows/<id>, by `plait role`, and by editing
 * the file and sending SIGHUP. The server's /stats shows what it sends on
 * each subflow: the download direction, so the server obeying the role the
 * client set is what is measured.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFileServer, type FileServer } from '@plait/testkit';
import { freePort, killAll, MiB, parseLogLines, runPlait, sleep, spawnPlait, startClient, startCurl, startServer, waitUntil, type ClientHandle, type CurlRun, type ServerHandle } from './cli-helpers.js';

const FILE_SIZE = 48 * MiB;
/** curl reads at this rate, so the download lasts ~8 s: long enough to change roles under it. */
const RATE = '6M';

let fileServer: FileServer;
let server: ServerHandle;
let secret: string;
const dir = mkdtempSync(join(tmpdir(), 'plait-roles-'));

beforeAll(async () => {
  secret = randomBytes(32).toString('base64url');
  fileServer = await startFileServer({ size: FILE_SIZE });
  server = await startServer({ secret, allowPrivate: true });
}, 60_000);

afterAll(async () => {
  await killAll();
  await fileServer?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface PathJson {
  key: string;
  local: string;
  role: string;
  subflow?: number;
  state: string;
}
const paths = async (c: ClientHandle): Promise<PathJson[]> => ((await c.stats()).paths ?? []) as unknown as PathJson[];
/** The subflow id of the path from `local`, once it has an active one. */
async function subflowOf(c: ClientHandle, local: string): Promise<number> {
  return waitUntil(`a subflow on the ${local} path`, async () => (await paths(c)).find((p) => p.local === local && p.subflow !== undefined)?.subflow);
}
async function serverSub(id: number): Promise<{ role: string; bytesSent: number; state: string } | undefined> {
  const st = await server.stats();
  for (const s of st.sessions) {
    const x = s.subflows.find((y) => y.id === id);
    if (x) return x as unknown as { role: string; bytesSent: number; state: string };
  }
  return undefined;
}
const serverRole = async (id: number): Promise<string | undefined> => (await serverSub(id))?.role;

/** Bytes the server sends on each subflow during `ms` (the download carried there). */
/**
 * Bytes the server sends on each subflow from now until, together, they have
 * sent `total` more (or 20 s passed): a share of what moved, whatever the
 * machine's speed, instead of a rate over a fixed window.
 */
async function serverSentShares(ids: number[], total = 768 * 1024): Promise<number[]> {
  const sent = async (): Promise<number[]> => Promise.all(ids.map(async (id) => (await serverSub(id))?.bytesSent ?? 0));
  const before = await sent();
  let after = before;
  await waitUntil(`${total} bytes to flow`, async () => {
    after = await sent();
    return after.reduce((a, x, i) => a + x - before[i]!, 0) >= total;
  }, 20_000);
  return after.map((a, i) => a - before[i]!);
}

function postJson(port: number, path: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function download(c: ClientHandle): CurlRun {
  return startCurl(['-sS', '--fail', '--max-time', '80', '--limit-rate', RATE, '--socks5-hostname', `127.0.0.1:${c.socksPort}`, fileServer.url], 90_000);
}

async function expectIntact(run: CurlRun, c: ClientHandle): Promise<void> {
  const res = await run.done;
  const logs = `${c.proc.dump()}\n${server.proc.dump()}`;
  expect(res.code, `curl exit ${res.code}: ${res.stderr}\n${logs}`).toBe(0);
  expect(res.bytes, logs).toBe(FILE_SIZE);
  expect(res.sha256).toBe(fileServer.sha256);
}

/** While a path is a backup (and the regular one works) the server sends it keepalives and acks only. */
const QUIET = 64 * 1024;

describe('roles at runtime through the CLI (a download running)', () => {
  it('POST /subflows/<id> and `plait role` move the download between paths; the server obeys', async () => {
    const cfg = join(dir, 'client-post.yaml');
    writeFileSync(cfg, 'bind: [127.0.0.1, 127.0.0.2]\n');
    const c = await startClient({ secret, servers: [server.addr], extraArgs: ['--config', cfg], waitSubflows: 2 });
    try {
      const one = await subflowOf(c, '127.0.0.1');
      const two = await subflowOf(c, '127.0.0.2');
      const run = download(c);
      await waitUntil('the download to start', async () => ((await serverSub(one))?.bytesSent ?? 0) + ((await serverSub(two))?.bytesSent ?? 0) > 2 * MiB);

      // 1. POST {"backup": true} for the 127.0.0.2 path: the server stops sending on it.
      const r = await postJson(c.statsPort, `/subflows/${two}`, '{"backup": true}');
      expect(r.status, r.body).toBe(200);
      expect(JSON.parse(r.body)).toMatchObject({ subflow: two, role: 'backup' });
      await waitUntil('the server to learn the role', async () => (await serverRole(two)) === 'backup');
      expect((await paths(c)).find((p) => p.local === '127.0.0.2')!.role).toBe('backup');
      await sleep(300); // what was in flight drains
      const [onOne, onTwo] = await serverSentShares([one, two]);
      // Shares, not rates: on a starved machine the download may crawl, but the backup stays quiet.
      expect(onOne).toBeGreaterThan(256 * 1024);
      expect(onTwo, `server sent ${onTwo} bytes on the backup subflow (${onOne} on the regular one)`).toBeLessThan(Math.max(QUIET, onOne! / 32));

      // 2. `plait role`: swap them.
      const a = await runPlait(['role', '--stats', `127.0.0.1:${c.statsPort}`, String(two), 'regular']);
      expect(a.code, a.stderr).toBe(0);
      expect(a.stdout).toMatch(new RegExp(`^subflow ${two} \\(path 127\\.0\\.0\\.2>.*\\): role regular\\n$`));
      const b = await runPlait(['role', '--stats', `127.0.0.1:${c.statsPort}`, String(one), 'backup']);
      expect(b.code, b.stderr).toBe(0);
      await waitUntil('the server to follow the swap', async () => (await serverRole(one)) === 'backup' && (await serverRole(two)) === 'regular');
      await sleep(300);
      const [onOne2, onTwo2] = await serverSentShares([one, two]);
      expect(onTwo2).toBeGreaterThan(256 * 1024);
      expect(onOne2, `server sent ${onOne2} bytes on the backup subflow (${onTwo2} on the regular one)`).toBeLessThan(Math.max(QUIET, onTwo2! / 32));
      expect(run.proc.exited, 'the download was still running through all of it').toBe(false);

      // Without arguments it lists the paths with their subflow ids and roles.
      const list = await runPlait(['role', '--stats', `127.0.0.1:${c.statsPort}`]);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).toMatch(/^subflow\s+role\s+state\s+path\n/);
      expect(list.stdout).toMatch(new RegExp(`\\n${one}\\s+backup\\s+up\\s+127\\.0\\.0\\.1>`));
      expect(list.stdout).toMatch(new RegExp(`\\n${two}\\s+regular\\s+up\\s+127\\.0\\.0\\.2>`));

      // 3. Mistakes: an unknown id (exit 1, the reason), a bad role (exit 2, one line).
      const unknown = await runPlait(['role', '--stats', `127.0.0.1:${c.statsPort}`, '4000', 'backup']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toBe('plait: no subflow 4000 (GET /stats lists the subflows and their ids)\n');
      const bad = await runPlait(['role', '--stats', `127.0.0.1:${c.statsPort}`, String(one), 'metered']);
      expect(bad.code).toBe(2);
      expect(bad.stderr).toBe('plait: <role>: "metered" is not a role; use regular, backup or overflow\n');

      await expectIntact(run, c);
      // Both sides' /metrics report the role.
      const metrics = await new Promise<string>((resolve, reject) =>
        http.get(`http://127.0.0.1:${server.statsPort}/metrics`, (res) => {
          let t = '';
          res.on('data', (d: Buffer) => (t += d.toString()));
          res.on('end', () => resolve(t));
        }).on('error', reject),
      );
      expect(metrics).toMatch(new RegExp(`plait_subflow_up\\{[^}]*subflow="${one}"[^}]*role="backup"`));
    } finally {
      await c.proc.kill();
    }
  }, 120_000);

  it('SIGHUP with an edited config file changes a role, removes a path and adds one; a broken file is logged and ignored', async () => {
    const cfg = join(dir, 'client-hup.yaml');
    writeFileSync(cfg, 'bind: [127.0.0.1, 127.0.0.2]\n');
    const c = await startClient({ secret, servers: [server.addr], extraArgs: ['--config', cfg], waitSubflows: 2 });
    const hup = async (text: string): Promise<void> => {
      writeFileSync(cfg, text);
      const n = c.logLines().filter((l) => /^config reload/.test(String(l.msg))).length;
      process.kill(c.proc.pid, 'SIGHUP');
      await waitUntil('the reload to be logged', () => c.logLines().filter((l) => /^config reload/.test(String(l.msg))).length > n);
    };
    try {
      const one = await subflowOf(c, '127.0.0.1');
      const two = await subflowOf(c, '127.0.0.2');
      const run = download(c);
      await waitUntil('the download to start', async () => ((await serverSub(one))?.bytesSent ?? 0) + ((await serverSub(two))?.bytesSent ?? 0) > 2 * MiB);

      // A role change.
      await hup('bind: [127.0.0.1, 127.0.0.2]\nbackup: 127.0.0.2\n');
      await waitUntil('127.0.0.2 to be a backup at the server', async () => (await serverRole(two)) === 'backup');

      // A removed path: its subflow closes; the session and the download go on over 127.0.0.2 (now regular again).
      await hup('bind: [127.0.0.2]\n');
      await waitUntil('one path left, regular', async () => {
        const p = await paths(c);
        return p.length === 1 && p[0]!.local === '127.0.0.2' && p[0]!.role === 'regular' && (await serverRole(two)) === 'regular';
      });
      const before = (await serverSub(two))!.bytesSent;
      await sleep(1000);
      expect((await serverSub(two))!.bytesSent - before, 'the remaining path carries the download').toBeGreaterThan(256 * 1024);

      // An added path, as overflow.
      await hup('bind: [127.0.0.1, 127.0.0.2]\noverflow: 127.0.0.1\n');
      const back = await subflowOf(c, '127.0.0.1');
      await waitUntil('the new path to be overflow at the server', async () => (await serverRole(back)) === 'overflow');
      expect(run.proc.exited, 'the download was still running through all of it').toBe(false);

      // A file that no longer parses: logged, nothing changes.
      await hup('bind: [127.0.0.1\n');
      const failed = c.logLines().find((l) => String(l.msg).startsWith('config reload failed'));
      expect(String(failed?.msg)).toMatch(new RegExp(`keeping the running config: ${cfg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} line \\d+: `));
      expect((await paths(c)).map((p) => [p.local, p.role]).sort()).toEqual([
        ['127.0.0.1', 'overflow'],
        ['127.0.0.2', 'regular'],
      ]);
      // A file that parses but does not check (a bad address): logged with the file and key, nothing changes.
      await hup('bind: [127.0.0.1, 127.0.0.2]\nbackup: [not/an/iface]\n');
      expect(c.logLines().filter((l) => String(l.msg).startsWith('config reload failed')).at(-1)?.msg).toMatch(/: backup: "not\/an\/iface" is not an interface name/);

      expect(c.proc.exited).toBe(false);
      await expectIntact(run, c);
      const st = await c.stats();
      expect(st.sessions).toHaveLength(1);
      expect(st.counters.sessions, 'one session all along').toBe(1);
    } finally {
      await c.proc.kill();
    }
  }, 120_000);
});

describe('config files through the CLI', () => {
  it('check-config: exit 0 for a valid client or server file, 2 with one line naming the file and key', async () => {
    const secretFile = join(dir, 'secret');
    writeFileSync(secretFile, secret, { mode: 0o600 });
    const client = join(dir, 'ok-client.yaml');
    writeFileSync(client, `server: [${server.addr}]\nsecret-file: ${secretFile}\nbind: [127.0.0.1]\noverflow: [127.0.0.2]\nsocks: 127.0.0.1:1080\n`);
    const ok = await runPlait(['check-config', client]);
    expect([ok.code, ok.stdout, ok.stderr]).toEqual([0, `${client}: a valid client config\n`, '']);
    const srv = join(dir, 'ok-server.json');
    writeFileSync(srv, JSON.stringify({ listen: '127.0.0.1:0', 'secret-file': secretFile, 'allow-private': true }));
    expect((await runPlait(['check-config', srv])).stdout).toBe(`${srv}: a valid server config\n`);
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, `server: ${server.addr}\nsecret-file: ${secretFile}\nsocks: 127.0.0.1:1080\nforward: [nonsense]\n`);
    const r = await runPlait(['check-config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toMatch(new RegExp(`^plait: ${bad.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: forward: `));
  });

  it('plait server --config FILE runs from the file; SIGHUP re-checks it and keeps running', async () => {
    const secretFile = join(dir, 'secret2');
    writeFileSync(secretFile, secret, { mode: 0o600 });
    const stats = await freePort();
    const file = join(dir, 'server.yaml');
    writeFileSync(file, `listen: 127.0.0.1:0\nsecret-file: ${secretFile}\nstats: 127.0.0.1:${stats}\n`);
    const p = spawnPlait(['server', '--config', file], { name: 'plait server (config)' });
    try {
      await waitUntil('the server to listen', () => parseLogLines(p.stderr()).some((l) => l.msg === 'plait server listening'));
      writeFileSync(file, 'listen: [\n');
      process.kill(p.pid, 'SIGHUP');
      await waitUntil('the failed reload to be logged', () => parseLogLines(p.stderr()).some((l) => String(l.msg).startsWith('config reload failed')));
      await sleep(200);
      expect(p.exited).toBe(false);
    } finally {
      await p.kill();
    }
  });

  it('SIGHUP without --config is logged and ignored: the server keeps running (a stray systemctl reload ends nothing)', async () => {
    const secretFile = join(dir, 'secret3');
    writeFileSync(secretFile, secret, { mode: 0o600 });
    const p = spawnPlait(['server', '--listen', '127.0.0.1:0', '--secret-file', secretFile], { name: 'plait server (no config)' });
    try {
      await waitUntil('the server to listen', () => parseLogLines(p.stderr()).some((l) => l.msg === 'plait server listening'));
      process.kill(p.pid, 'SIGHUP');
      await waitUntil('the SIGHUP to be logged', () => parseLogLines(p.stderr()).some((l) => String(l.msg).startsWith('SIGHUP: nothing to reload')));
      await sleep(200);
      expect(p.exited).toBe(false);
    } finally {
      await p.kill();
    }
  });
});
