#!/usr/bin/env node
// testbed-tools.mjs - traffic endpoints, pollers and the report for scripts/bench-testbed.sh.
// Plain Node ESM, no dependencies. Every timestamp is wall-clock epoch ms with
// sub-ms precision (performance.timeOrigin + performance.now()), so records made
// in different network namespaces / processes line up with `date +%s.%N`.
//
//   serve   --listen H:P --mode sink|source|echo [--secs T] [--once] [--out FILE]
//   connect --to H:P [--bind ADDR] --mode send|recv|rr [--secs T] [--out FILE]
//           [--bytes N]   (send/source: stop after N bytes, or at --secs, whichever is first)
//   first-byte --to H:P --since EPOCH_MS [--timeout S] [--out FILE]   (startup: first echo through a forward)
//           [--interval MS] [--size BYTES]          (rr: request/response round trips)
//   poll    [--url URL] [--ifaces nbc1,nbc2] [--ss] [--interval MS] --out FILE.jsonl
//           (until SIGTERM; one JSON line per tick)
//   wait-session --url URL --subflows N [--timeout S]   exit 0 once N subflows are active
//   report  --dir RUNDIR --out FILE.json              read RUNDIR/manifest.jsonl, print table
//
// Bulk data is a fixed pseudo-random block of PERIOD bytes (a prime-ish length,
// not a power of two) repeated: the receiver checks each byte against its stream
// offset (so loss, duplication or reordering is caught and located) and both
// sides hash the whole stream with sha256.
import * as net from 'node:net';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';

const now = () => performance.timeOrigin + performance.now();
const BIN_MS = 10;
const PERIOD = 1048583; // bytes
const CHUNK = 64 * 1024;

function makePattern() {
  // deterministic: sha256 counter mode from a fixed seed
  const block = Buffer.alloc(2 * PERIOD + CHUNK);
  let off = 0;
  for (let i = 0; off < PERIOD; i++) {
    const h = crypto.createHash('sha256').update(`plait-testbed-${i}`).digest();
    off += h.copy(block, off, 0, Math.min(h.length, PERIOD - off));
  }
  block.copy(block, PERIOD, 0, PERIOD);
  block.copy(block, 2 * PERIOD, 0, CHUNK);
  return block;
}

function parseArgs(argv) {
  const a = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s.startsWith('--')) {
      const k = s.slice(2);
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) a[k] = true;
      else { a[k] = v; i++; }
    } else a._.push(s);
  }
  return a;
}
const hostPort = (s) => {
  const i = s.lastIndexOf(':');
  return { host: s.slice(0, i), port: Number(s.slice(i + 1)) };
};
const writeJson = (file, obj) => {
  const s = JSON.stringify(obj) + '\n';
  if (file) fs.writeFileSync(file, s); else process.stdout.write(s);
};

// ---------------------------------------------------------------- receiver
class Receiver {
  constructor() {
    this.pattern = makePattern();
    this.hash = crypto.createHash('sha256');
    this.bytes = 0;
    this.bins = [];
    this.firstByte = 0;
    this.lastByte = 0;
    this.badOffset = -1;
    this.t0 = now();
  }
  push(chunk) {
    const t = now();
    if (!this.firstByte) this.firstByte = t;
    this.lastByte = t;
    if (this.badOffset < 0) {
      let off = 0;
      while (off < chunk.length) {
        const n = Math.min(chunk.length - off, CHUNK);
        const p = (this.bytes + off) % PERIOD;
        if (this.pattern.compare(chunk, off, off + n, p, p + n) !== 0) {
          for (let i = 0; i < n; i++) if (chunk[off + i] !== this.pattern[p + i]) { this.badOffset = this.bytes + off + i; break; }
          break;
        }
        off += n;
      }
    }
    this.hash.update(chunk);
    this.bytes += chunk.length;
    const b = Math.floor((t - this.firstByte) / BIN_MS);
    while (this.bins.length <= b) this.bins.push(0);
    this.bins[b] += chunk.length;
  }
  result(extra) {
    return {
      role: 'receiver', connectEpochMs: this.t0, firstByteEpochMs: this.firstByte, lastByteEpochMs: this.lastByte,
      endEpochMs: now(), bytes: this.bytes, sha256: this.hash.digest('hex'), patternOk: this.badOffset < 0,
      firstBadOffset: this.badOffset, binMs: BIN_MS, bins: this.bins, ...extra,
    };
  }
}

function runReceiver(sock, out, onDone) {
  const r = new Receiver();
  let done = false;
  const finish = (complete, err) => {
    if (done) return;
    done = true;
    writeJson(out, r.result({ complete, error: err ? String(err.message ?? err) : undefined }));
    onDone?.();
  };
  sock.on('data', (c) => r.push(c));
  sock.on('end', () => { finish(true); sock.end(); });
  sock.on('error', (e) => finish(false, e));
  sock.on('close', () => finish(false, 'closed without FIN'));
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { finish(false, sig); process.exit(0); });
}

// ---------------------------------------------------------------- sender
function runSender(sock, secs, out, onDone, maxBytes = Infinity) {
  const pattern = makePattern();
  const hash = crypto.createHash('sha256');
  let off = 0;
  const t0 = now();
  const until = t0 + secs * 1000;
  let ended = false;
  let done = false;
  const finish = (complete, err) => {
    if (done) return;
    done = true;
    writeJson(out, { role: 'sender', startEpochMs: t0, endEpochMs: now(), bytes: off, sha256: hash.digest('hex'), complete, error: err ? String(err.message ?? err) : undefined });
    onDone?.();
  };
  const pump = () => {
    while (!ended) {
      if (now() >= until) {
        ended = true;
        sock.end();
        return;
      }
      if (off >= maxBytes) {
        ended = true;
        sock.end();
        return;
      }
      const p = off % PERIOD;
      const chunk = pattern.subarray(p, p + Math.min(CHUNK, maxBytes - off));
      hash.update(chunk);
      off += chunk.length;
      if (!sock.write(chunk)) { sock.once('drain', pump); return; }
    }
  };
  // the stream ends by time even if the socket never drains (a stuck path)
  const timer = setTimeout(() => { if (!ended) { ended = true; sock.end(); } }, secs * 1000 + 50);
  sock.on('finish', () => { clearTimeout(timer); });
  sock.on('close', () => finish(ended));
  sock.on('error', (e) => finish(false, e));
  sock.on('data', () => {});
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { finish(false, sig); process.exit(0); });
  pump();
}

