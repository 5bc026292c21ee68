#!/usr/bin/env node
// Scale-out figures (README "Scaling out", issue 11 item 7), measured side by side in one run
// on loopback (this machine is shared and noisy: compare the columns, not the absolute numbers
// with another machine's):
//   - handshakes per second one instance sustains: HELLO (new session, closed at once) and JOIN
//     (a subflow added to a live session, closed at once), from C concurrent connections;
//   - the same through HAProxy (deploy/haproxy.cfg) before that one instance: what the balancer
//     adds, as a rate ratio and as added handshake latency (median); and through HAProxy before
//     three instances;
//   - memory per idle session on one instance (two subflows each): sessions per GiB.
//
//   npx tsc -b && node scripts/bench-scale.mjs [--seconds 5] [--rounds 3] [--concurrency 16] [--sessions 1000]
//
// Needs haproxy on PATH for the balancer columns (Debian: apt-get install haproxy); without
// it they are skipped. The load generator is one Node process using @plait/core over real TCP,
// doing the client half of the same crypto: on a 2-core machine it shares the CPU with the
// instance, so the rates are a floor for what an instance on its own cores sustains.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectSession, deriveSecretKeys, joinSession, makeConfig, realClock } from '@plait/core';
import { SocketChannel } from '@plait/node';
import { freePort, option, sleep } from './lib/bench-kit.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/bin/plait.js');
const args = process.argv.slice(2);
const opt = (name, def) => option(name, def, args);
const SECONDS = Number(opt('seconds', '5'));
const CONCURRENCY = Number(opt('concurrency', '16'));
const SESSIONS = Number(opt('sessions', '1000'));
const ROUNDS = Number(opt('rounds', '3'));
const SECRET = 'bench-secret-0123456789abcdefgh';
const secretKeys = deriveSecretKeys(SECRET);
const config = makeConfig({});
const children = new Set();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

function spawnTracked(cmd, argv, env = {}) {
  const c = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PLAIT_SECRET: SECRET, ...env } });
  let err = '';
  c.stderr.on('data', (d) => (err += d.toString()));
  c.errText = () => err;
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
}

async function waitPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

async function startInstance(id) {
  const port = await freePort();
  const c = spawnTracked(process.execPath, [
    CLI, 'server', '--listen', `127.0.0.1:${port}`, '--instance-id', String(id), '--log-level', 'error',
    '--max-sessions', '100000', '--max-pending', '100000', '--max-pending-per-source', '100000',
  ]);
  await waitPort(port);
  return { id, port, pid: c.pid, proc: c };
}

function tcp(port) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => {
      s.removeListener('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

async function newSession(port) {
  const s = await tcp(port);
  return connectSession(new SocketChannel(s), { secretKeys, config, clock: realClock });
}

/** CPU time (ms) a process has used so far, from /proc (utime + stime). */
function cpuMs(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * (1000 / 100); // USER_HZ is 100 on Linux
}

/**
 * Run `once` from CONCURRENCY loops for SECONDS: completions per second, the median latency
 * (ms), and the CPU the server process `pid` spent per completion (ms): the figure the noise
 * of a shared machine disturbs least.
 */
async function rate(once, pid) {
  const cpu0 = pid ? cpuMs(pid) : 0;
  const until = performance.now() + SECONDS * 1000;
  const lat = [];
  let errors = 0;
  let firstError;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (performance.now() < until) {
        const t0 = performance.now();
        try {
          await once();
          lat.push(performance.now() - t0);
        } catch (e) {
          errors++;
          firstError ??= e;
          await sleep(5);
        }
      }
    }),
  );
  if (errors > lat.length / 100) console.error(`  (${errors} failures, first: ${firstError?.message})`);
  const serverCpuMs = pid ? (cpuMs(pid) - cpu0) / Math.max(1, lat.length) : NaN;
  return { perSecond: lat.length / SECONDS, medianMs: median(lat), errors, serverCpuMs };
}

const helloOnce = (port) => async () => {
  const { session } = await newSession(port);
  session.close();
};

/** JOINs to sessions opened on `port` (several, so no one session's subflow limit is reached). */
async function joinBench(port, pid) {
  const owners = [];
  for (let i = 0; i < CONCURRENCY; i++) owners.push((await newSession(port)).session);
  let next = 0;
  const r = await rate(async () => {
    const session = owners[next++ % owners.length];
    const s = await tcp(port);
    const sf = await joinSession(session, new SocketChannel(s), { clock: realClock, addrId: 1, secretKeys });
    session.closeSubflow(sf, 'bench', true);
  }, pid);
  for (const s of owners) s.close();
  return r;
}

function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** Idle sessions of two subflows each on one instance: server memory per session. */
async function memoryPerSession(inst) {
  if (typeof globalThis.gc === 'function') globalThis.gc();
  await sleep(500);
  const before = rssKiB(inst.pid);
  const held = [];
  for (let i = 0; i < SESSIONS; i += CONCURRENCY) {
    await Promise.all(
      Array.from({ length: Math.min(CONCURRENCY, SESSIONS - i) }, async () => {
        const { session } = await newSession(inst.port);
        await joinSession(session, new SocketChannel(await tcp(inst.port)), { clock: realClock, addrId: 1, secretKeys });
        held.push(session);
      }),
    );
  }
  await sleep(2_000);
  const after = rssKiB(inst.pid);
  for (const s of held) s.close();
  return { sessions: held.length, kibPerSession: (after - before) / held.length, rssMiB: after / 1024 };
}

