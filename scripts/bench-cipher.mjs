#!/usr/bin/env node
/**
 * Figures for the two record ciphers (AES-256-GCM, ChaCha20-Poly1305).
 *
 * 1. Record layer alone, one core: seal + open of every record in this
 *    process (RecordSealer/RecordOpener from packages/core/dist), with each
 *    record AEAD (node:crypto, and OpenSSL's EVP directly as the CLI uses
 *    it), MB/s of plaintext and CPU-seconds per GiB (process.cpuUsage).
 * 2. Through the real CLI on loopback: `plait server` + `plait client
 *    --cipher X --bind 127.0.0.1` (one subflow) and a `--forward` to a local
 *    source that sends SIZE bytes; throughput at the reader, and CPU-seconds
 *    per GiB of client + server from /proc/PID/stat (utime + stime).
 *
 * Usage: npx tsc -b && node scripts/bench-cipher.mjs [--size-mib 512] [--record-kib 16] [--reps 2] [--skip-cli]
 * Linux only for part 2 (/proc). Prints a Markdown table per part.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const { RecordSealer, RecordOpener, nodeCryptoAead } = await import(resolve(ROOT, 'packages/core/dist/index.js'));
const { openSslAead } = await import(resolve(ROOT, 'packages/node/dist/index.js'));
const native = openSslAead();
const BACKENDS = [['node:crypto', nodeCryptoAead], ...(native.available ? [['openssl', native.factory]] : [])];
const PLAIT = resolve(ROOT, 'packages/cli/bin/plait.js');
const CIPHERS = ['aes-256-gcm', 'chacha20-poly1305'];
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : dflt;
}
const SIZE = Number(arg('--size-mib', '512')) * MiB;
const RECORD = Number(arg('--record-kib', '16')) * 1024;
const REPS = Number(arg('--reps', '2'));
const SKIP_CLI = process.argv.includes('--skip-cli');

const cpuSeconds = (u) => (u.user + u.system) / 1e6;
const fmt = (n, d = 2) => n.toFixed(d);

// ---- 1. record layer ------------------------------------------------------

function benchRecords(cipher, bytes, recordSize, aead) {
  const key = randomBytes(32);
  const sealer = new RecordSealer(key, cipher, aead);
  const opener = new RecordOpener(key, undefined, cipher, aead);
  const pt = randomBytes(recordSize);
  const n = Math.ceil(bytes / recordSize);
  // Warm up OpenSSL and the JIT.
  for (let i = 0; i < 200; i++) {
    opener.push(sealer.seal(pt));
    opener.next();
  }
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let got = 0;
  for (let i = 0; i < n; i++) {
    opener.push(sealer.seal(pt));
    got += opener.next().length;
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = cpuSeconds(process.cpuUsage(cpu0));
  if (got !== n * recordSize) throw new Error('record round trip lost bytes');
  return { mbps: got / 1e6 / secs, cpuPerGiB: (cpu * GiB) / got };
}

// ---- 2. real CLI -----------------------------------------------------------

const CLK_TCK = 100; // Linux USER_HZ on every mainstream kernel
function procCpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the ")" of comm: utime is field 14, stime 15 (1-based).
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / CLK_TCK;
}

function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
}

function startPlait(args, readyMsg) {
  const child = spawn(process.execPath, [PLAIT, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, PLAIT_SECRET: '' } });
  let err = '';
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`timeout waiting for "${readyMsg}":\n${err}`)), 15_000);
    child.stderr.on('data', (d) => {
      err += d;
      for (const line of err.split('\n')) {
        if (!line.startsWith('{')) continue;
        let j;
        try {
          j = JSON.parse(line);
        } catch {
          continue;
        }
        if (j.msg === readyMsg) {
          clearTimeout(timer);
          res({ child, line: j, log: () => err });
          return;
        }
      }
    });
    child.once('exit', (code) => rej(new Error(`plait ${args[0]} exited ${code}:\n${err}`)));
  });
}

/** A local target that sends `size` bytes to each connection, then closes. */
function startSource(size) {
  const chunk = randomBytes(256 * 1024);
  const srv = net.createServer((sock) => {
    let left = size;
    const pump = () => {
      while (left > 0) {
        const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= piece.length;
        if (!sock.write(piece)) return void sock.once('drain', pump);
      }
      sock.end();
    };
    sock.on('error', () => undefined);
    pump();
  });
  return new Promise((res) => srv.listen(0, '127.0.0.1', () => res(srv)));
}