// ---------------------------------------------------------------- rr (request/response)
function runRR(sock, secs, intervalMs, size, out, onDone) {
  const samples = [];
  const req = crypto.randomBytes(size);
  let got = 0;
  let sentAt = 0;
  const t0 = now();
  let timer;
  let done = false;
  const finish = (err) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    writeJson(out, { role: 'rr', startEpochMs: t0, endEpochMs: now(), size, intervalMs, samples, pendingAtEnd: sentAt ? 1 : 0, error: err ? String(err.message ?? err) : undefined });
    sock.destroy();
    onDone?.();
  };
  let next = t0;
  const send = () => {
    if (now() - t0 >= secs * 1000) return finish();
    sentAt = now();
    got = 0;
    sock.write(req);
  };
  sock.on('data', (c) => {
    got += c.length;
    if (sentAt && got >= size) {
      const t = now();
      samples.push([Math.round((sentAt - t0) * 10) / 10, Math.round((t - sentAt) * 1000) / 1000]);
      sentAt = 0;
      next += intervalMs;
      while (next < t) next += intervalMs; // no catch-up bursts after a slow answer
      timer = setTimeout(send, next - t);
    }
  });
  sock.on('error', (e) => finish(e));
  sock.on('close', () => finish());
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => { finish('killed'); process.exit(0); });
  send();
}

// ---------------------------------------------------------------- commands
function cmdServe(a) {
  const { host, port } = hostPort(a.listen);
  const secs = Number(a.secs ?? 20);
  let n = 0;
  const server = net.createServer((sock) => {
    n++;
    sock.setNoDelay(true);
    const out = a.out ? (a.once ? a.out : `${a.out}.${n}`) : undefined;
    const done = () => { if (a.once) { server.close(); setTimeout(() => process.exit(0), 50); } };
    // --once: serve one connection, but keep listening until it ends (MPTCP MP_JOIN subflows need the listener)
    if (a.mode === 'sink') runReceiver(sock, out, done);
    else if (a.mode === 'source') runSender(sock, secs, out, done, a.bytes ? Number(a.bytes) : Infinity);
    else if (a.mode === 'echo') { sock.pipe(sock); sock.on('error', () => {}); }
    else throw new Error(`bad --mode ${a.mode}`);
  });
  server.listen(port, host, () => { if (a.ready) fs.writeFileSync(a.ready, 'ready\n'); });
  process.on('SIGTERM', () => process.exit(0));
}

function cmdConnect(a) {
  const { host, port } = hostPort(a.to);
  const secs = Number(a.secs ?? 20);
  const opts = { host, port, noDelay: true };
  if (a.bind) opts.localAddress = a.bind;
  const sock = net.connect(opts);
  const timeout = setTimeout(() => { console.error('connect timeout'); process.exit(3); }, 10000);
  sock.once('connect', () => {
    clearTimeout(timeout);
    const exit = () => setTimeout(() => process.exit(0), 20);
    if (a.mode === 'send') runSender(sock, secs, a.out, exit, a.bytes ? Number(a.bytes) : Infinity);
    else if (a.mode === 'recv') runReceiver(sock, a.out, exit);
    else if (a.mode === 'rr') runRR(sock, secs, Number(a.interval ?? 50), Number(a.size ?? 1024), a.out, exit);
    else throw new Error(`bad --mode ${a.mode}`);
  });
  sock.once('error', (e) => { if (!sock.connecting) return; console.error(`connect ${a.to}: ${e.message}`); process.exit(3); });
}

// first-byte: time from --since (epoch ms, when the client was started) until one
// byte makes the round trip through an echo forward; retries while the client
// is still coming up (listener not open yet, stream refused).
function cmdFirstByte(a) {
  const { host, port } = hostPort(a.to);
  const since = Number(a.since ?? Date.now());
  const deadline = Date.now() + Number(a.timeout ?? 30) * 1000;
  let attempts = 0;
  const done = (ok, why) => {
    const res = { ok, firstByteMs: ok ? Date.now() - since : null, attempts, ...(why ? { why } : {}) };
    if (a.out) fs.writeFileSync(a.out, JSON.stringify(res) + '\n');
    console.log(JSON.stringify(res));
    process.exit(ok ? 0 : 1);
  };
  const attempt = () => {
    if (Date.now() > deadline) return done(false, 'timeout');
    attempts++;
    const sock = net.connect({ host, port, noDelay: true });
    let settled = false;
    const retry = () => { if (settled) return; settled = true; sock.destroy(); setTimeout(attempt, 50); };
    sock.once('connect', () => sock.write('x'));
    sock.once('data', () => { settled = true; sock.destroy(); done(true); });
    sock.once('error', retry);
    sock.once('close', retry);
  };
  attempt();
}

function getJson(url, timeoutMs = 300) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch { resolve(null); } });
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(null));
  });
}

function slimStats(s) {
  if (!s) return null;
  return (s.sessions ?? []).map((x) => ({
    counters: x.counters, recvBuffered: x.recvBufferedBytes,
    sub: x.subflows.map((f) => ({ id: f.id, local: f.local, remote: f.remote, state: f.state, backup: f.backup, rtt: f.rttMs, minRtt: f.minRttMs,
      rate: f.rateBytesPerSec, inflight: f.inflightBytes, cap: f.capBytes, sent: f.bytesSent, recv: f.bytesReceived, reinj: f.bytesReinjected, suspect: f.suspectCount })),
  }));
}