function haproxyAvailable() {
  return new Promise((resolve) => {
    const c = spawn('haproxy', ['-v'], { stdio: 'ignore' });
    c.on('error', () => resolve(false));
    c.on('exit', (code) => resolve(code === 0));
  });
}

async function main() {
  console.log(`bench-scale: ${SECONDS} s per figure, ${CONCURRENCY} concurrent handshakes, node ${process.version}`);
  const nodes = [await startInstance(1), await startInstance(2), await startInstance(3)];
  // Two balancers, deploy/haproxy.cfg as shipped: one before the three instances (scale-out),
  // one whose three entries are all instance 1 (the balancer's own cost, same instance as direct).
  let lb3;
  let lb1;
  const startLb = async (ports) => {
    const port = await freePort();
    spawnTracked('haproxy', ['-db', '-f', join(ROOT, 'deploy/haproxy.cfg')], {
      PLAIT_LB_BIND: `127.0.0.1:${port}`,
      PLAIT_NODE1: `127.0.0.1:${ports[0]}`,
      PLAIT_NODE2: `127.0.0.1:${ports[1]}`,
      PLAIT_NODE3: `127.0.0.1:${ports[2]}`,
    });
    await waitPort(port);
    return port;
  };
  if (await haproxyAvailable()) {
    lb3 = await startLb(nodes.map((n) => n.port));
    lb1 = await startLb([nodes[0].port, nodes[0].port, nodes[0].port]);
    await sleep(2_500); // health checks mark every instance up
  } else {
    console.log('haproxy not found: the balancer columns are skipped');
  }

  const rows = [];
  const one = nodes[0];
  // Warm up JIT and both sides' crypto.
  await rate(helloOnce(one.port));
  // Direct and balanced runs alternate, ROUNDS times each, and the median round is kept:
  // other load on the machine then weighs on both columns alike.
  const best = (runs) => (runs.length ? [...runs].sort((a, b) => a.perSecond - b.perSecond)[Math.floor(runs.length / 2)] : undefined);
  const hello = { d: [], l1: [], l3: [] };
  const joins = { d: [], l1: [], l3: [] };
  for (let r = 0; r < ROUNDS; r++) {
    hello.d.push(await rate(helloOnce(one.port), one.pid));
    if (lb1) hello.l1.push(await rate(helloOnce(lb1), one.pid));
    if (lb3) hello.l3.push(await rate(helloOnce(lb3)));
    joins.d.push(await joinBench(one.port, one.pid));
    if (lb1) joins.l1.push(await joinBench(lb1, one.pid));
    if (lb3) joins.l3.push(await joinBench(lb3));
  }
  rows.push(['HELLO (new session)', best(hello.d), best(hello.l1), best(hello.l3)]);
  rows.push(['JOIN (add a subflow)', best(joins.d), best(joins.l1), best(joins.l3)]);

  const fmt = (r) => (r ? `${r.perSecond.toFixed(0).padStart(5)}/s ${r.medianMs.toFixed(1).padStart(6)} ms` : '-');
  console.log('');
  console.log('rate per second and median handshake latency; "LB cost" = HAProxy before the same one instance vs direct');
  console.log('handshake              1 instance direct   HAProxy + 1 instance   LB cost              HAProxy + 3 instances');
  for (const [name, d, l1, l3] of rows) {
    const added = l1 ? l1.medianMs - d.medianMs : 0;
    const cost = l1 ? `${(l1.perSecond / d.perSecond).toFixed(2)}x rate, ${added >= 0 ? '+' : ''}${added.toFixed(1)} ms` : '-';
    console.log(`${name.padEnd(22)} ${fmt(d).padEnd(19)} ${fmt(l1).padEnd(22)} ${cost.padEnd(20)} ${fmt(l3)}`);
  }
  console.log('');
  console.log('server CPU per handshake (instance 1, median of the rounds), and what one core of it sustains at that cost:');
  const medCpu = (runs) => median(runs.map((r) => r.serverCpuMs));
  for (const [name, runs, lbRuns] of [['HELLO', hello.d, hello.l1], ['JOIN', joins.d, joins.l1]]) {
    const ms = medCpu(runs);
    const viaLb = lbRuns.length ? `; through HAProxy ${medCpu(lbRuns).toFixed(2)} ms` : '';
    console.log(`${name.padEnd(6)} ${ms.toFixed(2)} ms direct${viaLb}: about ${Math.floor(1000 / ms)} per second per core`);
  }
  const mem = await memoryPerSession(nodes[1]);
  console.log('');
  console.log(
    `idle sessions (2 subflows each) on one instance: ${mem.sessions}, ${mem.kibPerSession.toFixed(1)} KiB each ` +
      `(RSS ${mem.rssMiB.toFixed(0)} MiB): about ${Math.floor((1024 * 1024) / mem.kibPerSession)} sessions per GiB`,
  );
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  for (const c of children) if (c.errText()) console.error(c.errText().slice(-2000));
  process.exit(1);
});
