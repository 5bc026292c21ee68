#!/usr/bin/env node
// The overhead bench's scenario (one loopback subflow through a --forward)
// with the plait client and server under `node --cpu-prof`, then the top
// self-time functions of each profile.
//
//   node scripts/profile-overhead.mjs [--mib 512] [--dir /tmp/plait-prof] [--top 25] [--direction both|download|upload]
//   node scripts/profile-overhead.mjs --summarize FILE.cpuprofile [--top 25]
// --node-flags '--trace-gc ...' adds flags to both plait processes; their
// stdout goes to DIR/client.log and DIR/server.log.
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, option, sleep } from './lib/bench-kit.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/bin/plait.js');
const args = process.argv.slice(2);
const opt = (name, def) => option(name, def, args);
const TOP = Number(opt('top', '25'));
const SECRET = 'bench-secret-0123456789abcdefgh';

/** Self time per function (name + file:line), in ms, and the total. */
export function summarize(file, top = TOP) {
  const prof = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map();
  // timeDeltas[i] is the time before samples[i]; attribute it to that sample's node.
  for (let i = 0; i < prof.samples.length; i++) {
    const n = byId.get(prof.samples[i]);
    const cf = n.callFrame;
    const where = cf.url ? `${cf.url.replace(/^.*\/(packages|node:)/, '$1')}:${cf.lineNumber + 1}` : '';
    const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
    self.set(key, (self.get(key) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const idle = self.get('(idle)') ?? 0;
  const rows = [...self.entries()].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1]).slice(0, top);
  const lines = [`${file}: ${(total / 1000).toFixed(2)} s sampled, ${((total - idle) / 1000).toFixed(2)} s busy`];
  for (const [k, ms] of rows) lines.push(`${ms.toFixed(0).padStart(7)} ms ${((100 * ms) / (total - idle)).toFixed(1).padStart(5)}%  ${k}`);
  return lines.join('\n');
}

if (opt('summarize')) {
  console.log(summarize(opt('summarize')));
  process.exit(0);
}

const N = Number(opt('mib', '512')) * 1024 * 1024;
const DIR = opt('dir', '/tmp/plait-prof');
const DIRECTION = opt('direction', 'both');

async function waitPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${port} not up`);
}
const NODE_FLAGS = (opt('node-flags', '') ?? '').split(' ').filter(Boolean);
function run(argv, dir) {
  mkdirSync(dir, { recursive: true });
  return spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, ...NODE_FLAGS, ...argv], {
    stdio: ['ignore', openSync(`${dir}.log`, 'w'), 'inherit'],
    env: { ...process.env, PLAIT_SECRET: SECRET },
  });
}

const block = Buffer.alloc(1 << 16);
for (let i = 0; i < block.length; i++) block[i] = i & 0xff;
const source = net.createServer((s) => {
  s.on('error', () => undefined);
  const more = () => {
    while (!s.destroyed && s.write(block));
  };
  s.on('drain', more);
  more();
});
let sinkDone;
const sink = net.createServer((s) => {
  s.on('error', () => undefined);
  let n = 0;
  s.on('data', (d) => {
    n += d.length;
    if (n >= N && sinkDone) {
      s.destroy();
      sinkDone();
      sinkDone = undefined;
    }
  });
});
await new Promise((r) => source.listen(0, '127.0.0.1', r));
await new Promise((r) => sink.listen(0, '127.0.0.1', r));

rmSync(DIR, { recursive: true, force: true });
const srvPort = await freePort();
const server = run([CLI, 'server', '--listen', `127.0.0.1:${srvPort}`, '--allow-private', '--log-level', 'warn'], join(DIR, 'server'));
await waitPort(srvPort);
const down = await freePort();
const up = await freePort();
const statsPort = await freePort();
/** The client session's records sent and received so far (from its /stats). */
const records = async () => {
  const st = await (await fetch(`http://127.0.0.1:${statsPort}/stats`)).json();
  const find = (o, k) => (o && typeof o === 'object' ? (k in o ? o[k] : Object.values(o).map((v) => find(v, k)).find((v) => v !== undefined)) : undefined);
  return { sent: find(st, 'recordsSent'), received: find(st, 'recordsReceived') };
};
const client = run(
  [CLI, 'client', '--server', `127.0.0.1:${srvPort}`, '--stats', `127.0.0.1:${statsPort}`, '--log-level', 'warn', '--forward', `${down}:127.0.0.1:${source.address().port}`, '--forward', `${up}:127.0.0.1:${sink.address().port}`],
  join(DIR, 'client'),
);
await waitPort(down);
await waitPort(up);
await sleep(500);

let r0 = await records();
const recordLine = async (what) => {
  const r = await records();
  console.log(`${what}: client sealed ${r.sent - r0.sent} records, opened ${r.received - r0.received} (${((N / Math.max(1, what === 'download' ? r.received - r0.received : r.sent - r0.sent)) / 1024).toFixed(1)} KiB of payload per data record)`);
  r0 = r;
};
if (DIRECTION !== 'upload') {
  const t0 = performance.now();
  await new Promise((resolve, reject) => {
    const s = net.connect(down, '127.0.0.1');
    let n = 0;
    s.on('data', (d) => {
      n += d.length;
      if (n >= N) {
        s.destroy();
        resolve();
      }
    });
    s.on('error', reject);
  });
  console.log(`download ${((N * 8) / ((performance.now() - t0) / 1000) / 1e6).toFixed(0)} Mbit/s`);
  await recordLine('download');
}
if (DIRECTION !== 'download') {
  const t0 = performance.now();
  const done = new Promise((r) => (sinkDone = r));
  const s = net.connect(up, '127.0.0.1');
  s.on('error', () => undefined);
  let sent = 0;
  const more = () => {
    while (sent < N) {
      sent += block.length;
      if (!s.write(block)) return;
    }
    s.end();
  };
  s.on('connect', more);
  s.on('drain', more);
  await done;
  s.destroy();
  console.log(`upload ${((N * 8) / ((performance.now() - t0) / 1000) / 1e6).toFixed(0)} Mbit/s`);
  await recordLine('upload');
}

const exited = (c) => new Promise((r) => (c.exitCode !== null ? r() : c.once('exit', r)));
client.kill('SIGTERM');
server.kill('SIGTERM');
await Promise.race([Promise.all([exited(client), exited(server)]), sleep(10_000)]);
source.close();
sink.close();
for (const who of ['client', 'server']) {
  const d = join(DIR, who);
  for (const f of readdirSync(d).filter((f) => f.endsWith('.cpuprofile'))) console.log(`\n${summarize(join(d, f))}`);
}
