#!/usr/bin/env node
/**
 * The users file `rate` through the real CLI on loopback: `plait server
 * --users` with one user at RATE, a client of that user bonding 127.0.0.1
 * and 127.0.0.2 (two subflows), and curl fetching SIZE through its SOCKS
 * port from a local file server. Prints the achieved rate against the limit
 * (and, for scale, the same download with no limit). Upload is limited
 * likewise; see packages/core/test/rate-limit.test.ts for both directions
 * on the virtual clock.
 *
 * Usage: npx tsc -b && node scripts/bench-user-rate.mjs [--rate 50mbit] [--size-mib 64]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PLAIT = resolve(root, 'packages/cli/bin/plait.js');
const { startFileServer } = await import(pathToFileURL(resolve(root, 'packages/testkit/dist/index.js')).href);
const arg = (n, d) => {
  const i = process.argv.indexOf(`--${n}`);
  return i >= 0 ? process.argv[i + 1] : d;
};
const RATE = arg('rate', '50mbit');
const SIZE = Number(arg('size-mib', '64')) * 1024 * 1024;
const rateBps = (() => {
  const m = /^(\d+(?:\.\d+)?)(kbit|mbit|gbit)$/.exec(RATE);
  return (Number(m[1]) * { kbit: 1e3, mbit: 1e6, gbit: 1e9 }[m[2]]) / 8;
})();

const freePort = () =>
  new Promise((res) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
const procs = [];
function start(args) {
  const p = spawn(process.execPath, [PLAIT, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  p.stderr.on('data', (d) => (err += d));
  procs.push(p);
  return { p, log: () => err };
}
const waitFor = async (what, f, ms = 15000) => {
  const t = Date.now();
  for (;;) {
    const v = f();
    if (v) return v;
    if (Date.now() - t > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
};

const dir = mkdtempSync(join(tmpdir(), 'plait-rate-'));
const keys = spawnSync(process.execPath, [PLAIT, 'keygen', '--identity'], { encoding: 'utf8' }).stdout;
const idKey = /identity-key: (\S+)/.exec(keys)[1];
const serverKey = /server-key: (\S+)/.exec(keys)[1];
const secret = spawnSync(process.execPath, [PLAIT, 'keygen'], { encoding: 'utf8' }).stdout.trim();
const free = spawnSync(process.execPath, [PLAIT, 'keygen'], { encoding: 'utf8' }).stdout.trim();
writeFileSync(join(dir, 'users.yaml'), `identity-key: ${idKey}\nusers:\n  - {name: limited, secret: ${secret}, rate: ${RATE}}\n  - {name: free, secret: ${free}}\n`, { mode: 0o600 });
const files = await startFileServer({ size: SIZE });

async function run(user, userSecret) {
  const port = await freePort();
  const server = start(['server', '--listen', `127.0.0.1:${port}`, '--users', join(dir, 'users.yaml'), '--allow-private', '--log-level', 'warn']);
  const socks = await freePort();
  const client = start(['client', '--server', `127.0.0.1:${port}`, '--bind', '127.0.0.1', '--bind', '127.0.0.2', '--user', user, '--server-key', serverKey, '--secret', userSecret, '--socks', `127.0.0.1:${socks}`, '--log-level', 'info']);
  await waitFor('two subflows', () => (client.log().match(/subflow up/g) ?? []).length >= 2 || (client.log().match(/"subflow"/g) ?? []).length >= 2);
  const t0 = process.hrtime.bigint();
  // Not spawnSync: the event loop must keep draining the plait processes' stderr pipes.
  const curl = await new Promise((res) => {
    const c = spawn('curl', ['-sS', '--fail', '--max-time', '300', '-o', '/dev/null', '-w', '%{size_download}', '--socks5-hostname', `127.0.0.1:${socks}`, files.url]);
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (status) => res({ status, stdout, stderr }));
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (curl.status !== 0 || Number(curl.stdout) !== SIZE) throw new Error(`curl failed: ${curl.stderr} ${curl.stdout}\n${client.log()}\n${server.log()}`);
  client.p.kill();
  server.p.kill();
  return SIZE / secs;
}

try {
  const limited = await run('limited', secret);
  const unlimited = await run('free', free);
  const mbit = (x) => ((x * 8) / 1e6).toFixed(1);
  console.log(`| ${SIZE / 1048576} MiB download, 2 subflows | limit ${RATE} | achieved ${mbit(limited)} Mbit/s | ratio ${(limited / rateBps).toFixed(3)} | no limit: ${mbit(unlimited)} Mbit/s |`);
} finally {
  for (const p of procs) p.kill();
  await files.close();
  rmSync(dir, { recursive: true, force: true });
}
