#!/usr/bin/env node
// SOCKS5 UDP datagram latency through a plait session on two emulated links
// (user-space relays: one-way delay + token-bucket rate), idle and during a
// bulk download on the same session, next to a TCP request/response on a
// stream under the same download. No root needed. Figures are ratios from
// one run: this machine is shared and noisy.
//
//   npm run build && node scripts/bench-udp.mjs [--count N] [--links 40mbit:10ms,10mbit:60ms] [--duplicate]
import { spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEchoServer, startLinkRelay } from '@plait/testkit';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/bin/plait.js');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
};
const COUNT = Number(opt('count', '300'));
const LINKS = opt('links', '40mbit:10ms,10mbit:60ms').split(',');
const DUPLICATE = args.includes('--duplicate');
const INTERVAL_MS = 20;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function parseSpec(s) {
  const m = /^(\d+)mbit:(\d+)ms$/.exec(s);
  if (!m) throw new Error(`bad link spec ${s} (want e.g. 40mbit:10ms)`);
  return { rateBitsPerSec: Number(m[1]) * 1e6, delayMs: Number(m[2]) };
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

function run(argv) {
  const c = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PLAIT_SECRET: 'bench-secret-0123456789abcdefgh' } });
  children.add(c);
  return c;
}

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

function readN(sock, n) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const on = (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= n) {
        sock.off('data', on);
        resolve(buf);
      }
    };
    sock.on('data', on);
  });
}

/** A TCP source that streams bytes until the reader goes away. */
async function startSource() {
  const block = Buffer.alloc(1 << 16, 0x61);
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    const more = () => {
      while (!s.destroyed && s.write(block));
    };
    s.on('drain', more);
    more();
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, close: () => server.close() };
}

/** COUNT datagrams of 160 bytes (a voice frame) every 20 ms through the association; RTT per reply. */
async function udpRound(me, relayPort, echoPort) {
  const sentAt = new Map();
  const rtts = [];
  me.removeAllListeners('message');
  me.on('message', (m) => {
    const i = m.readUInt32BE(10);
    const t = sentAt.get(i);
    if (t !== undefined) {
      rtts.push(performance.now() - t);
      sentAt.delete(i);
    }
  });
  const head = Buffer.from([0, 0, 0, 1, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff]);
  for (let i = 0; i < COUNT; i++) {
    const body = Buffer.alloc(160);
    body.writeUInt32BE(i, 0);
    sentAt.set(i, performance.now());
    me.send(Buffer.concat([head, body]), relayPort, '127.0.0.1');
    await sleep(INTERVAL_MS);
  }
  await sleep(1500);
  return { rtts: rtts.sort((a, b) => a - b), lost: COUNT - rtts.length };
}

/** 1 KiB request/response on a stream every 50 ms, `n` times. */
async function tcpRound(port, n) {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise((r) => sock.once('connect', r));
  const rtts = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const got = readN(sock, 1024);
    sock.write(Buffer.alloc(1024, 0x42));
    await got;
    rtts.push(performance.now() - t);
    await sleep(50);
  }
  sock.destroy();
  return rtts.sort((a, b) => a - b);
}

const q = (xs, p) => (xs.length ? +xs[Math.min(xs.length - 1, Math.floor(xs.length * p))].toFixed(1) : NaN);