function ssSample() {
  // kernel view of every TCP socket (plait subflows, or MPTCP subflows): bytes and cwnd per local address
  let txt = '';
  try { txt = execFileSync('ss', ['-tinH', 'state', 'established'], { encoding: 'utf8', timeout: 500 }); } catch { return null; }
  const rows = [];
  const lines = txt.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const m = lines[i].match(/^\S*\s*\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+)/);
    if (!m) continue;
    const info = (lines[i + 1] ?? '').startsWith('\t') || /^\s/.test(lines[i + 1] ?? '') ? lines[i + 1] : '';
    const num = (re) => { const x = info.match(re); return x ? Number(x[1]) : undefined; };
    rows.push({ l: `${m[1]}:${m[2]}`, r: `${m[3]}:${m[4]}`, cwnd: num(/cwnd:(\d+)/), rtt: num(/ rtt:([\d.]+)/), minrtt: num(/minrtt:([\d.]+)/),
      acked: num(/bytes_acked:(\d+)/), rto: num(/ rto:([\d.]+)/), backoff: num(/backoff:(\d+)/), rcvd: num(/bytes_received:(\d+)/), retrans: num(/bytes_retrans:(\d+)/), unacked: num(/unacked:(\d+)/) });
  }
  return rows;
}

function cmdPoll(a) {
  const interval = Number(a.interval ?? 100);
  const ifaces = a.ifaces ? String(a.ifaces).split(',') : [];
  const fd = fs.openSync(a.out, 'w');
  let stop = false;
  process.on('SIGTERM', () => { stop = true; });
  process.on('SIGINT', () => { stop = true; });
  const tick = async () => {
    if (stop) { fs.closeSync(fd); process.exit(0); }
    const t = now();
    const rec = { t };
    if (a.url) rec.stats = slimStats(await getJson(a.url));
    if (ifaces.length) {
      rec.ifc = {};
      for (const i of ifaces) {
        try {
          rec.ifc[i] = [Number(fs.readFileSync(`/sys/class/net/${i}/statistics/tx_bytes`, 'utf8')), Number(fs.readFileSync(`/sys/class/net/${i}/statistics/rx_bytes`, 'utf8'))];
        } catch { /* gone */ }
      }
    }
    if (a.ss) rec.ss = ssSample();
    fs.writeSync(fd, JSON.stringify(rec) + '\n');
    setTimeout(tick, Math.max(0, interval - (now() - t)));
  };
  tick();
}

async function cmdWaitSession(a) {
  const want = Number(a.subflows ?? 1);
  const until = now() + Number(a.timeout ?? 10) * 1000;
  let last = null;
  while (now() < until) {
    const s = await getJson(a.url);
    last = s;
    const subs = s?.sessions?.[0]?.subflows ?? [];
    if (subs.filter((f) => f.state === 'active').length >= want) { console.log(`session up: ${subs.map((f) => `${f.local}->${f.remote} ${f.state}`).join(', ')}`); process.exit(0); }
    await new Promise((r) => setTimeout(r, 100));
  }
  console.error(`session not up within ${a.timeout ?? 10}s: ${JSON.stringify(last?.sessions?.[0]?.subflows ?? last)}`);
  process.exit(1);
}

// ---------------------------------------------------------------- report
const readJson = (f) => { try { return JSON.parse(fs.readFileSync(f, 'utf8')); } catch { return null; } };
const readJsonl = (f) => { try { return fs.readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)); } catch { return []; } };
const median = (xs) => { const v = xs.filter((x) => Number.isFinite(x)).sort((p, q) => p - q); if (!v.length) return null; const m = v.length >> 1; return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2; };
const pct = (xs, p) => { const v = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y); if (!v.length) return null; return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))]; };
/** The link a socket / subflow is on: its 10.77.k.1 end (client side), whichever of the two it is. */
const linkKey = (a, b) => {
  const strip = (x) => String(x ?? '').replace(/^\[(?:::ffff:)?|\]/g, '').replace(/:\d+$/, '').replace(/^::ffff:/, '').replace(/%.*$/, '');
  return [a, b].map(strip).find((x) => /^10\.77\.\d+\.1$/.test(x)) ?? strip(a);
};
const r2 = (x, d = 2) => (x === null || x === undefined || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);

/** Goodput (Mbit/s) of bytes delivered in [warm, secs) after the receiver's first byte. */
function windowGoodput(rec, warm, secs) {
  if (!rec || !rec.bins) return null;
  const a = Math.round((warm * 1000) / rec.binMs), b = Math.round((secs * 1000) / rec.binMs);
  let s = 0;
  for (let i = a; i < b && i < rec.bins.length; i++) s += rec.bins[i];
  return (s * 8) / ((secs - warm) * 1e6);
}

function intact(rec, snd) {
  if (!rec) return { ok: false, why: 'no receiver record' };
  const why = [];
  if (!rec.complete) why.push(`receiver incomplete (${rec.error ?? '?'})`);
  if (!rec.patternOk) why.push(`pattern mismatch at byte ${rec.firstBadOffset}`);
  if (snd) {
    if (snd.bytes !== rec.bytes) why.push(`sent ${snd.bytes} B, received ${rec.bytes} B`);
    if (snd.sha256 !== rec.sha256) why.push('sha256 differs');
  } else why.push('no sender record');
  return { ok: why.length === 0, bytes: rec.bytes, sha256Match: snd ? snd.sha256 === rec.sha256 : null, why: why.join('; ') || undefined };
}

