#!/usr/bin/env node
// SOCKS5 UDP datagrams through a plait session on two links: latency idle and
// during a bulk download on the same session (next to a TCP request/response on
// a stream under the same download), then loss while the faster link is
// silently blackholed mid-stream. Each measurement runs without and with
// --udp-duplicate. Figures are from one run: this machine is shared and noisy.
//
// Emulated links (default; user-space relays: one-way delay + token-bucket
// rate, no root):
//   npm run build && node scripts/bench-udp.mjs [--count N] [--links 40mbit:10ms,10mbit:60ms]
//       [--dup off|on|both] [--duplicate (= --dup on)] [--bh-secs 10] [--cut-at 3] [--cut-for 4] [--out FILE]
//
// External plait (the packet-level testbed, see scripts/bench-testbed.sh -p udp):
//   node scripts/bench-udp.mjs --serve 127.0.0.1:9005,9006
//       a UDP echo on 9005 and a TCP bulk source on 9006, until killed (run beside the plait server)
//   node scripts/bench-udp.mjs --socks 127.0.0.1:1080 --udp-echo 127.0.0.1:9005 --bulk 127.0.0.1:8006
//       --fastest-rtt MS --cut 'CMD' --restore 'CMD' [--label L] [--stats URL] [--out FILE]
//       one configuration against a running client: CMD blackholes / restores the fastest link.
import { execFile, spawn } from 'node:child_process';
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { freePort, option, sleep } from './lib/bench-kit.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/bin/plait.js');
const args = process.argv.slice(2);
const opt = (name, def) => option(name, def, args);
const COUNT = Number(opt('count', '300'));
const LINKS = opt('links', '40mbit:10ms,10mbit:60ms').split(',');
const DUP = args.includes('--duplicate') ? 'on' : opt('dup', 'both');
const INTERVAL_MS = 20;
// Blackhole phase: a datagram every INTERVAL_MS for BH_SECS; the fastest link is cut at CUT_AT s for CUT_FOR s.
const BH_SECS = Number(opt('bh-secs', '10'));
const CUT_AT = Number(opt('cut-at', '3'));
const CUT_FOR = Number(opt('cut-for', '4'));
// A reply later than this is useless to a voice or game stream: reported as "late" next to the lost ones.
const LATE_MS = 500;
const GRACE_MS = 2000;
const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function parseSpec(s) {
  const m = /^(\d+)mbit:(\d+)ms$/.exec(s);
  if (!m) throw new Error(`bad link spec ${s} (want e.g. 40mbit:10ms)`);
  return { rateBitsPerSec: Number(m[1]) * 1e6, delayMs: Number(m[2]) };
}

function hostPort(s, name) {
  const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(s ?? '');
  if (!m) throw new Error(`--${name} wants IPv4:PORT, got ${s}`);
  return { host: m[1], port: Number(m[2]) };
}

function run(argv) {
  const c = spawn(process.execPath, argv, { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, PLAIT_SECRET: 'bench-secret-0123456789abcdefgh' } });
  children.add(c);
  return c;
}

async function stopChild(c) {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const gone = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await Promise.race([gone, sleep(3000)]);
  c.kill('SIGKILL');
  children.delete(c);
}

async function waitPort(port, host = '127.0.0.1') {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, host, () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`port ${host}:${port} not up`);
}