async function main() {
  const links = LINKS.map(parseSpec);
  const srvPort = await freePort();
  const relays = [];
  for (const l of links) relays.push(await startLinkRelay({ target: { host: '127.0.0.1', port: srvPort }, delayMs: l.delayMs, rateBitsPerSec: l.rateBitsPerSec }));
  const src = await startSource();
  const echo = await startEchoServer();
  const udpEcho = dgram.createSocket('udp4');
  udpEcho.on('message', (m, r) => udpEcho.send(m, r.port, r.address));
  await new Promise((r) => udpEcho.bind(0, '127.0.0.1', r));
  const dup = DUPLICATE ? ['--udp-duplicate'] : [];
  const srvStats = await freePort();
  const cliStats = await freePort();
  run([CLI, 'server', '--listen', `127.0.0.1:${srvPort}`, '--allow-private', '--log-level', 'warn', '--stats', `127.0.0.1:${srvStats}`, ...dup]);
  await waitPort(srvPort);
  const socksPort = await freePort();
  const bulkPort = await freePort();
  const echoFwd = await freePort();
  const cargs = [CLI, 'client', '--log-level', 'warn', '--stats', `127.0.0.1:${cliStats}`, '--socks', `127.0.0.1:${socksPort}`, '--forward', `${bulkPort}:127.0.0.1:${src.port}`, '--forward', `${echoFwd}:127.0.0.1:${echo.port}`, ...dup];
  for (const r of relays) cargs.push('--server', `127.0.0.1:${r.port}`);
  run(cargs);
  await waitPort(socksPort);
  await sleep(1500); // both subflows up and measured

  // One association for the whole run.
  const ctl = net.connect(socksPort, '127.0.0.1');
  await new Promise((r) => ctl.once('connect', r));
  ctl.write(Buffer.from([5, 1, 0]));
  await readN(ctl, 2);
  ctl.write(Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
  const reply = await readN(ctl, 10);
  const relayPort = reply.readUInt16BE(8);
  const udpPort = udpEcho.address().port;

  // One client socket for both rounds: the association accepts datagrams from one port only.
  const me = dgram.createSocket('udp4');
  await new Promise((r) => me.bind(0, '127.0.0.1', r));
  const idle = await udpRound(me, relayPort, udpPort);
  // Bulk download on the same session, then the same measurements under it.
  const bulk = net.connect(bulkPort, '127.0.0.1');
  let bulkBytes = 0;
  bulk.on('data', (d) => (bulkBytes += d.length));
  bulk.on('error', () => undefined);
  await sleep(2000);
  const t0 = performance.now();
  const b0 = bulkBytes;
  const [loaded, tcp] = await Promise.all([udpRound(me, relayPort, udpPort), tcpRound(echoFwd, Math.round((COUNT * INTERVAL_MS) / 60))]);
  const mbit = ((bulkBytes - b0) * 8) / ((performance.now() - t0) * 1000);
  const counters = async (port) => {
    const st = await (await fetch(`http://127.0.0.1:${port}/stats`)).json();
    const pick = (o) => Object.fromEntries(Object.entries(o ?? {}).filter(([k, v]) => /datagram|udp|Udp/.test(k) && v !== 0));
    return { ...pick(st.counters), ...pick(st.sessions?.[0]?.counters) };
  };
  const dropCounters = { client: await counters(cliStats), server: await counters(srvStats) };
  bulk.destroy();
  ctl.destroy();
  me.close();

  const fastest = 2 * Math.min(...links.map((l) => l.delayMs));
  const out = {
    what: `${COUNT} SOCKS5 UDP datagrams (160 B, every ${INTERVAL_MS} ms) echoed on loopback through plait over ${LINKS.join(' + ')}${DUPLICATE ? ', --udp-duplicate' : ''}`,
    fastestLinkRttMs: fastest,
    idle: { medianMs: q(idle.rtts, 0.5), p99Ms: q(idle.rtts, 0.99), lost: idle.lost },
    underDownload: { medianMs: q(loaded.rtts, 0.5), p99Ms: q(loaded.rtts, 0.99), lost: loaded.lost, downloadMbit: +mbit.toFixed(1) },
    tcpStreamUnderDownload: { medianMs: q(tcp, 0.5), p99Ms: q(tcp, 0.99), samples: tcp.length },
  };
  out.counters = dropCounters;
  out.ratios = {
    udpMedianOverFastestRtt: +(out.underDownload.medianMs / fastest).toFixed(2),
    udpMedianOverTcpMedian: +(out.underDownload.medianMs / out.tcpStreamUnderDownload.medianMs).toFixed(2),
  };
  process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  for (const r of relays) await r.close();
  src.close();
  await echo.close();
  udpEcho.close();
  process.exit(0);
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