/** Per-subflow summary from a poll file of a plait /stats endpoint. */
function subflowSummary(polls, fromT, toT) {
  const inWin = polls.filter((p) => p.t >= fromT && p.t <= toT && p.stats && p.stats[0]);
  if (inWin.length < 2) return null;
  const byLocal = {};
  const first = inWin[0].stats[0].sub, last = inWin[inWin.length - 1].stats[0].sub;
  for (const p of inWin) {
    for (const f of p.stats[0].sub) {
      const k = linkKey(f.local, f.remote);
      const e = (byLocal[k] ??= { rtt: [], minRtt: [], inflight: [], cap: [], rate: [], states: new Set(), ids: new Set() });
      e.rtt.push(f.rtt); e.minRtt.push(f.minRtt); e.inflight.push(f.inflight); e.cap.push(f.cap); e.rate.push(f.rate); e.states.add(f.state); e.ids.add(f.id);
    }
  }
  const delta = (field) => {
    const out = {};
    for (const f of last) {
      const k = linkKey(f.local, f.remote);
      const f0 = first.find((x) => x.id === f.id);
      out[k] = (out[k] ?? 0) + f[field] - (f0 ? f0[field] : 0);
    }
    return out;
  };
  const sent = delta('sent'), recv = delta('recv');
  const totS = Object.values(sent).reduce((x, y) => x + y, 0) || 1, totR = Object.values(recv).reduce((x, y) => x + y, 0) || 1;
  const res = {};
  for (const [k, e] of Object.entries(byLocal)) {
    res[k] = {
      sentShare: r2((sent[k] ?? 0) / totS, 3), recvShare: r2((recv[k] ?? 0) / totR, 3), sentBytes: sent[k] ?? 0, recvBytes: recv[k] ?? 0,
      rttMedianMs: r2(median(e.rtt), 1), rttP95Ms: r2(pct(e.rtt, 95), 1), minRttMs: r2(median(e.minRtt), 1),
      inflightMedianKB: r2(median(e.inflight) / 1024, 1), capMedianKB: r2(median(e.cap) / 1024, 1), rateMedianMbit: r2((median(e.rate) * 8) / 1e6, 2),
      states: [...e.states], subflowIds: [...e.ids],
    };
  }
  const c0 = inWin[0].stats[0].counters, c1 = inWin[inWin.length - 1].stats[0].counters;
  const counters = {};
  for (const k of Object.keys(c1 ?? {})) if ((c1[k] ?? 0) - (c0?.[k] ?? 0)) counters[k] = c1[k] - (c0?.[k] ?? 0);
  return { perLocal: res, counterDeltas: counters };
}

/** Kernel socket view (ss) per local address: median cwnd and srtt over the window. */
function ssSummary(polls, fromT, toT, portFilter) {
  const byLocal = {};
  for (const p of polls) {
    if (p.t < fromT || p.t > toT || !p.ss) continue;
    for (const s of p.ss) {
      if (portFilter && !portFilter(s)) continue;
      const k = linkKey(s.l, s.r);
      if (!k.startsWith('10.77.')) continue;
      const e = (byLocal[k] ??= { cwnd: [], rtt: [], unacked: [] });
      if (s.cwnd) e.cwnd.push(s.cwnd);
      if (s.rtt) e.rtt.push(s.rtt);
      if (s.unacked !== undefined) e.unacked.push(s.unacked);
    }
  }
  const out = {};
  for (const [k, e] of Object.entries(byLocal)) out[k] = { cwndMedian: median(e.cwnd), srttMedianMs: r2(median(e.rtt), 1), srttP95Ms: r2(pct(e.rtt, 95), 1), unackedMedian: median(e.unacked) };
  return out;
}

