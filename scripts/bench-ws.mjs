#!/usr/bin/env node
// A WebSocket subflow against a TCP subflow on loopback, measured side by side in one run:
// one `plait server` listening on TCP and on ws:// at once, two `plait client`s with one path
// each (one to the TCP listener, one to the ws:// one), each forwarding a local port to a source
// (download) and to a sink (upload) through the server. Runs alternate TCP, ws, TCP, ws, ... so
// drift in the machine's load hits both alike; figures are medians and the ws/TCP ratio.
// CPU = utime + stime of that client and the server over the transfer. Prints a table and writes
// bench-results/ws-vs-tcp.json.
//
//   node scripts/bench-ws.mjs [--mib N] [--rounds N]      (default 512 MiB per transfer, 3 rounds)
import { mkdirSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpuOf, freePort, median, option, runNode, sleep, startCountingSink, startSource, stop, uploadThrough, waitPort } from './lib/bench-kit.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/bin/plait.js');
const args = process.argv.slice(2);
const opt = (name, def) => option(name, def, args);
const N = Number(opt('mib', '512')) * 1024 * 1024;
const ROUNDS = Number(opt('rounds', '3'));
const GiB = N / 2 ** 30;
const SECRET = 'bench-ws-secret-0123456789abcdefgh';
const run = (argv, label) => runNode(argv, label, { PLAIT_SECRET: SECRET });

async function waitFor(what, probe, ms = 15_000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await probe().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const download = (port) =>
  new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const t0 = performance.now();
    let n = 0;
    let expect = 0;
    let corrupt = false;
    s.on('data', (d) => {
      for (let i = 0; i < d.length; i += 4093) if (d[i] !== ((expect + i) & 0xff)) corrupt = true;
      expect += d.length;
      n += d.length;
      if (n >= N) {
        s.destroy();
        if (corrupt) reject(new Error('corrupt download'));
        else resolve((n * 8) / ((performance.now() - t0) / 1000) / 1e6);
      }
    });
    s.on('error', reject);
  });

async function main() {
  const src = await startSource();
  const sink = await startCountingSink();
  const tcpPort = await freePort();
  const wsPort = await freePort();
  const server = run([CLI, 'server', '--listen', `127.0.0.1:${tcpPort}`, '--listen', `ws://127.0.0.1:${wsPort}/plait`, '--allow-private', '--log-level', 'warn'], 'server');
  await waitPort(tcpPort);
  await waitPort(wsPort);
  const startClient = async (label, serverArg) => {
    const statsPort = await freePort();
    const down = await freePort();
    const up = await freePort();
    const c = run(
      [CLI, 'client', '--server', serverArg, '--bind', '127.0.0.1', '--stats', `127.0.0.1:${statsPort}`, '--log-level', 'warn',
        '--forward', `${down}:127.0.0.1:${src.port}`, '--forward', `${up}:127.0.0.1:${sink.port}`],
      label,
    );
    await waitFor(`${label} session`, async () => {
      const st = await (await fetch(`http://127.0.0.1:${statsPort}/stats`)).json();
      return st.sessions?.[0]?.subflows?.some((s) => s.state === 'active');
    });
    return { label, proc: c, down, up };
  };
  const clients = [await startClient('tcp', `127.0.0.1:${tcpPort}`), await startClient('ws', `ws://127.0.0.1:${wsPort}/plait`)];
  const results = { tcp: { download: [], upload: [] }, ws: { download: [], upload: [] } };
  const measure = async (c, direction) => {
    const procs = [c.proc, server];
    for (const p of procs) if (p.exitCode !== null || p.signalCode !== null) throw new Error(`${p === server ? 'server' : c.label} is gone`);
    const cpu0 = cpuOf(procs);
    const transfer = direction === 'download' ? download(c.down) : uploadThrough(sink, c.up, N);
    const mbps = await Promise.race([transfer, sleep(300_000).then(() => Promise.reject(new Error(`${c.label} ${direction} did not finish in 300 s`)))]);
    const cpu = cpuOf(procs) - cpu0;
    results[c.label][direction].push({ mbps, cpuPerGiB: cpu / GiB });
  };
  for (let r = 0; r < ROUNDS; r++) {
    for (const direction of ['download', 'upload']) for (const c of clients) await measure(c, direction);
  }
  for (const c of clients) stop(c.proc);
  stop(server);
  src.close();
  sink.close();

  const rows = [];
  for (const direction of ['download', 'upload']) {
    const t = results.tcp[direction];
    const w = results.ws[direction];
    const tM = median(t.map((x) => x.mbps));
    const wM = median(w.map((x) => x.mbps));
    const tC = median(t.map((x) => x.cpuPerGiB));
    const wC = median(w.map((x) => x.cpuPerGiB));
    rows.push({
      direction,
      tcpMbps: Math.round(tM),
      wsMbps: Math.round(wM),
      throughputRatio: +(wM / tM).toFixed(2),
      tcpCpuSecPerGiB: +tC.toFixed(2),
      wsCpuSecPerGiB: +wC.toFixed(2),
      cpuRatio: +(wC / tC).toFixed(2),
      runs: { tcpMbps: t.map((x) => Math.round(x.mbps)), wsMbps: w.map((x) => Math.round(x.mbps)) },
    });
  }
  const meta = { date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model, mibPerTransfer: N / 2 ** 20, rounds: ROUNDS };
  process.stdout.write(`WebSocket vs TCP subflow, loopback, one path, ${N / 2 ** 20} MiB per transfer, median of ${ROUNDS} alternating runs\n`);
  process.stdout.write('direction  TCP Mbit/s  ws Mbit/s  ws/TCP  TCP CPU s/GiB  ws CPU s/GiB  ws/TCP\n');
  for (const r of rows) {
    process.stdout.write(
      `${r.direction.padEnd(9)}  ${String(r.tcpMbps).padStart(10)}  ${String(r.wsMbps).padStart(9)}  ${r.throughputRatio.toFixed(2).padStart(6)}  ${r.tcpCpuSecPerGiB.toFixed(2).padStart(13)}  ${r.wsCpuSecPerGiB.toFixed(2).padStart(12)}  ${r.cpuRatio.toFixed(2).padStart(6)}\n`,
    );
  }
  mkdirSync(join(ROOT, 'bench-results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench-results', 'ws-vs-tcp.json'), JSON.stringify({ meta, rows }, null, 2) + '\n');
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`bench-ws: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
});
