#!/usr/bin/env node
// Installability check (issue 8 item 2): `npm pack` at the root gives one tarball that installs
// into an empty prefix with no registry access, and the installed `plait` works: --help,
// --version, keygen, and a real server + client pair moving bytes both ways on loopback (curl
// through the client's SOCKS5 proxy), once with the bundled koffi and once with koffi removed
// (the kernel socket options are optional: plait must still work and must say they are missing).
//
//   node test/system/pack-install.mjs [--keep] [--tarball FILE]
//
// Reuses the built tree (`npm pack` runs `prepare` = `tsc -b`, which is a no-op when dist is
// current). Needs curl. Prints the install prefix with --keep (the deploy checks reuse it).
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const args = process.argv.slice(2);
const keep = args.includes('--keep');
const givenTarball = args.includes('--tarball') ? path.resolve(args[args.indexOf('--tarball') + 1]) : undefined;
const started = Date.now();

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'plait-pack-'));
const children = new Set();
let failed = false;

function step(msg) {
  process.stdout.write(`[pack] ${((Date.now() - started) / 1000).toFixed(1)}s ${msg}\n`);
}
function fail(msg) {
  failed = true;
  throw new Error(msg);
}
function check(cond, msg) {
  if (!cond) fail(msg);
}

/** Run a command to completion; throws with its output when it fails. */
function run(cmd, argv, opts = {}) {
  const r = spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
  if (r.status !== 0) {
    fail(`${cmd} ${argv.join(' ')} exited ${r.status ?? r.signal}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  }
  return r;
}

/** An environment with nothing from this repository in it (npm run puts node_modules/.bin on PATH). */
function cleanEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  env.PATH = (env.PATH ?? '')
    .split(path.delimiter)
    .filter((p) => p && !p.startsWith(ROOT) && !p.includes(`${path.sep}node_modules${path.sep}.bin`))
    .join(path.delimiter);
  for (const k of Object.keys(env)) if (k.startsWith('npm_') || k === 'NODE_PATH' || k === 'PLAIT_SECRET') delete env[k];
  return env;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function startPlait(bin, argv, name) {
  const child = spawn(bin, argv, { cwd: work, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const out = { text: '', exited: undefined };
  child.stdout.on('data', (d) => (out.text += d));
  child.stderr.on('data', (d) => (out.text += d));
  child.on('exit', (code, sig) => {
    out.exited = code ?? sig;
    children.delete(child);
  });
  out.child = child;
  out.name = name;
  return out;
}

async function stop(p) {
  if (p.exited !== undefined) return;
  const done = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  const t = setTimeout(() => p.child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(t);
}

function curl(argv) {
  return new Promise((resolve) => {
    const c = spawn('curl', ['-sS', '--fail', '--max-time', '20', ...argv], { env: cleanEnv() });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A local HTTP target: GET /blob sends `blob`; POST /sha256 answers the hex SHA-256 of the body. */
async function startTarget(blob) {
  const srv = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/blob') {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length });
      res.end(blob);
    } else if (req.method === 'POST' && req.url === '/sha256') {
      const h = createHash('sha256');
      req.on('data', (d) => h.update(d));
      req.on('end', () => res.end(h.digest('hex')));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return srv;
}

const sha256 = (buf) => createHash('sha256').update(buf).digest('hex');

/** Server + client from the installed copy; download and upload `blob` through SOCKS5. */
async function transfer(bin, secretFile, blob, targetPort, label) {
  const [sp, cp, stp] = [await freePort(), await freePort(), await freePort()];
  const server = startPlait(bin, ['server', '--listen', `127.0.0.1:${sp}`, '--secret-file', secretFile, '--allow-private', '--stats', `127.0.0.1:${stp}`], 'server');
  const client = startPlait(
    bin,
    ['client', '--server', `127.0.0.1:${sp}`, '--secret-file', secretFile, '--bind', '127.0.0.1', '--bind', '127.0.0.2', '--socks', `127.0.0.1:${cp}`],
    'client',
  );
  try {
    const blobFile = path.join(work, `blob-${label}`);
    let got;
    const deadline = Date.now() + 20_000;
    for (;;) {
      check(server.exited === undefined, `${label}: server exited (${server.exited}):\n${server.text}`);
      check(client.exited === undefined, `${label}: client exited (${client.exited}):\n${client.text}`);
      got = await curl(['--socks5-hostname', `127.0.0.1:${cp}`, `http://127.0.0.1:${targetPort}/blob`, '-o', blobFile]);
      if (got.code === 0 || Date.now() > deadline) break;
      await sleep(250);
    }
    check(got.code === 0, `${label}: download through SOCKS failed: ${got.stderr}\n--- server\n${server.text}\n--- client\n${client.text}`);
    check(sha256(fs.readFileSync(blobFile)) === sha256(blob), `${label}: downloaded bytes differ`);
    const up = await curl(['--socks5-hostname', `127.0.0.1:${cp}`, '--data-binary', `@${blobFile}`, '-H', 'content-type: application/octet-stream', `http://127.0.0.1:${targetPort}/sha256`]);
    check(up.code === 0, `${label}: upload through SOCKS failed: ${up.stderr}`);
    check(up.stdout.trim() === sha256(blob), `${label}: uploaded bytes differ (${up.stdout.trim()})`);
    const stats = await curl([`http://127.0.0.1:${stp}/stats`]);
    check(stats.code === 0 && stats.stdout.includes('{'), `${label}: server /stats did not answer: ${stats.stderr}`);
    step(`${label}: ${blob.length >> 20} MiB down and up through SOCKS5, hashes match`);
  } finally {
    await stop(client);
    await stop(server);
  }
  return { server: server.text, client: client.text };
}