async function benchCli(cipher, size) {
  const secret = randomBytes(32).toString('base64url');
  const source = await startSource(size);
  const server = await startPlait(['server', '--listen', '127.0.0.1:0', '--secret', secret, '--allow-private', '--log-level', 'info'], 'plait server listening');
  const serverPort = Number(String(server.line.listen).split(':').pop());
  const fwd = await freePort();
  const client = await startPlait(
    ['client', '--server', `127.0.0.1:${serverPort}`, '--secret', secret, '--bind', '127.0.0.1', '--cipher', cipher,
      '--forward', `${fwd}:127.0.0.1:${source.address().port}`, '--log-level', 'info'],
    'session established',
  );
  try {
    if (client.line.cipher !== cipher) throw new Error(`client session uses ${client.line.cipher}, wanted ${cipher}`);
    const pids = [client.child.pid, server.child.pid];
    const before = pids.map(procCpuSeconds);
    const t0 = process.hrtime.bigint();
    const got = await new Promise((res, rej) => {
      let n = 0;
      const s = net.connect(fwd, '127.0.0.1');
      s.on('data', (d) => (n += d.length));
      s.on('end', () => res(n));
      s.on('error', rej);
    });
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = pids.map(procCpuSeconds);
    if (got !== size) throw new Error(`received ${got} of ${size} bytes`);
    const [c, s] = after.map((a, i) => a - before[i]);
    return { mbps: size / 1e6 / secs, clientPerGiB: (c * GiB) / size, serverPerGiB: (s * GiB) / size, totalPerGiB: ((c + s) * GiB) / size };
  } finally {
    client.child.kill('SIGTERM');
    server.child.kill('SIGTERM');
    source.close();
  }
}

// ---- run -------------------------------------------------------------------

console.log(`node ${process.version}, ${process.arch}, OpenSSL ${process.versions.openssl}`);
console.log(`\n## Record layer, seal + open, one core, ${RECORD / 1024} KiB records, ${SIZE / MiB} MiB per run\n`);
if (!native.available) console.log(`(OpenSSL directly unavailable: ${native.reason})\n`);
console.log('| cipher | record AEAD | run | MB/s | CPU-s per GiB |');
console.log('|---|---|---|---|---|');
for (const cipher of CIPHERS) {
  for (const [name, aead] of BACKENDS) {
    for (let r = 1; r <= REPS; r++) {
      const x = benchRecords(cipher, SIZE, RECORD, aead);
      console.log(`| ${cipher} | ${name} | ${r} | ${fmt(x.mbps, 0)} | ${fmt(x.cpuPerGiB)} |`);
    }
  }
}
if (!SKIP_CLI) {
  console.log(`\n## Real CLI on loopback, one subflow, --forward download of ${SIZE / MiB} MiB\n`);
  console.log('| cipher | run | MB/s | client CPU-s/GiB | server CPU-s/GiB | client+server CPU-s/GiB |');
  console.log('|---|---|---|---|---|---|');
  for (let r = 1; r <= REPS; r++) {
    for (const cipher of CIPHERS) {
      const x = await benchCli(cipher, SIZE);
      console.log(`| ${cipher} | ${r} | ${fmt(x.mbps, 0)} | ${fmt(x.clientPerGiB)} | ${fmt(x.serverPerGiB)} | ${fmt(x.totalPerGiB)} |`);
    }
  }
}