function failoverAnalysis(m, dir, singleLink2Down, warmSecs) {
  const rec = readJson(`${dir}/${m.recv}`), snd = readJson(`${dir}/${m.send}`);
  const polls = m.poll ? readJsonl(`${dir}/${m.poll}`) : [];
  const ev = readJson(`${dir}/${m.events}`) ?? {};
  if (!rec || !rec.bins || !ev.blackholeEpochMs) return { error: 'missing records' };
  const bin = rec.binMs, base = rec.firstByteEpochMs;
  const idx = (t) => Math.floor((t - base) / bin);
  const bh = idx(ev.blackholeEpochMs), rs = ev.restoreEpochMs ? idx(ev.restoreEpochMs) : rec.bins.length;
  const end = Math.min(rec.bins.length, idx(ev.stopEpochMs ?? rec.lastByteEpochMs));
  const runs = (from, to) => { // longest and total zero-bin time in [from,to)
    let cur = 0, best = 0, bestAt = from, tot = 0;
    for (let i = from; i < to; i++) {
      if (!(rec.bins[i] > 0)) { cur++; tot++; if (cur > best) { best = cur; bestAt = i - cur + 1; } } else cur = 0;
    }
    return { longestMs: best * bin, longestStartsAfterBlackholeMs: (bestAt - bh) * bin, totalMs: tot * bin };
  };
  const gpd = (from, to) => { let s = 0; for (let i = Math.max(0, from); i < to && i < rec.bins.length; i++) s += rec.bins[i]; return to > from ? (s * 8) / (((to - from) * bin) / 1000) / 1e6 : null; };
  // first 500 ms window after the blackhole back at >= 50 % of links 2..N alone (download)
  const ref = singleLink2Down ?? null;
  // 500 ms windows from the blackhole to the restore (as the testbed's failover_analyze.py):
  // firstBack = end of the first window after the first one at >= 50 % of ref; stable = start of the
  // window from which no later window (until the restore) falls below that; null = never
  let firstBackMs = null, stableAfterMs = null;
  const lowWindows = [];
  if (ref) {
    const wins = [];
    for (let i = bh; i + 50 <= rs; i += 50) wins.push(gpd(i, i + 50));
    wins.forEach((g, j) => { if (g < 0.5 * ref) lowWindows.push(j); });
    const fb = wins.findIndex((g, j) => j > 0 && g >= 0.5 * ref);
    firstBackMs = fb > 0 ? fb * 500 : null;
    const lastLow = lowWindows.length ? lowWindows[lowWindows.length - 1] : -1;
    stableAfterMs = lastLow === wins.length - 1 ? null : (lastLow + 1) * 500;
  }
  // restore -> link 1 carries traffic again (client /stats: bytes received on subflows bound to 10.77.1.1, or ss bytes)
  let firstAny = null, firstData = null;
  const l1 = (p) => {
    if (p.stats && p.stats[0]) { const o = {}; for (const f of p.stats[0].sub) if (f.local.startsWith('10.77.1.1')) o[f.id] = f.recv; return o; }
    if (p.ss) { const o = {}; for (const s of p.ss) if (s.l.startsWith('10.77.1.1:')) o[s.r + s.l] = s.rcvd ?? 0; return o; }
    return null;
  };
  const afterBh = polls.filter((p) => p.t >= ev.blackholeEpochMs);
  let prev = null;
  const perTick = [];
  for (const p of polls) {
    const cur = l1(p);
    if (!cur) continue;
    if (prev && ev.restoreEpochMs && p.t > ev.restoreEpochMs) {
      let d = 0;
      for (const [k, v] of Object.entries(cur)) d += v - (prev[k] ?? 0);
      perTick.push([r2(p.t - ev.restoreEpochMs, 0), d]);
      if (d > 0 && firstAny === null) firstAny = p.t - ev.restoreEpochMs;
      if (d >= 50000 && firstData === null) firstData = p.t - ev.restoreEpochMs;
    }
    prev = cur;
  }
  void afterBh;
  const pre = gpd(Math.max(bh - 500, Math.round((warmSecs * 1000) / bin)), bh), during = gpd(bh, rs), post = gpd(rs + 200, end);
  return {
    blackholeAtS: r2((ev.blackholeEpochMs - base) / 1000), restoreAtS: ev.restoreEpochMs ? r2((ev.restoreEpochMs - base) / 1000) : null,
    preMbit: r2(pre), duringBlackholeMbit: r2(during), afterRestoreMbit: r2(post),
    stallAfterBlackhole: runs(bh, rs), stallAfterRestore: runs(rs, end),
    firstBackTo50pctOfOtherLinksMs: firstBackMs, stableAt50pctOfOtherLinksAfterMs: stableAfterMs, windowsBelow50pct: lowWindows.length, otherLinksSinglePathSumMbit: r2(ref),
    restoreToLink1AnyBytesMs: r2(firstAny, 0), restoreToLink1DataMs: r2(firstData, 0),
    link1BytesPer100msAfterRestore: perTick.slice(0, 100),
    intact: intact(rec, snd),
  };
}