const SOCKOPT_WARNING = 'kernel socket options unavailable';

async function main() {
  check(spawnSync('curl', ['--version']).status === 0, 'curl is needed (apt-get install curl)');

  // 1. One tarball from `npm pack` at the root.
  let tarball = givenTarball;
  if (!tarball) {
    const packDir = path.join(work, 'pack');
    fs.mkdirSync(packDir);
    const r = run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: ROOT });
    const made = fs.readdirSync(packDir).filter((f) => f.endsWith('.tgz'));
    check(made.length === 1, `npm pack made ${made.length} tarballs: ${made.join(' ')}`);
    tarball = path.join(packDir, made[0]);
    const info = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')))[0];
    const files = info.files.map((f) => f.path);
    const must = ['package.json', 'README.md', 'deploy/systemd/plait-server.service', 'deploy/systemd/plait-client.service'];
    for (const p of ['cli', 'client', 'core', 'node', 'server']) must.push(`node_modules/@plait/${p}/dist/index.js`, `node_modules/@plait/${p}/package.json`);
    must.push('node_modules/@plait/cli/bin/plait.js', 'node_modules/commander/package.json', 'node_modules/pino/package.json', 'node_modules/msgpackr/package.json', 'node_modules/@noble/hashes/package.json', 'node_modules/koffi/package.json');
    for (const m of must) check(files.includes(m), `tarball lacks ${m}`);
    const banned = files.filter((f) =>
      /^node_modules\/@plait\/[^/]+\/(src|test)\//.test(f) ||
      /^node_modules\/@plait\/testkit\//.test(f) ||
      /^node_modules\/(typescript|vitest|vite|fast-check|@types)\//.test(f) ||
      /^packages\//.test(f) ||
      /\.tsbuildinfo$/.test(f),
    );
    check(banned.length === 0, `tarball carries files an install does not need: ${banned.slice(0, 10).join(' ')}`);
    step(`npm pack: ${path.basename(tarball)}, ${(info.size / 1e6).toFixed(1)} MB, ${info.entryCount} files, bundled: ${info.bundled.length} packages`);
  }

  // 2. Install into an empty prefix, offline, with an empty cache: the tarball carries everything.
  const prefix = path.join(work, 'prefix');
  fs.mkdirSync(prefix);
  const inst = run('npm', ['install', '-g', '--prefix', prefix, '--offline', '--cache', path.join(work, 'npm-cache'), '--no-audit', '--no-fund', tarball], {
    cwd: work,
    env: cleanEnv(),
  });
  const bin = path.join(prefix, 'bin', 'plait');
  check(fs.existsSync(bin), `no ${bin} after install:\n${inst.stdout}${inst.stderr}`);
  step(`npm install -g --prefix ${prefix} --offline: ${bin}`);

  // 3. The installed CLI.
  const help = run(bin, ['--help'], { cwd: work, env: cleanEnv() });
  check(help.stdout.includes('Usage: plait') && help.stdout.includes('server') && help.stdout.includes('client'), `plait --help:\n${help.stdout}`);
  const version = run(bin, ['--version'], { cwd: work, env: cleanEnv() }).stdout.trim();
  const rootVersion = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
  check(version === rootVersion, `plait --version says ${version}, package.json ${rootVersion}`);
  const secret = run(bin, ['keygen'], { cwd: work, env: cleanEnv() }).stdout.trim();
  check(/^[A-Za-z0-9_-]{43}$/.test(secret), `plait keygen printed ${JSON.stringify(secret)}`);
  const secretFile = path.join(work, 'secret');
  fs.writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 });
  step(`installed plait --help, --version (${version}), keygen work`);

  // 4. A real server + client pair on loopback, with the bundled koffi...
  const blob = randomBytes(4 << 20);
  const target = await startTarget(blob);
  const targetPort = target.address().port;
  try {
    const koffiDir = path.join(prefix, 'lib', 'node_modules', 'plait', 'node_modules', 'koffi');
    check(fs.existsSync(koffiDir), `koffi is not in the installed copy (${koffiDir})`);
    const withKoffi = await transfer(bin, secretFile, blob, targetPort, 'with koffi');
    check(!withKoffi.server.includes(SOCKOPT_WARNING) && !withKoffi.client.includes(SOCKOPT_WARNING), `with koffi installed, plait still says "${SOCKOPT_WARNING}":\n${withKoffi.server}\n${withKoffi.client}`);

    // ...and without it (a platform koffi has no build for, or an operator who deleted it).
    fs.renameSync(koffiDir, path.join(work, 'koffi.removed'));
    const without = await transfer(bin, secretFile, blob, targetPort, 'without koffi');
    check(without.server.includes(SOCKOPT_WARNING), `without koffi the server does not say "${SOCKOPT_WARNING}":\n${without.server}`);
    check(without.client.includes(SOCKOPT_WARNING), `without koffi the client does not say "${SOCKOPT_WARNING}":\n${without.client}`);
    fs.renameSync(path.join(work, 'koffi.removed'), koffiDir);
    step(`without koffi: works, and both ends log "${SOCKOPT_WARNING}"`);
  } finally {
    target.close();
  }
  if (keep) process.stdout.write(`PLAIT_PREFIX=${prefix}\n`);
  step('ok');
}

try {
  await main();
} catch (err) {
  failed = true;
  process.stderr.write(`[pack] FAIL: ${err instanceof Error ? err.message : String(err)}\n`);
} finally {
  for (const c of children) c.kill('SIGKILL');
  if (!keep || failed) fs.rmSync(work, { recursive: true, force: true });
  process.exitCode = failed ? 1 : 0;
}
