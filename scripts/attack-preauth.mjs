// Pre-auth attacks on a real `plait server` (spawned from the CLI), measured.
//
//   node scripts/attack-preauth.mjs [--root DIR] [--flood-seconds 5] [--idle 300]
//
// DIR is a built plait checkout (default: this one), e.g. a worktree of an
// older commit to compare against. Linux only (reads /proc/<pid>/status).
//
// 1. zero flood: 3 connections each send one bad byte, then zeros as fast as
//    the server takes them, for --flood-seconds; the server's RSS is sampled.
// 2. idle flood: --idle connections from 127.0.0.1 plus 60 from 127.0.0.2
//    that never send a byte, each re-opened 50 ms after the server drops it.
//    Meanwhile, in 3 rounds, a client tries to create a session (HELLO) and
//    0.7 s later to add a second subflow to it (JOIN); each try has a 5 s
//    handshake timeout and is retried for up to 25 s. Reports tries and time
//    to success per round.
// Prints one JSON object; `counters` is the server's /stats counters.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const flag = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : dflt;
};
const root = resolve(flag('--root', join(dirname(fileURLToPath(import.meta.url)), '..')));
const floodSeconds = Number(flag('--flood-seconds', '5'));
const idleCount = Number(flag('--idle', '300'));

const core = await import(pathToFileURL(join(root, 'packages/core/dist/index.js')).href);
const nodePkg = await import(pathToFileURL(join(root, 'packages/node/dist/index.js')).href);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const MB = (b) => Math.round((b / 1048576) * 10) / 10;

async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

function rssOf(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function startServer(secret) {
  const port = await freePort();
  const statsPort = await freePort();
  const proc = spawn(
    process.execPath,
    [join(root, 'packages/cli/bin/plait.js'), 'server', '--listen', `127.0.0.1:${port}`, '--secret', secret, '--stats', `127.0.0.1:${statsPort}`, '--log-level', 'error'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const until = Date.now() + 15_000;
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${statsPort}/stats`);
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > until) throw new Error('server did not start');
    await sleep(100);
  }
  const counters = async () => (await (await fetch(`http://127.0.0.1:${statsPort}/stats`)).json()).counters;
  return { proc, port, counters, stop: () => proc.kill('SIGKILL') };
}

async function zeroFlood(server) {
  await sleep(500);
  const rssBefore = rssOf(server.proc.pid);
  let peak = rssBefore;
  let sent = 0;
  let cutOff = 0;
  const end = Date.now() + floodSeconds * 1000;
  const chunk = Buffer.alloc(64 * 1024);
  const one = () =>
    new Promise((done) => {
      const s = net.connect({ host: '127.0.0.1', port: server.port });
      let closed = false;
      s.on('error', () => undefined);
      s.on('close', () => {
        closed = true;
        if (Date.now() < end) cutOff++;
        done();
      });
      s.on('connect', async () => {
        s.write(Buffer.from([0x47])); // not a plait message type
        while (!closed && Date.now() < end) {
          if (!s.write(chunk)) await Promise.race([new Promise((r) => s.once('drain', r)), sleep(200)]);
          else sent += chunk.length;
        }
        s.destroy();
      });
    });
  const sampler = setInterval(() => (peak = Math.max(peak, rssOf(server.proc.pid))), 100);
  await Promise.all([one(), one(), one()]);
  clearInterval(sampler);
  await sleep(2_000);
  const rssAfter = rssOf(server.proc.pid);
  return {
    connections: 3,
    seconds: floodSeconds,
    clientBytesWrittenMB: MB(sent),
    connectionsCutOffEarly: cutOff,
    serverRssBeforeMB: MB(rssBefore),
    serverRssPeakMB: MB(peak),
    serverRssGrowthMB: MB(peak - rssBefore),
    serverRss2sAfterMB: MB(rssAfter),
  };
}

function idleFlood(port, local, count) {
  const socks = new Set();
  let stopped = false;
  let opened = 0;
  const open = () => {
    if (stopped) return;
    opened++;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: local });
    socks.add(s);
    s.on('error', () => undefined);
    s.resume(); // read (and discard) the REJECT, so the close is noticed
    s.on('close', () => {
      socks.delete(s);
      if (!stopped) setTimeout(open, 50);
    });
  };
  for (let i = 0; i < count; i++) open();
  return {
    stop() {
      stopped = true;
      for (const s of socks) s.destroy();
    },
    get opened() {
      return opened;
    },
  };
}

function connectSocket(port) {
  return new Promise((res, rej) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => res(s));
    s.once('error', rej);
  });
}

async function untilOk(what, f, limitMs) {
  const t0 = Date.now();
  let tries = 0;
  const errors = [];
  while (Date.now() - t0 < limitMs) {
    tries++;
    try {
      const v = await f();
      return { ok: true, tries, ms: Date.now() - t0, value: v, errors };
    } catch (e) {
      errors.push(e instanceof Error ? e.message : String(e));
      await sleep(200);
    }
  }
  return { ok: false, tries, ms: Date.now() - t0, errors: errors.slice(-3) };
}

async function idleAttack(server, secret) {
  const secretKeys = core.deriveSecretKeys(secret);
  const config = core.makeConfig();
  const a = idleFlood(server.port, '127.0.0.1', idleCount);
  const b = idleFlood(server.port, '127.0.0.2', 60);
  await sleep(1_000);
  const fmt = (r) => ({ ok: r.ok, tries: r.tries, ms: r.ms, ...(r.errors.length ? { lastErrors: [...new Set(r.errors)].slice(-2) } : {}) });
  const rounds = [];
  // Several rounds, spaced out, so a lucky moment (a batch of idle
  // connections timing out together) does not decide the result.
  for (let round = 0; round < 3; round++) {
    const hello = await untilOk(
      'session',
      async () => {
        const sock = await connectSocket(server.port);
        return (await core.connectSession(new nodePkg.SocketChannel(sock), { secretKeys, config, clock: core.realClock })).session;
      },
      25_000,
    );
    let join = { ok: false, tries: 0, ms: 0, errors: ['no session'] };
    if (hello.ok) {
      await sleep(700);
      join = await untilOk(
        'join',
        async () => {
          const sock = await connectSocket(server.port);
          await core.joinSession(hello.value, new nodePkg.SocketChannel(sock), { clock: core.realClock, addrId: 1, secretKeys });
        },
        25_000,
      );
    }
    hello.value?.close();
    rounds.push({ session: fmt(hello), join: fmt(join) });
    await sleep(1_300);
  }
  const opened = a.opened + b.opened;
  a.stop();
  b.stop();
  return { idleConnections: idleCount + 60, idleOpenedTotal: opened, rounds };
}

const secret = randomBytes(32).toString('base64url');
const out = { root };
{
  const server = await startServer(secret);
  try {
    out.zeroFlood = await zeroFlood(server);
    out.zeroFloodCounters = await server.counters();
  } finally {
    server.stop();
  }
}
{
  const server = await startServer(secret);
  try {
    out.idleFlood = await idleAttack(server, secret);
    out.idleFloodCounters = await server.counters();
  } finally {
    server.stop();
  }
}
const keep = (c) => Object.fromEntries(Object.entries(c ?? {}).filter(([k, v]) => v !== 0 || k === 'rejected'));
out.zeroFloodCounters = keep(out.zeroFloodCounters);
out.idleFloodCounters = keep(out.idleFloodCounters);
console.log(JSON.stringify(out, null, 2));
process.exit(0);