function readN(sock, n) {
  return new Promise((resolve) => {
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
async function startSource(host = '127.0.0.1', port = 0) {
  const block = Buffer.alloc(1 << 16, 0x61);
  const server = net.createServer((s) => {
    s.on('error', () => undefined);
    const more = () => {
      while (!s.destroyed && s.write(block));
    };
    s.on('drain', more);
    more();
  });
  await new Promise((r) => server.listen(port, host, r));
  return { port: server.address().port, close: () => server.close() };
}

async function startUdpEcho(host = '127.0.0.1', port = 0) {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => s.send(m, r.port, r.address));
  await new Promise((r) => s.bind(port, host, r));
  return { port: s.address().port, close: () => s.close() };
}

/**
 * One SOCKS5 UDP association and the client socket bound to it (the association
 * accepts datagrams from one port only, so every round shares this socket).
 * `send(i)` sends datagram i (160 B, a voice frame) to the echo; `onReply(fn)` sees (i, now).
 */
async function associate(socks, echo) {
  const ctl = net.connect(socks.port, socks.host);
  ctl.on('error', () => undefined);
  await new Promise((r) => ctl.once('connect', r));
  ctl.write(Buffer.from([5, 1, 0]));
  await readN(ctl, 2);
  ctl.write(Buffer.from([5, 3, 0, 1, 0, 0, 0, 0, 0, 0]));
  const reply = await readN(ctl, 10);
  if (reply[1] !== 0) throw new Error(`UDP ASSOCIATE refused (reply ${reply[1]})`);
  const bound = [...reply.subarray(4, 8)].join('.');
  const relay = { host: bound === '0.0.0.0' ? socks.host : bound, port: reply.readUInt16BE(8) };
  const me = dgram.createSocket('udp4');
  await new Promise((r) => me.bind(0, socks.host, r));
  const head = Buffer.from([0, 0, 0, 1, ...echo.host.split('.').map(Number), echo.port >> 8, echo.port & 0xff]);
  let handler = () => undefined;
  me.on('message', (m) => {
    if (m.length >= head.length + 4) handler(m.readUInt32BE(head.length), performance.now());
  });
  return {
    send(i) {
      const body = Buffer.alloc(160);
      body.writeUInt32BE(i, 0);
      me.send(Buffer.concat([head, body]), relay.port, relay.host);
    },
    onReply(fn) {
      handler = fn;
    },
    close() {
      me.close();
      ctl.destroy();
    },
  };
}

/** COUNT datagrams every 20 ms through the association; RTT per (first) reply. */
async function udpRound(assoc) {
  const sentAt = new Map();
  const rtts = [];
  assoc.onReply((i, now) => {
    const t = sentAt.get(i);
    if (t !== undefined) {
      rtts.push(now - t);
      sentAt.delete(i); // a duplicate copy, if any, is not a second sample
    }
  });
  for (let i = 0; i < COUNT; i++) {
    sentAt.set(i, performance.now());
    assoc.send(i);
    await sleep(INTERVAL_MS);
  }
  await sleep(1500);
  return { rtts: rtts.sort((a, b) => a - b), lost: COUNT - rtts.length };
}

/**
 * A datagram every INTERVAL_MS for BH_SECS; `cut()` at CUT_AT s, `restore()` CUT_FOR s later.
 * Times are taken when cut/restore have taken effect (an external command has exited).
 */
async function blackholeRound(assoc, cut, restore) {
  const n = Math.round((BH_SECS * 1000) / INTERVAL_MS);
  const sentAt = new Array(n);
  const gotAt = new Array(n);
  assoc.onReply((i, now) => {
    if (i < n && sentAt[i] !== undefined && gotAt[i] === undefined) gotAt[i] = now;
  });
  const t0 = performance.now();
  let tCut;
  let tRestore;
  const events = (async () => {
    await sleep(CUT_AT * 1000);
    await cut();
    tCut = performance.now();
    await sleep(CUT_FOR * 1000);
    await restore();
    tRestore = performance.now();
  })();
  events.catch(() => undefined); // awaited below; a failing cut/restore command must not crash the stream midway
  for (let i = 0; i < n; i++) {
    // Absolute schedule: a late timer does not stretch the stream.
    const due = t0 + i * INTERVAL_MS;
    const now = performance.now();
    if (due > now) await sleep(due - now);
    sentAt[i] = performance.now();
    assoc.send(i);
  }
  await events;
  await sleep(GRACE_MS);
  const tEnd = sentAt[n - 1];
  const received = gotAt.filter((t) => t !== undefined).length;
  const late = gotAt.filter((t, i) => t !== undefined && t - sentAt[i] > LATE_MS).length;
  const inCut = [...sentAt.keys()].filter((i) => sentAt[i] >= tCut && sentAt[i] < tRestore);
  const lostInCut = inCut.filter((i) => gotAt[i] === undefined).length;
  // Longest span with no reply arriving, over the stream (from its first send to its last send).
  const arrivals = gotAt.filter((t) => t !== undefined && t <= tEnd + LATE_MS).sort((a, b) => a - b);
  let gap = 0;
  let prev = t0;
  for (const t of [...arrivals, tEnd]) {
    gap = Math.max(gap, t - prev);
    prev = Math.max(prev, t);
  }
  // Recovery: the first reply to a datagram sent after the cut, counted from the cut.
  const firstAfter = Math.min(...[...sentAt.keys()].filter((i) => sentAt[i] >= tCut && gotAt[i] !== undefined).map((i) => gotAt[i]));
  const rttsAfterCut = [...sentAt.keys()].filter((i) => sentAt[i] >= tCut + 2000 && sentAt[i] < tRestore && gotAt[i] !== undefined).map((i) => gotAt[i] - sentAt[i]).sort((a, b) => a - b);
  return {
    sent: n,
    lost: n - received,
    lostPct: +((100 * (n - received)) / n).toFixed(1),
    lateOver500ms: late,
    sentDuringCut: inCut.length,
    lostOfSentDuringCut: lostInCut,
    longestGapMs: Math.round(gap),
    firstReplyAfterCutMs: Number.isFinite(firstAfter) ? Math.round(firstAfter - tCut) : null,
    medianRttOnOtherLinkMs: q(rttsAfterCut, 0.5),
    cutAtMs: Math.round(tCut - t0),
    restoredAtMs: Math.round(tRestore - t0),
  };
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

const q = (xs, p) => (xs.length ? +xs[Math.min(xs.length - 1, Math.floor(xs.length * p))].toFixed(1) : null);

async function counters(url) {
  try {
    const st = await (await fetch(url)).json();
    const pick = (o) => Object.fromEntries(Object.entries(o ?? {}).filter(([k, v]) => /datagram|udp|Udp/.test(k) && v !== 0));
    return { ...pick(st.counters), ...pick(st.sessions?.[0]?.counters) };
  } catch (e) {
    return { error: String(e.message ?? e) };
  }
}

/**
 * The measurements against a running plait client: idle, under a bulk download
 * (and a stream request/response if `tcpEchoPort`), then the blackhole round.
 */
async function measure({ socks, echo, bulk, tcpEchoPort, cut, restore, fastestRttMs, statsUrls }) {
  const assoc = await associate(socks, echo);
  const idle = await udpRound(assoc);
  const dl = net.connect(bulk.port, bulk.host);
  let bulkBytes = 0;
  dl.on('data', (d) => (bulkBytes += d.length));
  dl.on('error', () => undefined);
  await sleep(2000);
  const t0 = performance.now();
  const b0 = bulkBytes;
  const [loaded, tcp] = await Promise.all([udpRound(assoc), tcpEchoPort ? tcpRound(tcpEchoPort, Math.round((COUNT * INTERVAL_MS) / 60)) : null]);
  const mbit = ((bulkBytes - b0) * 8) / ((performance.now() - t0) * 1000);
  dl.destroy();
  await sleep(1000); // let the download's queued data drain before the stream
  const bh = await blackholeRound(assoc, cut, restore);
  const ctr = {};
  for (const [k, url] of Object.entries(statsUrls ?? {})) ctr[k] = await counters(url);
  assoc.close();
  const out = {
    idle: { medianMs: q(idle.rtts, 0.5), p99Ms: q(idle.rtts, 0.99), lost: idle.lost },
    underDownload: { medianMs: q(loaded.rtts, 0.5), p99Ms: q(loaded.rtts, 0.99), lost: loaded.lost, downloadMbit: +mbit.toFixed(1) },
  };
  if (tcp) out.tcpStreamUnderDownload = { medianMs: q(tcp, 0.5), p99Ms: q(tcp, 0.99), samples: tcp.length };
  out.blackhole = bh;
  out.ratios = {
    udpIdleMedianOverFastestRtt: +(out.idle.medianMs / fastestRttMs).toFixed(2),
    udpMedianUnderDownloadOverFastestRtt: +(out.underDownload.medianMs / fastestRttMs).toFixed(2),
    udpP99UnderDownloadOverFastestRtt: +(out.underDownload.p99Ms / fastestRttMs).toFixed(2),
  };
  if (tcp) out.ratios.udpMedianOverTcpMedian = +(out.underDownload.medianMs / out.tcpStreamUnderDownload.medianMs).toFixed(2);
  out.counters = ctr;
  return out;
}

/** Emulated links: fresh relays, server and client for one configuration. */
async function emulated(links, duplicate) {
  // Loaded here so the external mode needs only the built CLI, not the test kit.
  const { startEchoServer, startLinkRelay } = await import('@plait/testkit');
  const srvPort = await freePort();
  const relays = [];
  // 'hold' keeps TCP semantics on a blackholed link: nothing is lost in the byte stream, it waits
  // like in a retransmit queue (as bench.mjs's failover), and the relay forwards nothing meanwhile.
  for (const l of links) relays.push(await startLinkRelay({ target: { host: '127.0.0.1', port: srvPort }, delayMs: l.delayMs, rateBitsPerSec: l.rateBitsPerSec, blackhole: 'hold' }));
  const fastest = links.reduce((b, l, i) => (l.delayMs < links[b].delayMs ? i : b), 0);
  const src = await startSource();
  const echo = await startEchoServer();
  const udpEcho = await startUdpEcho();
  const dup = duplicate ? ['--udp-duplicate'] : [];
  const srvStats = await freePort();
  const cliStats = await freePort();
  const server = run([CLI, 'server', '--listen', `127.0.0.1:${srvPort}`, '--allow-private', '--log-level', 'warn', '--stats', `127.0.0.1:${srvStats}`, ...dup]);
  await waitPort(srvPort);
  const socksPort = await freePort();
  const bulkPort = await freePort();
  const echoFwd = await freePort();
  const cargs = [CLI, 'client', '--log-level', 'warn', '--stats', `127.0.0.1:${cliStats}`, '--socks', `127.0.0.1:${socksPort}`, '--forward', `${bulkPort}:127.0.0.1:${src.port}`, '--forward', `${echoFwd}:127.0.0.1:${echo.port}`, ...dup];
  for (const r of relays) cargs.push('--server', `127.0.0.1:${r.port}`);
  const client = run(cargs);
  await waitPort(socksPort);
  await sleep(1500); // both subflows up and measured
  const res = await measure({
    socks: { host: '127.0.0.1', port: socksPort },
    echo: { host: '127.0.0.1', port: udpEcho.port },
    bulk: { host: '127.0.0.1', port: bulkPort },
    tcpEchoPort: echoFwd,
    cut: async () => relays[fastest].cut('blackhole'),
    restore: async () => relays[fastest].restore(),
    fastestRttMs: 2 * links[fastest].delayMs,
    statsUrls: { client: `http://127.0.0.1:${cliStats}/stats`, server: `http://127.0.0.1:${srvStats}/stats` },
  });
  await stopChild(client);
  await stopChild(server);
  for (const r of relays) await r.close();
  src.close();
  await echo.close();
  udpEcho.close();
  return res;
}

const shell = (cmd) =>
  new Promise((resolve, reject) =>
    execFile('/bin/sh', ['-c', cmd], (err, _out, stderr) => (err ? reject(new Error(`${cmd}: ${stderr || err.message}`)) : resolve())),
  );

async function main() {
  const what = `datagrams of 160 B every ${INTERVAL_MS} ms, SOCKS5 UDP ASSOCIATE -> plait -> UDP echo; latency rounds of ${COUNT}; blackhole round ${BH_SECS} s, fastest link cut at ${CUT_AT} s for ${CUT_FOR} s`;
  if (opt('serve')) {
    // Targets for an external plait server: a UDP echo and a TCP bulk source, until killed.
    const [addr, tcpPort] = opt('serve').split(',');
    const u = hostPort(addr, 'serve');
    await startUdpEcho(u.host, u.port);
    await startSource(u.host, Number(tcpPort));
    process.stdout.write(`serving UDP echo on ${addr}, TCP source on ${u.host}:${tcpPort}\n`);
    return;
  }
  if (opt('socks')) {
    const cutCmd = opt('cut');
    const restoreCmd = opt('restore');
    const fastestRttMs = Number(opt('fastest-rtt'));
    if (!cutCmd || !restoreCmd || !(fastestRttMs > 0)) throw new Error('--socks needs --cut CMD, --restore CMD and --fastest-rtt MS');
    const res = await measure({
      socks: hostPort(opt('socks'), 'socks'),
      echo: hostPort(opt('udp-echo'), 'udp-echo'),
      bulk: hostPort(opt('bulk'), 'bulk'),
      cut: () => shell(cutCmd),
      restore: () => shell(restoreCmd),
      fastestRttMs,
      statsUrls: opt('stats') ? { client: opt('stats') } : {},
    });
    emit({ what, label: opt('label', ''), fastestLinkRttMs: fastestRttMs, loadavg: loadavg().map((x) => +x.toFixed(1)), ...res });
    process.exit(0);
  }
  const links = LINKS.map(parseSpec);
  if (!['off', 'on', 'both'].includes(DUP)) throw new Error(`--dup wants off, on or both, got ${DUP}`);
  const out = { what: `${what}; emulated links ${LINKS.join(' + ')}`, fastestLinkRttMs: 2 * Math.min(...links.map((l) => l.delayMs)), loadavg: loadavg().map((x) => +x.toFixed(1)) };
  if (DUP !== 'on') out.single = await emulated(links, false);
  if (DUP !== 'off') out.duplicate = await emulated(links, true);
  emit(out);
  process.exit(0);
}

function emit(o) {
  const text = JSON.stringify(o, null, 2) + '\n';
  process.stdout.write(text);
  if (opt('out')) writeFileSync(opt('out'), text);
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