function cmdReport(a) {
  const dir = a.dir;
  const man = readJsonl(`${dir}/manifest.jsonl`);
  const meta = readJson(`${dir}/meta.json`) ?? {};
  const warm = Number(meta.warmupSecs ?? 2);
  const out = { ...meta, specs: [] };
  const bySpec = new Map();
  for (const m of man) {
    if (!bySpec.has(m.spec)) bySpec.set(m.spec, []);
    bySpec.get(m.spec).push(m);
  }
  for (const [spec, ms] of bySpec) {
    const S = { spec, links: spec.split(' ').length, throughput: {}, failover: null, kernelFailover: null, latency: null, anchors: {} };
    for (const dirn of ['upload', 'download']) {
      const tm = ms.filter((m) => m.kind === 'throughput' && m.direction === dirn);
      if (!tm.length) continue;
      const runsIdx = [...new Set(tm.map((m) => m.run))].sort();
      const perRun = [];
      for (const r of runsIdx) {
        const rm = tm.filter((m) => m.run === r);
        const g = (m) => (m ? windowGoodput(readJson(`${dir}/${m.recv}`), warm, m.secs) : null);
        const single = rm.filter((m) => m.method === 'tcp').sort((x, y) => x.link - y.link).map((m) => ({ link: m.link, mbit: r2(g(m)), intact: intact(readJson(`${dir}/${m.recv}`), readJson(`${dir}/${m.send}`)).ok }));
        const iperfSingle = rm.filter((m) => m.method === 'iperf3-tcp').sort((x, y) => x.link - y.link).map((m) => ({ link: m.link, mbit: r2(readJson(`${dir}/${m.json}`)?.end?.sum_received?.bits_per_second / 1e6) }));
        const mp = rm.find((m) => m.method === 'mptcp');
        const imp = rm.find((m) => m.method === 'iperf3-mptcp');
        const pl = rm.find((m) => m.method === 'plait');
        const sum = single.length ? single.reduce((x, y) => x + (y.mbit ?? 0), 0) : null;
        const mpG = g(mp), plG = g(pl);
        const row = {
          run: r, singlePath: single, singlePathSumMbit: r2(sum), mptcpMbit: r2(mpG), plaitMbit: r2(plG),
          plaitOverSingleSum: r2(plG / sum, 3), plaitOverMptcp: r2(plG / mpG, 3), mptcpOverSingleSum: r2(mpG / sum, 3),
          iperf3: { singlePath: iperfSingle, mptcpMbit: r2(readJson(`${dir}/${imp?.json}`)?.end?.sum_received?.bits_per_second / 1e6) },
        };
        if (mp) {
          row.mptcpIntact = intact(readJson(`${dir}/${mp.recv}`), readJson(`${dir}/${mp.send}`)).ok;
          const polls = readJsonl(`${dir}/${mp.poll}`);
          row.mptcpKernelSockets = ssSummary(polls, 0, Infinity);
        }
        if (pl) {
          const rec = readJson(`${dir}/${pl.recv}`);
          row.plaitIntact = intact(rec, readJson(`${dir}/${pl.send}`));
          row.plaitTotalAvgMbit = rec ? r2((rec.bytes * 8) / (rec.lastByteEpochMs - rec.firstByteEpochMs) / 1e3) : null;
          row.plaitTailAfterWindowMs = rec ? r2(rec.lastByteEpochMs - rec.firstByteEpochMs - pl.secs * 1000, 0) : null;
          const from = rec ? rec.firstByteEpochMs + warm * 1000 : 0, to = rec ? rec.firstByteEpochMs + pl.secs * 1000 : Infinity;
          row.plaitClientSubflows = subflowSummary(readJsonl(`${dir}/${pl.pollCli}`), from, to);
          row.plaitServerSubflows = subflowSummary(readJsonl(`${dir}/${pl.pollSrv}`), from, to);
          const sender = dirn === 'upload' ? pl.pollCli : pl.pollSrv;
          row.plaitSenderKernelSockets = ssSummary(readJsonl(`${dir}/${sender}`), from, to, (s) => /:7000$/.test(s.r) || /:7000$/.test(s.l));
          row.plaitCpuSeconds = pl.cpu;
          row.plaitAliveAtEnd = pl.plaitAliveAtEnd ?? null;
          row.otherBenchRunning = pl.otherBenchRunning ?? null;
        }
        perRun.push(row);
      }
      const agg = (f) => r2(median(perRun.map(f)), 3);
      S.throughput[dirn] = {
        runs: perRun,
        median: {
          singlePathMbit: Object.fromEntries((perRun[0]?.singlePath ?? []).map((x) => [`link${x.link}`, agg((r) => r.singlePath.find((y) => y.link === x.link)?.mbit)])),
          singlePathSumMbit: agg((r) => r.singlePathSumMbit), mptcpMbit: agg((r) => r.mptcpMbit), plaitMbit: agg((r) => r.plaitMbit),
          plaitOverSingleSum: agg((r) => r.plaitOverSingleSum), plaitOverMptcp: agg((r) => r.plaitOverMptcp), mptcpOverSingleSum: agg((r) => r.mptcpOverSingleSum),
        },
      };
    }
    // reference for failover recovery: links 2..N alone (single-path download, run 1), summed
    const others = (S.throughput.download?.runs?.[0]?.singlePath ?? []).filter((x) => x.link >= 2);
    const link2Down = others.length ? others.reduce((x, y) => x + (y.mbit ?? 0), 0) : null;
    const fo = ms.find((m) => m.kind === 'failover' && m.method === 'plait');
    if (fo) {
      S.failover = failoverAnalysis(fo, dir, link2Down, warm);
      const rec = readJson(`${dir}/${fo.recv}`);
      const ev = readJson(`${dir}/${fo.events}`) ?? {};
      if (rec) {
        S.failover.clientSubflowsDuringBlackhole = subflowSummary(readJsonl(`${dir}/${fo.pollCli}`), ev.blackholeEpochMs, ev.restoreEpochMs);
        S.failover.serverSubflowsDuringBlackhole = subflowSummary(readJsonl(`${dir}/${fo.pollSrv}`), ev.blackholeEpochMs, ev.restoreEpochMs);
        S.failover.serverSubflowsAfterRestore = subflowSummary(readJsonl(`${dir}/${fo.pollSrv}`), ev.restoreEpochMs, ev.stopEpochMs ?? Infinity);
        // server (sender) view every 0.5 s: plait subflow state / inflight / cap / rate, kernel RTO backoff of each subflow socket
        S.failover.serverTimeline = readJsonl(`${dir}/${fo.pollSrv}`).filter((p) => p.stats?.[0]).filter((p, i) => i % 5 === 0).map((p) => ({
          t: r2((p.t - ev.blackholeEpochMs) / 1000, 1),
          sub: p.stats[0].sub.map((f) => `${linkKey(f.local, f.remote)} ${f.state} inflight ${Math.round(f.inflight / 1024)}K cap ${Math.round(f.cap / 1024)}K rate ${r2((f.rate * 8) / 1e6, 1)}Mb`).join(' | '),
          tcp: (p.ss ?? []).filter((x) => /:7000$/.test(x.l)).map((x) => `${linkKey(x.l, x.r)} cwnd ${x.cwnd} rto ${x.rto} backoff ${x.backoff ?? 0}`).join(' | '),
        }));
        S.failover.timeline = readJsonl(`${dir}/${fo.pollCli}`).filter((p, i) => i % 5 === 0 && p.stats?.[0]).map((p) => ({
          t: r2((p.t - ev.blackholeEpochMs) / 1000, 1), sub: p.stats[0].sub.map((f) => `${f.id}:${f.local.replace(/:\d+$/, '')}:${f.state}:${f.recv}`).join(' '),
        }));
      }
      S.failover.secs = fo.secs;
    }
    S.discarded = ms.filter((m) => m.kind === 'discarded');
    S.otherBenchRunningDuring = [...new Set(ms.filter((m) => m.otherBenchRunning).map((m) => m.kind + (m.direction ? ' ' + m.direction : '')))];
    const kfo = ms.find((m) => m.kind === 'failover' && m.method === 'mptcp');
    if (kfo) { S.kernelFailover = failoverAnalysis(kfo, dir, link2Down, warm); S.kernelFailover.secs = kfo.secs; }
    const lat = ms.find((m) => m.kind === 'latency');
    if (lat) {
      const ping = (f) => { try { const t = fs.readFileSync(`${dir}/${f}`, 'utf8'); return [...t.matchAll(/time=([\d.]+) ms/g)].map((x) => Number(x[1])); } catch { return []; } };
      const rr = (f) => (readJson(`${dir}/${f}`)?.samples ?? []).map((s) => s[1]);
      const pIdle = ping(lat.pingIdle), pLoad = ping(lat.pingLoad), rIdle = rr(lat.rrIdle), rLoad = rr(lat.rrLoad);
      const bulk = readJson(`${dir}/${lat.bulkRecv}`);
      const pingMed = median(pIdle);
      S.latency = {
        link1PingIdle: { medianMs: r2(median(pIdle)), p95Ms: r2(pct(pIdle, 95)), n: pIdle.length },
        link1PingDuringPlaitBulk: { medianMs: r2(median(pLoad)), p95Ms: r2(pct(pLoad, 95)), n: pLoad.length },
        plaitRRIdle: { medianMs: r2(median(rIdle)), p95Ms: r2(pct(rIdle, 95)), maxMs: r2(Math.max(...rIdle)), n: rIdle.length },
        plaitRRDuringBulk: { medianMs: r2(median(rLoad)), p95Ms: r2(pct(rLoad, 95)), maxMs: r2(Math.max(...rLoad)), n: rLoad.length },
        rrDuringBulkMedianOverLink1Rtt: r2(median(rLoad) / pingMed), rrDuringBulkP95OverLink1Rtt: r2(pct(rLoad, 95) / pingMed),
        bulkDuringRRMbit: bulk ? r2(windowGoodput(bulk, warm, lat.secs)) : null, bulkIntact: intact(bulk, readJson(`${dir}/${lat.bulkSend}`)).ok,
        requestSize: 1024, intervalMs: 50,
      };
      const rec = bulk;
      if (rec) S.latency.serverSubflowsDuringBulk = subflowSummary(readJsonl(`${dir}/${lat.pollSrv}`), rec.firstByteEpochMs + warm * 1000, rec.firstByteEpochMs + lat.secs * 1000);
    }
    // slowlink: the longest stretch with nothing delivered (10 ms bins, first to last byte)
    S.slowlink = ms.filter((m) => m.kind === 'slowlink').map((m) => {
      const r = readJson(`${dir}/${m.recv}`);
      const ev = readJson(`${dir}/${m.events}`) ?? {};
      if (!r || !r.bins) return { method: m.method, direction: m.direction, error: 'no receiver record' };
      let gap = 0, run = 0, gapEnd = 0;
      r.bins.forEach((b, i) => { if (b === 0) { run++; if (run > gap) { gap = run; gapEnd = i; } } else run = 0; });
      const gapStartS = r.firstByteEpochMs + (gapEnd - gap + 1) * r.binMs;
      return {
        method: m.method, direction: m.direction, bytes: r.bytes, complete: r.bytes === m.bytes && intact(r, readJson(`${dir}/${m.send}`)).ok,
        transferS: r2((r.lastByteEpochMs - r.firstByteEpochMs) / 1000, 2), longestGapMs: gap * r.binMs,
        longestGapStartsAfterCutS: ev.cutEpochMs ? r2((gapStartS - ev.cutEpochMs) / 1000, 2) : null, link: m.link, cutRate: m.cutRate, cutSecs: m.cutSecs,
        otherBenchRunning: m.otherBenchRunning,
      };
    });
    for (const m of ms.filter((x) => x.kind === 'anchor')) { try { S.anchors[m.name] = fs.readFileSync(`${dir}/${m.file}`, 'utf8'); } catch { /* none */ } }
    out.specs.push(S);
  }
  fs.writeFileSync(a.out, JSON.stringify(out, null, 2) + '\n');

  // ------------- human table
  const w = (s, n) => String(s ?? '-').padEnd(n);
  const lines = [];
  lines.push(`Goodput in Mbit/s, receiver side, bytes delivered in [${warm} s, ${meta.secs} s) after the first byte (first ${warm} s of ramp-up excluded; same window for every method).`);
  lines.push(`median of ${meta.runs} run(s); single-path = plain TCP on each link alone; MPTCP = kernel MPTCP (mptcpize, in-kernel PM); cc = ${meta.cc ?? '?'}`);
  lines.push(`${w('links', 42)}${w('dir', 9)}${w('single-path (per link)', 24)}${w('sum', 8)}${w('MPTCP', 8)}${w('plait', 8)}${w('plait/sum', 10)}${w('plait/MPTCP', 12)}`);
  for (const row of out.specs.flatMap((S) => ['upload', 'download'].filter((d) => S.throughput[d]).map((d) => [S, d]))) {
    const [S, d] = row;
    const md = S.throughput[d].median;
    lines.push(`${w(S.spec, 42)}${w(d, 9)}${w(Object.values(md.singlePathMbit).map((v) => v?.toFixed(1)).join(' + '), 24)}${w(md.singlePathSumMbit?.toFixed(2), 8)}${w(md.mptcpMbit?.toFixed(2), 8)}${w(md.plaitMbit?.toFixed(2), 8)}${w(md.plaitOverSingleSum?.toFixed(3), 10)}${w(md.plaitOverMptcp?.toFixed(3), 12)}`);
  }
  for (const S of out.specs) {
    for (const d of ['upload', 'download']) {
      const runs = S.throughput[d]?.runs ?? [];
      if (runs.length) {
        lines.push(`  ${d} per run [${S.spec}]: ` + runs.map((x) => `#${x.run} single ${x.singlePath.map((y) => y.mbit).join('+')} MPTCP ${x.mptcpMbit} plait ${x.plaitMbit}${x.plaitIntact && !x.plaitIntact.ok ? ' (NOT INTACT)' : ''}${x.otherBenchRunning ? ' (other bench running)' : ''}`).join('; '));
        if (runs.some((x) => x.iperf3?.mptcpMbit)) lines.push(`    iperf3 cross-check (-O ${warm}): ` + runs.map((x) => `#${x.run} single ${x.iperf3.singlePath.map((y) => y.mbit).join('+')} MPTCP ${x.iperf3.mptcpMbit}`).join('; '));
      }
      const r = runs[0];
      if (!r) continue;
      const sub = d === 'upload' ? r.plaitClientSubflows : r.plaitServerSubflows;
      if (sub) {
        lines.push(`  plait ${d} [${S.spec}] sender-side subflows (run 1): ` + Object.entries(sub.perLocal).map(([k, v]) => `${k} share ${(v.sentShare * 100).toFixed(1)}% rtt ${v.rttMedianMs}/${v.rttP95Ms} (min ${v.minRttMs}) ms inflight ${v.inflightMedianKB}/${v.capMedianKB} KB`).join(' | '));
        const ks = r.plaitSenderKernelSockets;
        if (ks) lines.push(`    kernel sockets (ss, sender ns): ` + Object.entries(ks).map(([k, v]) => `${k} cwnd ${v.cwndMedian} srtt ${v.srttMedianMs}/${v.srttP95Ms} ms`).join(' | '));
        if (Object.keys(sub.counterDeltas ?? {}).length) lines.push(`    counters: ${JSON.stringify(sub.counterDeltas)}`);
        if (r.mptcpKernelSockets) lines.push(`    kernel MPTCP subflows (ss, sender ns): ` + Object.entries(r.mptcpKernelSockets).map(([k, v]) => `${k} cwnd ${v.cwndMedian} srtt ${v.srttMedianMs}/${v.srttP95Ms} ms`).join(' | '));
        lines.push(`    intact=${r.plaitIntact?.ok}${r.plaitIntact?.why ? ' (' + r.plaitIntact.why + ')' : ''}; drain after window ${r.plaitTailAfterWindowMs} ms; cpu s ${JSON.stringify(r.plaitCpuSeconds)}`);
      }
    }
    const fo = (name, f) => {
      if (!f || f.error) { if (f) lines.push(`  ${name}: ${f.error}`); return; }
      lines.push(`  ${name} [${S.spec}], download ${f.secs} s, link 1 blackholed at ${f.blackholeAtS} s, restored at ${f.restoreAtS} s:`);
      lines.push(`    longest span with nothing delivered after blackhole ${f.stallAfterBlackhole.longestMs} ms (10 ms bins with nothing, in all: ${f.stallAfterBlackhole.totalMs} ms); goodput >= 50% of links 2..N alone (${f.otherLinksSinglePathSumMbit} Mbit/s) first after ${f.firstBackTo50pctOfOtherLinksMs === null ? 'never' : f.firstBackTo50pctOfOtherLinksMs + ' ms'}, for good after ${f.stableAt50pctOfOtherLinksAfterMs === null ? 'never' : f.stableAt50pctOfOtherLinksAfterMs + ' ms'} (0.5 s windows, ${f.windowsBelow50pct} below)`);
      lines.push(`    goodput before ${f.preMbit}, during blackhole ${f.duringBlackholeMbit} (links 2..N alone: ${f.otherLinksSinglePathSumMbit}), after restore ${f.afterRestoreMbit} Mbit/s; longest stall after restore ${f.stallAfterRestore.longestMs} ms`);
      lines.push(`    restore -> link 1 delivers bytes again after ${f.restoreToLink1AnyBytesMs ?? 'never'} ms, >=50 KB/100 ms after ${f.restoreToLink1DataMs ?? 'never'} ms; intact=${f.intact.ok}${f.intact.why ? ' (' + f.intact.why + ')' : ''}`);
    };
    if (S.discarded.length) lines.push(`  discarded and re-run: ${S.discarded.map((m) => `${m.method} ${m.direction} run ${m.run} (${m.why})`).join('; ')}`);
    if (S.otherBenchRunningDuring.length) lines.push(`  NOTE: another benchmark was running on this 2-core machine during: ${S.otherBenchRunningDuring.join(', ')}`);
    fo('plait failover', S.failover);
    fo('kernel MPTCP failover (same method)', S.kernelFailover);
    for (const [name, txt] of Object.entries(S.anchors ?? {})) {
      const keep = txt.split('\n').filter((l) => /^(run \d+:|TCP link|MPTCP|sum of)/.test(l));
      lines.push(`  testbed anchor ${name} [${S.spec}]:`, ...keep.map((l) => `    ${l}`));
    }
    if (S.latency) {
      const L = S.latency;
      lines.push(`  latency [${S.spec}]: link 1 ping -U idle median ${L.link1PingIdle.medianMs} ms (p95 ${L.link1PingIdle.p95Ms}); during plait bulk ${L.link1PingDuringPlaitBulk.medianMs} (p95 ${L.link1PingDuringPlaitBulk.p95Ms})`);
      lines.push(`    plait 1 KiB RR every 50 ms: idle median ${L.plaitRRIdle.medianMs} p95 ${L.plaitRRIdle.p95Ms} ms; during bulk download (${L.bulkDuringRRMbit} Mbit/s) median ${L.plaitRRDuringBulk.medianMs} p95 ${L.plaitRRDuringBulk.p95Ms} max ${L.plaitRRDuringBulk.maxMs} ms = ${L.rrDuringBulkMedianOverLink1Rtt}x / ${L.rrDuringBulkP95OverLink1Rtt}x link 1 RTT`);
    }
    for (const L of S.slowlink ?? []) {
      lines.push(`  slowlink [${S.spec}] ${L.method} ${L.direction}: link ${L.link} cut to ${L.cutRate} for ${L.cutSecs} s; ${L.bytes} bytes${L.complete ? ' intact' : ' INCOMPLETE'} in ${L.transferS} s; longest receiver gap ${L.longestGapMs} ms (starts ${L.longestGapStartsAfterCutS} s after the cut)${L.otherBenchRunning ? ' (other bench running)' : ''}`);
    }
  }
  lines.push(`JSON: ${a.out}`);
  console.log(lines.join('\n'));
}

const a = parseArgs(process.argv.slice(2));
const cmd = a._[0];
if (cmd === 'serve') cmdServe(a);
else if (cmd === 'connect') cmdConnect(a);
else if (cmd === 'first-byte') cmdFirstByte(a);
else if (cmd === 'poll') cmdPoll(a);
else if (cmd === 'wait-session') cmdWaitSession(a);
else if (cmd === 'report') cmdReport(a);
else { console.error('usage: see the header of scripts/testbed-tools.mjs'); process.exit(2); }
