#!/usr/bin/env node
// chaos-soak.mjs - the chaos soak on the packet-level testbed (driven by scripts/chaos-soak.sh).
// Plain Node ESM, no dependencies; root; needs the netns testbed (../shared/testbed).
//
//   run       --plait PLAIT_JS --testbed DIR --out RUNDIR [options]   the soak (see chaos-soak.sh -h)
//   schedule  [options]                                           print the fault schedule only (dry run)
//   target    --listen H:P --dir RUNDIR                           (internal) file server + upload sink, in nb-srv
//
// What it does: brings the testbed up (3 shaped, delayed links by default), starts
// plait server in nb-srv and plait client in nb-cli (one --bind per link), plus a
// target in nb-srv on 127.0.0.1 that serves deterministic pseudo-random files
// (GET /blob/ID?size=N&seed=S) and hashes uploads (PUT /upload/ID?size=N). Then for
// --minutes it keeps --concurrency curl transfers running through the client's SOCKS5
// proxy, half downloads and half uploads, sizes log-uniform in [--min-mib, --max-mib],
// each checked with sha256 (and byte by byte, so a mismatch is located), while a
// seed-fixed schedule of --faults faults hits the links: blackholes of one, two and all
// links (all-links outages at most --max-outage s, spaced by >= 10 s), subflow reset
// bursts (ss -K in either namespace), REJECT --reject-with tcp-reset windows, tbf rate
// drops, and link flaps (ip link down/up, either end). At the end: a summary table and
// one JSON line; exit 1 if a transfer was lost or corrupted or the session restarted.
//
// Content is an AES-256-CTR keystream of zeros keyed by sha256("plait-chaos-" + seed),
// generated independently by the sender and the checker.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as http from 'node:http';
import * as crypto from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const MiB = 1024 * 1024;
const CHUNK = 64 * 1024;
const ZEROS = Buffer.alloc(CHUNK);

// ---------------------------------------------------------------- args
const DEFAULTS = {
  links: '40mbit:10ms 20mbit:30ms 10mbit:60ms',
  minutes: 8,
  faults: 520,
  seed: 1,
  concurrency: 6,
  short: 2,
  'min-mib': 1,
  'max-mib': 64,
  'max-outage': 20,
  'outage-gap': 10,
  drain: 300,
  grace: 30,
  'curl-max-time': 900,
  port: 7000,
};
function parseArgs(argv) {
  const a = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const s = argv[i];
    if (s.startsWith('--')) {
      const eq = s.indexOf('=');
      if (eq > 0) { a[s.slice(2, eq)] = s.slice(eq + 1); continue; }
      const k = s.slice(2);
      const v = argv[i + 1];
      if (v === undefined || v.startsWith('--')) a[k] = true;
      else { a[k] = v; i++; }
    } else a._.push(s);
  }
  for (const [k, v] of Object.entries(DEFAULTS)) if (a[k] === undefined) a[k] = v;
  return a;
}
const die = (msg) => { console.error(`chaos-soak: ${msg}`); process.exit(2); };

// ---------------------------------------------------------------- seeded PRNG (mulberry32)
function rng(seed) {
  let s = (Number(seed) >>> 0) || 1;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    logU: (lo, hi) => Math.exp(Math.log(lo) + (Math.log(hi) - Math.log(lo)) * next()),
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    shuffle: (xs) => { const v = [...xs]; for (let i = v.length - 1; i > 0; i--) { const j = Math.floor(next() * (i + 1)); [v[i], v[j]] = [v[j], v[i]]; } return v; },
  };
  return r;
}

// ---------------------------------------------------------------- content
class Gen {
  constructor(seed) {
    const key = crypto.createHash('sha256').update(`plait-chaos-${seed}`).digest();
    this.c = crypto.createCipheriv('aes-256-ctr', key, Buffer.alloc(16));
  }
  next(n) { return n <= CHUNK ? this.c.update(n === CHUNK ? ZEROS : ZEROS.subarray(0, n)) : this.c.update(Buffer.alloc(n)); }
}

// ---------------------------------------------------------------- link specs (as netbed.sh)
function rateBps(r) {
  r = String(r).toLowerCase();
  if (['0', 'none', 'inf', ''].includes(r)) return 0;
  const m = r.match(/^([0-9.]+)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?$/);
  if (!m) die(`bad rate ${r}`);
  const mult = { bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9 }[m[2] ?? 'bit'];
  return Math.round(Number(m[1]) * mult);
}
const parseLinks = (s) => String(s).trim().split(/\s+/).map((spec, i) => ({ k: i + 1, spec, bps: rateBps(spec.split(':')[0]) }));
const tbfBurst = (bps) => Math.max(Math.floor(bps / 8 / 500), 16384); // netbed.sh's burst rule
const mbit = (bps) => `${(bps / 1e6).toFixed(bps < 1e6 ? 2 : 1)}mbit`;

// ---------------------------------------------------------------- fault schedule
// kinds: resource 'down' = the link carries nothing (blackholes, flaps); 'rate' = tbf rate;
// 'rst' = reset windows. One fault per (link, resource) at a time, so every revert is exact.
const KINDS = {
  'blackhole-1': { w: 0.17, res: 'down' },
  'blackhole-2': { w: 0.07, res: 'down' },
  'blackhole-all': { w: 0.015, res: 'down' },
  flap: { w: 0.13, res: 'down' },
  'rate-drop': { w: 0.22, res: 'rate' },
  'reset-ss': { w: 0.24, res: 'rst' },
  'reset-reject': { w: 0.155, res: 'rst' },
};
const PAD = 0.5; // s between two faults on the same link resource

function makeSchedule(o) {
  const R = rng(o.seed);
  const links = o.links;
  const n = links.length;
  if (n < 2) die('need at least 2 links');
  const D = o.minutes * 60;
  const warm = Math.min(10, D * 0.08), end = D - Math.min(12, D * 0.08);
  // exact counts per kind from the weights (largest remainder), all-links >= 1 when there are >= 20 faults
  const kinds = Object.keys(KINDS).filter((k) => !(k === 'blackhole-2' && n < 3));
  const wsum = kinds.reduce((s, k) => s + KINDS[k].w, 0);
  const counts = Object.fromEntries(kinds.map((k) => [k, Math.floor((o.faults * KINDS[k].w) / wsum)]));
  let rest = o.faults - Object.values(counts).reduce((s, x) => s + x, 0);
  for (const k of [...kinds].sort((x, y) => ((o.faults * KINDS[y].w) / wsum % 1) - ((o.faults * KINDS[x].w) / wsum % 1))) { if (rest-- <= 0) break; counts[k]++; }
  if (o.faults >= 20 && counts['blackhole-all'] === 0) { counts['blackhole-all'] = 1; counts['reset-ss']--; }
  // how many total outages fit: each needs its length plus the spacing
  const maxAll = Math.max(0, Math.floor((end - warm) / (o.maxOutage * 0.5 + o.outageGap + 2)));
  if (counts['blackhole-all'] > maxAll) { counts['reset-ss'] += counts['blackhole-all'] - maxAll; counts['blackhole-all'] = maxAll; }

  const placed = [];
  const overlaps = (a0, a1, b0, b1, pad = 0) => a0 < b1 + pad && b0 < a1 + pad;
  const allDownSpans = (extra) => {
    // per link: merged 'down' intervals; then their intersection across all links
    const per = links.map((L) => {
      const iv = [...placed, ...extra].filter((f) => f.res === 'down' && f.links.includes(L.k)).map((f) => [f.t, f.t + f.dur]).sort((x, y) => x[0] - y[0]);
      const m = [];
      for (const [s, e] of iv) { if (m.length && s <= m[m.length - 1][1]) m[m.length - 1][1] = Math.max(m[m.length - 1][1], e); else m.push([s, e]); }
      return m;
    });
    let cur = per[0];
    for (const other of per.slice(1)) {
      const out = [];
      for (const [s1, e1] of cur) for (const [s2, e2] of other) { const s = Math.max(s1, s2), e = Math.min(e1, e2); if (s < e) out.push([s, e]); }
      cur = out.sort((x, y) => x[0] - y[0]);
    }
    return cur;
  };
  const ok = (c) => {
    if (c.t < warm || c.t + c.dur > end) return false;
    for (const f of placed) {
      if (f.res === c.res && f.links.some((k) => c.links.includes(k)) && overlaps(c.t, c.t + c.dur, f.t, f.t + f.dur, PAD)) return false;
      // a reset on a link that is down at the time would do nothing
      if (c.res === 'rst' && f.res === 'down' && f.links.some((k) => c.links.includes(k)) && overlaps(c.t, c.t + c.dur, f.t, f.t + f.dur, 0.3)) return false;
      if (c.res === 'down' && f.res === 'rst' && f.links.some((k) => c.links.includes(k)) && overlaps(c.t, c.t + c.dur, f.t, f.t + f.dur, 0.3)) return false;
    }
    if (c.res === 'down') {
      const spans = allDownSpans([c]);
      for (let i = 0; i < spans.length; i++) {
        if (spans[i][1] - spans[i][0] > o.maxOutage + 1e-9) return false;
        if (i > 0 && spans[i][0] - spans[i - 1][1] < o.outageGap) return false;
      }
    }
    return true;
  };
  const linkSets = (kind) => {
    const ks = links.map((L) => L.k);
    if (kind === 'blackhole-all') return [ks];
    if (kind === 'blackhole-2') { const out = []; for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) out.push([ks[i], ks[j]]); return R.shuffle(out); }
    if (kind === 'rate-drop') return R.shuffle(links.filter((L) => L.bps > 0).map((L) => [L.k]));
    return R.shuffle(ks.map((k) => [k]));
  };
  const detail = (kind, L) => {
    switch (kind) {
      case 'blackhole-1': return { dur: R.logU(0.5, 6) };
      case 'blackhole-2': return { dur: R.logU(0.5, 4) };
      case 'blackhole-all': return { dur: R.logU(2, o.maxOutage) };
      case 'flap': return { dur: R.uniform(0.2, 1.5), side: R.pick(['cli', 'srv']) };
      case 'rate-drop': { const bps = links[L[0] - 1].bps; return { dur: R.uniform(2, 10), bps: Math.max(200_000, Math.round(bps * R.uniform(0.04, 0.3))) }; }
      case 'reset-ss': { const bursts = R.int(1, 3); const gaps = Array.from({ length: bursts - 1 }, () => R.uniform(0.3, 1)); return { dur: gaps.reduce((s, x) => s + x, 0) + 0.2, side: R.pick(['cli', 'srv']), gaps }; }
      case 'reset-reject': return { dur: R.uniform(0.5, 3), side: R.pick(['cli', 'srv']) };
    }
  };
  const order = ['blackhole-all', 'blackhole-2', 'blackhole-1', 'flap', 'rate-drop', 'reset-reject', 'reset-ss'].filter((k) => counts[k] > 0);
  for (const kind of order) {
    for (let i = 0; i < counts[kind]; i++) {
      let done = false;
      for (let attempt = 0; attempt < 400 && !done; attempt++) {
        for (const L of linkSets(kind)) {
          const d = detail(kind, L);
          if (kind === 'blackhole-all' && i === 0) d.dur = o.maxOutage * R.uniform(0.9, 1); // one near the limit every run
          let t;
          if (kind === 'blackhole-all') { // spread evenly: one per segment, jittered
            const seg = (end - warm) / counts[kind];
            t = warm + seg * i + R.uniform(0, Math.max(0, seg - d.dur));
          } else t = R.uniform(warm, end - d.dur);
          const c = { t: Math.round(t * 100) / 100, kind, res: KINDS[kind].res, links: L, ...d, dur: Math.round(d.dur * 100) / 100 };
          if (ok(c)) { placed.push(c); done = true; break; }
        }
      }
      if (!done) die(`cannot fit ${o.faults} faults into ${o.minutes} min (stuck placing ${kind} #${i + 1}); use fewer --faults or more --minutes`);
    }
  }
  placed.sort((x, y) => x.t - y.t);
  placed.forEach((f, i) => { f.i = i + 1; });
  const spans = allDownSpans([]);
  return { faults: placed, counts, spans, D, warm, end };
}

function describeFault(f) {
  const ls = f.links.length > 1 ? `links ${f.links.join('+')}` : `link ${f.links[0]}`;
  const extra = f.kind === 'rate-drop' ? ` -> ${mbit(f.bps)}` : f.side ? ` (${f.side === 'cli' ? 'nb-cli' : 'nb-srv'}${f.gaps ? `, ${f.gaps.length + 1}x` : ''})` : '';
  return `#${String(f.i).padStart(3)} t=${f.t.toFixed(2).padStart(7)} s ${f.kind.padEnd(13)} ${ls.padEnd(11)} ${f.dur.toFixed(2).padStart(5)} s${extra}`;
}

function printSchedule(S, o, out = console.log) {
  out(`fault schedule: seed ${o.seed}, ${S.faults.length} faults in ${o.minutes} min (window ${S.warm.toFixed(0)}-${S.end.toFixed(0)} s) on ${o.links.length} links`);
  out(`  by kind: ${Object.entries(S.counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const tot = S.spans.reduce((s, [a, b]) => s + b - a, 0);
  out(`  all-links-down spans: ${S.spans.length}, longest ${Math.max(0, ...S.spans.map(([a, b]) => b - a)).toFixed(2)} s, total ${tot.toFixed(1)} s (limit ${o.maxOutage} s each, >= ${o.outageGap} s apart)`);
  const up = [0, 0, 0, 0, 0, 0, 0, 0, 0];
  for (let t = 0; t < S.D; t += 0.1) up[o.links.filter((L) => !S.faults.some((f) => f.res === 'down' && f.links.includes(L.k) && t >= f.t && t < f.t + f.dur)).length] += 0.1;
  out(`  seconds with 0..${o.links.length} links up: ${up.slice(0, o.links.length + 1).map((x) => x.toFixed(0)).join(' / ')}; each link down ${o.links.map((L) => S.faults.filter((f) => f.res === 'down' && f.links.includes(L.k)).reduce((s, f) => s + f.dur, 0).toFixed(0)).join(' / ')} s of ${S.D}`);
  if (o.printSchedule !== false) for (const f of S.faults) out(`  ${describeFault(f)}`);
}

// ---------------------------------------------------------------- target (runs in nb-srv)
function cmdTarget(a) {
  const [host, port] = [a.listen.slice(0, a.listen.lastIndexOf(':')), Number(a.listen.slice(a.listen.lastIndexOf(':') + 1))];
  const dir = a.dir;
  const progress = { up: {}, down: {} };
  const done = new Map(); // id -> time finished (kept in the progress file 10 s more)
  const upLog = fs.openSync(path.join(dir, 'target-uploads.jsonl'), 'a');
  const downLog = fs.openSync(path.join(dir, 'target-downloads.jsonl'), 'a');
  const logLine = (fd, o) => fs.writeSync(fd, JSON.stringify({ t: now(), ...o }) + '\n');
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const m = u.pathname.match(/^\/(blob|upload)\/([\w.-]+)$/);
    if (!m) { res.writeHead(404).end('not found\n'); return; }
    const id = m[2];
    const size = Number(u.searchParams.get('size'));
    if (m[1] === 'blob') {
      const seed = u.searchParams.get('seed') ?? id;
      const g = new Gen(seed);
      let sent = 0;
      progress.down[id] = 0;
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size) });
      const pump = () => {
        while (sent < size) {
          const buf = g.next(Math.min(CHUNK, size - sent));
          sent += buf.length;
          progress.down[id] = sent;
          if (!res.write(buf)) { res.once('drain', pump); return; }
        }
        res.end();
      };
      res.on('close', () => { logLine(downLog, { id, size, sent, complete: res.writableFinished }); done.set(id, now()); });
      pump();
    } else {
      const h = crypto.createHash('sha256');
      let bytes = 0;
      progress.up[id] = 0;
      req.on('data', (d) => { h.update(d); bytes += d.length; progress.up[id] = bytes; });
      req.on('end', () => {
        const r = { id, size, bytes, sha256: h.digest('hex'), complete: true };
        logLine(upLog, r);
        done.set(id, now());
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(r) + '\n');
      });
      req.on('aborted', () => { logLine(upLog, { id, size, bytes, complete: false, aborted: true }); done.set(id, now()); });
      req.on('error', () => {});
    }
  });
  server.keepAliveTimeout = 1000;
  server.listen(port, host, () => fs.writeFileSync(path.join(dir, 'target.ready'), 'ready\n'));
  const pfile = path.join(dir, 'target-progress.json');
  setInterval(() => {
    const t = now();
    for (const [id, td] of done) if (t - td > 10_000) { delete progress.up[id]; delete progress.down[id]; done.delete(id); }
    fs.writeFileSync(pfile + '.tmp', JSON.stringify({ t, ...progress }));
    fs.renameSync(pfile + '.tmp', pfile);
  }, 100);
  process.on('SIGTERM', () => process.exit(0));
}

// ---------------------------------------------------------------- process helpers
const children = new Set();
/** start a long-running process (own process group) with stdout/stderr to a file */
function bg(argv, logFile) {
  const fd = fs.openSync(logFile, 'a');
  const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', fd, fd], detached: true });
  fs.closeSync(fd);
  children.add(p);
  p.on('exit', () => children.delete(p));
  return p;
}
/** run a short command; resolves {code, out, err, ms} */
function run(argv, timeoutMs = 10_000) {
  return new Promise((resolve) => {
    const t0 = now();
    const p = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    children.add(p);
    let out = '', err = '';
    p.stdout.on('data', (d) => { if (out.length < 65536) out += d; });
    p.stderr.on('data', (d) => { if (err.length < 65536) err += d; });
    const timer = setTimeout(() => { try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }, timeoutMs);
    p.on('error', (e) => { err += String(e); });
    p.on('close', (code, sig) => { clearTimeout(timer); children.delete(p); resolve({ code: code ?? (sig ? 128 : 1), out, err, ms: now() - t0 }); });
  });
}
function killAll() {
  for (const p of children) { try { process.kill(-p.pid, 'SIGTERM'); } catch { /* gone */ } }
  const until = Date.now() + 3000;
  while ([...children].some((p) => { try { process.kill(p.pid, 0); return true; } catch { return false; } }) && Date.now() < until) spawnSync('sleep', ['0.1']);
  for (const p of children) { try { process.kill(-p.pid, 'SIGKILL'); } catch { /* gone */ } }
}
const ns = (n, ...argv) => ['ip', 'netns', 'exec', `nb-${n}`, ...argv];

// ---------------------------------------------------------------- the soak
async function cmdRun(a) {
  for (const k of ['plait', 'testbed', 'out']) if (!a[k]) die(`--${k} is required`);
  const o = {
    seed: Number(a.seed), minutes: Number(a.minutes), faults: Number(a.faults), links: parseLinks(a.links),
    maxOutage: Number(a['max-outage']), outageGap: Number(a['outage-gap']), printSchedule: !a['no-print-schedule'],
  };
  if (!(o.maxOutage > 0 && o.maxOutage < Number(a.grace))) die(`--max-outage must be below the ${a.grace} s grace`);
  const C = Number(a.concurrency), minB = Number(a['min-mib']) * MiB, maxB = Number(a['max-mib']) * MiB;
  const RUN = path.resolve(a.out);
  fs.mkdirSync(RUN, { recursive: true });
  const NB = path.join(a.testbed, 'netbed.sh');
  const PORT = Number(a.port);
  const log = (s) => { const line = `[${new Date().toISOString().slice(11, 23)}] ${s}`; console.error(line); fs.appendFileSync(path.join(RUN, 'driver.log'), line + '\n'); };

  const S = makeSchedule(o);
  fs.writeFileSync(path.join(RUN, 'schedule.json'), JSON.stringify({ seed: o.seed, minutes: o.minutes, links: o.links, counts: S.counts, spans: S.spans, faults: S.faults }, null, 1));
  printSchedule(S, o);

  // ---- bed, target, plait
  let bedUp = false;
  let finished = false;
  const teardown = () => {
    killAll();
    if (bedUp && !a['keep-bed']) { spawnSync(NB, ['down'], { stdio: 'ignore' }); bedUp = false; }
  };
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { if (!finished) { console.error('chaos-soak: interrupted, cleaning up'); teardown(); process.exit(130); } });
  process.on('exit', () => { if (bedUp) teardown(); });

  const up = spawnSync(NB, ['up', ...o.links.map((L) => L.spec)], { encoding: 'utf8' });
  fs.writeFileSync(path.join(RUN, 'netbed-up.log'), up.stdout + up.stderr);
  if (up.status !== 0) { console.error(up.stdout + up.stderr); die('netbed up failed'); }
  bedUp = true;
  log(up.stdout.trim().split('\n').join('\n    '));
  const secret = crypto.randomBytes(32).toString('base64');
  const secretFile = path.join(RUN, 'secret');
  fs.writeFileSync(secretFile, secret + '\n', { mode: 0o600 });

  const TARGET = '127.0.0.1:9080';
  bg(ns('srv', process.execPath, new URL(import.meta.url).pathname, 'target', '--listen', TARGET, '--dir', RUN), path.join(RUN, 'target.log'));
  const SRV = `10.77.1.2:${PORT}`;
  const srvProc = bg(ns('srv', process.execPath, a.plait, 'server', '--listen', SRV, '--secret-file', secretFile, '--allow-private',
    '--stats', '127.0.0.1:7101', '--log-level', 'info'), path.join(RUN, 'plait-server.log'));
  await sleep(700);
  const binds = o.links.flatMap((L) => ['--bind', `10.77.${L.k}.1`]);
  const cliProc = bg(ns('cli', process.execPath, a.plait, 'client', '--server', SRV, '--secret-file', secretFile, ...binds,
    '--socks', '127.0.0.1:1080', '--stats', '127.0.0.1:7100', '--log-level', 'info'), path.join(RUN, 'plait-client.log'));
  let srvExit = null, cliExit = null;
  srvProc.on('exit', (c, s) => { srvExit = { t: now(), code: c, signal: s }; });
  cliProc.on('exit', (c, s) => { cliExit = { t: now(), code: c, signal: s }; });

  const stats = async (which = 'cli') => {
    const r = await run(ns(which, 'curl', '-s', '-m', '2', `http://127.0.0.1:${which === 'cli' ? 7100 : 7101}/stats`), 4000);
    try { return JSON.parse(r.out); } catch { return null; }
  };
  let sUp = null;
  for (let i = 0; i < 100; i++) {
    const s = await stats();
    const subs = s?.sessions?.[0]?.subflows ?? [];
    if (subs.filter((f) => f.state === 'active').length >= o.links.length && fs.existsSync(path.join(RUN, 'target.ready'))) { sUp = s; break; }
    if (cliExit || srvExit) break;
    await sleep(200);
  }
  if (!sUp) { log('plait session (or the target) did not come up; see the logs in ' + RUN); teardown(); process.exit(1); }
  log(`session up: ${sUp.sessions[0].subflows.map((f) => `${f.local}->${f.remote}`).join(', ')}`);

  // ---- fault executor
  const T0 = now() + 1000; // schedule time zero
  const rel = (t = now()) => (t - T0) / 1000;
  const faultLog = fs.openSync(path.join(RUN, 'faults.jsonl'), 'w');
  const executed = Object.fromEntries(Object.keys(S.counts).map((k) => [k, 0]));
  const faultErrors = [];
  const downCount = Object.fromEntries(o.links.map((L) => [L.k, 0]));
  const outages = []; // actual all-links-down intervals [relStart, relEnd]
  let outageOpen = null;
  const markDown = (k, d) => {
    downCount[k] += d;
    const allDown = o.links.every((L) => downCount[L.k] > 0);
    if (allDown && outageOpen === null) outageOpen = rel();
    if (!allDown && outageOpen !== null) { outages.push([outageOpen, rel()]); outageOpen = null; }
  };
  const must = async (argv, what, f) => {
    const r = await run(argv, 8000);
    if (r.code !== 0) { faultErrors.push({ fault: f.i, what, code: r.code, err: r.err.trim().slice(0, 300) }); log(`fault #${f.i} ${what}: exit ${r.code} ${r.err.trim().slice(0, 200)}`); }
    return r;
  };
  const tc = (k, bps) => Promise.all([
    must(ns('cli', 'tc', 'qdisc', 'change', 'dev', `nbc${k}`, 'root', 'tbf', 'rate', String(bps), 'burst', String(tbfBurst(bps)), 'latency', process.env.NB_QLAT ?? '50ms'), `tc nbc${k} ${bps}`, { i: '-' }),
    must(ns('srv', 'tc', 'qdisc', 'change', 'dev', `nbs${k}`, 'root', 'tbf', 'rate', String(bps), 'burst', String(tbfBurst(bps)), 'latency', process.env.NB_QLAT ?? '50ms'), `tc nbs${k} ${bps}`, { i: '-' }),
  ]);
  const ssKill = (f, k) => f.side === 'cli'
    ? must(ns('cli', 'ss', '-K', '-H', '-tn', 'state', 'established', `src 10.77.${k}.1 and dport = :${PORT}`), `ss -K link ${k}`, f)
    : must(ns('srv', 'ss', '-K', '-H', '-tn', 'state', 'established', `dst 10.77.${k}.1 and sport = :${PORT}`), `ss -K link ${k}`, f);
  const rejectRule = (f, k) => f.side === 'srv'
    ? ['srv', ['INPUT', '-i', `nbs${k}`, '-p', 'tcp', '--dport', String(PORT), '-j', 'REJECT', '--reject-with', 'tcp-reset']]
    : ['cli', ['INPUT', '-i', `nbc${k}`, '-p', 'tcp', '--sport', String(PORT), '-j', 'REJECT', '--reject-with', 'tcp-reset']];
  let resetsKilled = 0;

  async function execFault(f) {
    const k0 = f.links[0];
    const rec = { i: f.i, kind: f.kind, links: f.links, plannedAt: f.t, dur: f.dur };
    await sleep(T0 + f.t * 1000 - now());
    rec.at = rel();
    const revertAt = T0 + (f.t + f.dur) * 1000;
    switch (f.kind) {
      case 'blackhole-1': case 'blackhole-2': case 'blackhole-all':
        await Promise.all(f.links.map(async (k) => { await must([NB, 'blackhole', String(k)], `blackhole ${k}`, f); markDown(k, +1); }));
        rec.applied = rel();
        await sleep(revertAt - now());
        await Promise.all(f.links.map(async (k) => { await must([NB, 'restore', String(k)], `restore ${k}`, f); markDown(k, -1); }));
        break;
      case 'flap': {
        const [n, dev] = f.side === 'cli' ? ['cli', `nbc${k0}`] : ['srv', `nbs${k0}`];
        await must(ns(n, 'ip', 'link', 'set', dev, 'down'), `link ${dev} down`, f); markDown(k0, +1);
        rec.applied = rel();
        await sleep(revertAt - now());
        await must(ns(n, 'ip', 'link', 'set', dev, 'up'), `link ${dev} up`, f);
        // admin-down flushed the client's source route for this link (netbed.sh's table 100+k)
        await must(ns('cli', 'ip', 'route', 'replace', '10.77.0.0/16', 'dev', `nbc${k0}`, 'src', `10.77.${k0}.1`, 'table', String(100 + k0)), `route nbc${k0}`, f);
        markDown(k0, -1);
        break;
      }
      case 'rate-drop': {
        const orig = o.links[k0 - 1].bps;
        await tc(k0, f.bps); rec.applied = rel();
        await sleep(revertAt - now());
        await tc(k0, orig);
        break;
      }
      case 'reset-ss': {
        for (const g of [...(f.gaps ?? []), null]) {
          const r = await ssKill(f, k0);
          const killed = r.out.split('\n').filter((l) => l.trim()).length; // ss -K -H: one line per socket it closed
          resetsKilled += killed;
          rec.killed = (rec.killed ?? 0) + killed;
          if (g !== null) await sleep(g * 1000);
        }
        rec.applied = rel();
        break;
      }
      case 'reset-reject': {
        const [n, rule] = rejectRule(f, k0);
        await must(ns(n, 'iptables', '-I', ...rule), `iptables -I ${rule.join(' ')}`, f); rec.applied = rel();
        await sleep(revertAt - now());
        await must(ns(n, 'iptables', '-D', ...rule), `iptables -D ${rule.join(' ')}`, f);
        break;
      }
    }
    rec.reverted = rel();
    executed[f.kind]++;
    fs.writeSync(faultLog, JSON.stringify(rec) + '\n');
  }

  // ---- transfers
  const transfers = [];
  const tEnd = T0 + o.minutes * 60 * 1000;
  let nextId = 1;
  let sinkProgress = { up: {}, down: {} };
  const trLog = fs.openSync(path.join(RUN, 'transfers.jsonl'), 'w');
  const curlBase = ['curl', '-sS', '--fail', '--socks5-hostname', '127.0.0.1:1080', '--connect-timeout', '120', '-m', String(a['curl-max-time']),
    '-w', '%{stderr}CURLW %{http_code} %{size_download} %{size_upload} %{time_connect} %{time_starttransfer} %{time_total} %{exitcode}\\n'];

  function runTransfer(dir, R, short) {
    const id = `${short ? 's' : ''}${dir === 'down' ? 'd' : 'u'}${nextId++}`;
    const size = Math.round(short ? R.logU(16 * 1024, MiB) : R.logU(minB, maxB));
    const seed = `${o.seed}-${id}`;
    const g = new Gen(seed);
    const hExp = crypto.createHash('sha256');
    const hGot = crypto.createHash('sha256');
    const t = { id, dir, short, size, start: rel(), bytes: 0, lastProgress: now(), maxGap: 0, mismatchAt: -1, extra: 0 };
    transfers.push(t);
    const url = dir === 'down' ? `http://${TARGET}/blob/${id}?size=${size}&seed=${seed}` : `http://${TARGET}/upload/${id}?size=${size}`;
    const argv = ns('cli', ...curlBase, ...(dir === 'down' ? ['-o', '-'] : ['-T', '-', '-o', '-']), url);
    const p = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    children.add(p);
    t.proc = p;
    let err = '', resp = '';
    p.stderr.on('data', (d) => { if (err.length < 8192) err += d; });
    p.stdin.on('error', () => {});
    if (dir === 'down') {
      p.stdout.on('data', (chunk) => {
        const room = Math.max(0, Math.min(chunk.length, size - t.bytes));
        if (room > 0) {
          const exp = g.next(room);
          const got = chunk.subarray(0, room);
          if (t.mismatchAt < 0 && !got.equals(exp)) { let j = 0; while (got[j] === exp[j]) j++; t.mismatchAt = t.bytes + j; }
          hExp.update(exp); hGot.update(got);
        }
        t.extra += chunk.length - room;
        t.bytes += chunk.length;
      });
    } else {
      p.stdout.on('data', (d) => { if (resp.length < 8192) resp += d; });
      (async () => {
        let sent = 0;
        while (sent < size && !p.stdin.destroyed) {
          const buf = g.next(Math.min(CHUNK, size - sent));
          hExp.update(buf);
          sent += buf.length;
          t.sent = sent;
          if (!p.stdin.write(buf)) {
            await new Promise((r) => {
              const go = () => { p.stdin.off('drain', go); p.stdin.off('close', go); r(); };
              p.stdin.on('drain', go); p.stdin.on('close', go);
            });
          }
        }
        if (!p.stdin.destroyed) p.stdin.end();
      })();
    }
    return new Promise((resolve) => {
      p.on('close', (code, sig) => {
        children.delete(p);
        delete t.proc;
        t.end = rel();
        t.code = code ?? 128;
        t.signal = sig ?? undefined;
        const w = err.match(/CURLW (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+) (\d+)/);
        if (w) Object.assign(t, { http: Number(w[1]), tConnect: Number(w[4]), tFirstByte: Number(w[5]), tTotal: Number(w[6]) });
        t.err = err.replace(/CURLW.*\n?/g, '').trim().slice(0, 300) || undefined;
        t.expSha = size === 0 ? '' : undefined;
        if (dir === 'down') {
          t.got = t.bytes;
          if (t.bytes === size) { t.expSha = hExp.digest('hex'); t.gotSha = hGot.digest('hex'); }
        } else {
          if (t.sent === size) t.expSha = hExp.digest('hex');
          try { const r = JSON.parse(resp); t.got = r.bytes; t.gotSha = r.sha256; } catch { t.got = sinkProgress.up[id] ?? t.bytes; }
          t.bytes = Math.max(t.bytes, t.got ?? 0);
        }
        classify(t);
        const { proc, ...row } = t;
        fs.writeSync(trLog, JSON.stringify(row) + '\n');
        resolve(t);
      });
    });
  }
  const socksFailure = (t) => t.code === 97 || /SOCKS/i.test(t.err ?? '');
  function classify(t) {
    const complete = t.code === 0 && t.got === t.size;
    if (complete && t.gotSha && t.gotSha === t.expSha && t.mismatchAt < 0 && t.extra === 0) t.result = 'ok';
    else if ((t.got === t.size && t.gotSha && t.expSha && t.gotSha !== t.expSha) || t.mismatchAt >= 0 || t.extra > 0) t.result = 'corrupted';
    else if (t.killedAtDrain) t.result = 'lost';
    else if (socksFailure(t) && !(t.got > 0)) t.result = 'refused?'; // decided at the end, against the outages
    else t.result = 'lost';
    const m = (t.err ?? '').match(/\((\d+)\)\s*$/m);
    if (socksFailure(t) && m) t.socksReply = Number(m[1]);
  }
  const stopNew = () => now() >= tEnd;
  // bulk workers (C, half each way) keep big transfers going; short workers (--short, half each way)
  // open a new SOCKS connection every second, so new streams also start during outages
  async function worker(slot, short) {
    const dir = slot % 2 === 0 ? 'down' : 'up';
    const R = rng((o.seed * 1000 + slot + (short ? 500 : 0)) >>> 0); // sizes: a fixed sequence per worker
    await sleep(slot * 400);
    if (short) { // one new connection a second whether the last ones finished or not (at most 20 in flight)
      const inflight = new Set();
      while (!stopNew() && !cliExit) {
        if (inflight.size < 20) { const p = runTransfer(dir, R, true); inflight.add(p); p.then(() => inflight.delete(p)); }
        await sleep(1000);
      }
      await Promise.all(inflight);
      return;
    }
    while (!stopNew() && !cliExit) {
      const t = await runTransfer(dir, R, false);
      if (t.result !== 'ok') await sleep(1000); // a failing proxy must not turn into thousands of instant retries
    }
  }

  // ---- progress sampling (stall) and stats polling
  const stall = { longest: 0, at: null, cur: 0 };
  let lastTotal = -1, lastProgT = now(), sampler;
  const doneBytes = () => transfers.reduce((s, t) => s + (t.proc ? 0 : (t.dir === 'down' ? t.bytes : (t.got ?? 0))), 0);
  const sample = () => {
    try { sinkProgress = JSON.parse(fs.readFileSync(path.join(RUN, 'target-progress.json'), 'utf8')); } catch { /* mid-rename: keep the last */ }
    const t = now();
    const running = transfers.filter((x) => x.proc);
    for (const x of running) if (x.dir === 'up') x.bytes = Math.max(x.bytes, sinkProgress.up?.[x.id] ?? 0);
    const total = doneBytes() + running.reduce((s, x) => s + x.bytes, 0);
    for (const x of running) {
      if (x.bytes !== x.lastBytes) { x.lastBytes = x.bytes; x.lastProgress = t; }
      x.maxGap = Math.max(x.maxGap, t - x.lastProgress);
    }
    if (total !== lastTotal || running.length === 0) { lastTotal = total; lastProgT = t; stall.cur = 0; return; }
    const cur = t - lastProgT;
    if (cur > stall.longest) { stall.longest = cur; stall.at = [rel(lastProgT), rel(t)]; }
  };
  const statsLog = fs.openSync(path.join(RUN, 'client-stats.jsonl'), 'w');
  let lastStats = sUp, maxSessions = sUp?.counters?.sessions ?? 1, statsPolling = true;
  const pollStats = async () => {
    while (statsPolling) {
      const t0 = now();
      const s = await stats();
      if (s) {
        lastStats = s;
        maxSessions = Math.max(maxSessions, s.counters?.sessions ?? 0);
        fs.writeSync(statsLog, JSON.stringify({ t: rel(), counters: s.counters, sessions: (s.sessions ?? []).map((x) => ({ open: x.openStreams, counters: x.counters, sub: x.subflows.map((f) => `${f.local}:${f.state}`) })) }) + '\n');
      }
      await sleep(1000 - (now() - t0));
    }
  };

  log(`soak: ${o.minutes} min, ${S.faults.length} faults, ${C} bulk transfers at a time (${Math.ceil(C / 2)} down, ${Math.floor(C / 2)} up), ${a['min-mib']}-${a['max-mib']} MiB, + ${a.short} short-transfer workers; run dir ${RUN}`);
  sampler = setInterval(sample, 100);
  const statsP = pollStats();
  const faultsP = Promise.all(S.faults.map((f) => execFault(f).catch((e) => { faultErrors.push({ fault: f.i, what: 'exception', err: String(e) }); })));
  const workersP = Promise.all([...Array.from({ length: C }, (_, i) => worker(i, false)), ...Array.from({ length: Number(a.short) }, (_, i) => worker(i, true))]);
  // progress line every 30 s
  const ticker = setInterval(() => {
    const fin = transfers.filter((t) => t.result);
    const bad = fin.filter((t) => t.result !== 'ok');
    log(`t=${rel().toFixed(0)} s: faults done ${Object.values(executed).reduce((s, x) => s + x, 0)}/${S.faults.length}, transfers ok ${fin.length - bad.length}, not ok ${bad.length} ${bad.length ? '(' + bad.map((t) => `${t.id}:${t.result}`).slice(-5).join(' ') + ')' : ''}, running ${transfers.filter((t) => t.proc).length}, ${(doneBytes() / MiB).toFixed(0)} MiB, longest stall ${(stall.longest / 1000).toFixed(1)} s, sessions ${maxSessions}${cliExit ? ', CLIENT EXITED' : ''}${srvExit ? ', SERVER EXITED' : ''}`);
  }, 30_000);
  await faultsP;
  log(`all ${S.faults.length} faults done (${faultErrors.length} command errors); waiting for the last transfers`);
  await sleep(tEnd - now());
  // drain: no new transfers; the running ones get --drain s
  const drainUntil = now() + Number(a.drain) * 1000;
  while (transfers.some((t) => t.proc) && now() < drainUntil) await sleep(200);
  for (const t of transfers.filter((x) => x.proc)) {
    t.killedAtDrain = true;
    log(`transfer ${t.id} (${t.dir}, ${t.size} B) still running ${Number(a.drain)} s after the end (${t.bytes} B so far): killing it, counted as lost`);
    try { process.kill(-t.proc.pid, 'SIGKILL'); } catch { /* gone */ }
  }
  await workersP;
  clearInterval(sampler); clearInterval(ticker);
  statsPolling = false;
  await statsP;
  const endStats = await stats();
  const srvStats = await stats('srv');
  if (endStats) { lastStats = endStats; maxSessions = Math.max(maxSessions, endStats.counters?.sessions ?? 0); }
  fs.writeFileSync(path.join(RUN, 'client-stats-end.json'), JSON.stringify(endStats, null, 1));
  fs.writeFileSync(path.join(RUN, 'server-stats-end.json'), JSON.stringify(srvStats, null, 1));
  if (outageOpen !== null) outages.push([outageOpen, rel()]);

  // ---- cross-check uploads against the sink's own record
  const sinkRec = new Map();
  try { for (const l of fs.readFileSync(path.join(RUN, 'target-uploads.jsonl'), 'utf8').split('\n').filter(Boolean)) { const r = JSON.parse(l); if (r.complete) sinkRec.set(r.id, r); } } catch { /* none */ }
  for (const t of transfers.filter((x) => x.dir === 'up' && x.result === 'ok')) {
    const r = sinkRec.get(t.id);
    if (!r || r.bytes !== t.size || r.sha256 !== t.expSha) { t.result = r && r.bytes === t.size ? 'corrupted' : 'lost'; t.sinkMismatch = r ?? 'no record'; }
  }
  // SOCKS refusals: "refused during outage" if the attempt overlapped a total outage (+15 s to come back)
  for (const t of transfers.filter((x) => x.result === 'refused?')) {
    const hit = outages.find(([s, e]) => t.start < e + 15 && t.end > s);
    t.result = hit ? 'refused-during-outage' : 'lost';
    if (hit) t.outage = hit;
  }
  finished = true;

  // ---- logs: session establishments, warnings
  const countMsg = (file, re) => { try { return fs.readFileSync(file, 'utf8').split('\n').filter((l) => re.test(l)).length; } catch { return null; } };
  const cliEstablished = countMsg(path.join(RUN, 'plait-client.log'), /"msg":"session established"/);
  const srvEstablished = countMsg(path.join(RUN, 'plait-server.log'), /"msg":"session established"/);
  const cliSessionClosed = countMsg(path.join(RUN, 'plait-client.log'), /"msg":"session closed/);

  // ---- summary
  const by = (pred) => transfers.filter(pred);
  const dirSum = (d, cls) => {
    const ts = by((t) => t.dir === d && (cls === undefined || t.short === cls));
    const okT = ts.filter((t) => t.result === 'ok');
    return {
      transfers: ts.length, ok: okT.length,
      lost: ts.filter((t) => t.result === 'lost').length, corrupted: ts.filter((t) => t.result === 'corrupted').length,
      refusedDuringOutage: ts.filter((t) => t.result === 'refused-during-outage').length,
      bytesVerified: okT.reduce((s, t) => s + t.size, 0), bytesDelivered: ts.reduce((s, t) => s + (t.dir === 'down' ? t.bytes : (t.got ?? t.bytes)), 0),
      longestTransferS: Math.max(0, ...okT.map((t) => t.end - t.start)),
    };
  };
  const down = dirSum('down'), upl = dirSum('up'), shortDown = dirSum('down', true), shortUp = dirSum('up', true);
  const lost = down.lost + upl.lost, corrupted = down.corrupted + upl.corrupted, refused = down.refusedDuringOutage + upl.refusedDuringOutage;
  const stallS = stall.longest / 1000;
  const overlapS = (iv) => outages.reduce((s, [a0, b0]) => s + Math.max(0, Math.min(iv[1], b0) - Math.max(iv[0], a0)), 0);
  const perTransferStall = Math.max(0, ...transfers.map((t) => t.maxGap)) / 1000;
  const restarts = Math.max(0, (maxSessions ?? 1) - 1, (cliEstablished ?? 1) - 1);
  const faultsTotal = Object.values(executed).reduce((s, x) => s + x, 0);
  const sum = {
    chaos: 'plait',
    seed: o.seed, minutes: o.minutes, links: o.links.map((L) => L.spec), concurrency: C, sizeMiB: [Number(a['min-mib']), Number(a['max-mib'])],
    build: a.build ?? null,
    faults: { planned: S.faults.length, injected: faultsTotal, byKind: executed, commandErrors: faultErrors.length, subflowSocketsReset: resetsKilled },
    totalOutages: { count: outages.length, longestS: +Math.max(0, ...outages.map(([s, e]) => e - s)).toFixed(2), totalS: +outages.reduce((s, [x, y]) => s + y - x, 0).toFixed(1) },
    transfers: { total: transfers.length, download: down, upload: upl, shortDownload: shortDown, shortUpload: shortUp },
    bytesMoved: down.bytesVerified + upl.bytesVerified, bytesMovedMiB: +((down.bytesVerified + upl.bytesVerified) / MiB).toFixed(1),
    lost, corrupted, refusedDuringOutage: refused,
    longestStallS: +stallS.toFixed(2), longestStallAt: stall.at?.map((x) => +x.toFixed(1)) ?? null,
    longestStallTotalOutageOverlapS: stall.at ? +overlapS(stall.at).toFixed(2) : 0,
    longestPerTransferStallS: +perTransferStall.toFixed(2),
    sessionRestarts: restarts,
    sessions: { clientStatsSessions: maxSessions, clientLogEstablished: cliEstablished, serverLogEstablished: srvEstablished, clientLogSessionClosed: cliSessionClosed },
    processes: { clientExited: cliExit, serverExited: srvExit },
    runDir: RUN,
  };
  const inOutage = (x) => outages.some(([s0, e0]) => x >= s0 && x < e0);
  sum.transfers.startedDuringTotalOutage = by((t) => inOutage(t.start)).length;
  sum.transfers.startedDuringTotalOutageOk = by((t) => inOutage(t.start) && t.result === 'ok').length;
  const span = transfers.length ? Math.max(...transfers.map((t) => t.end)) - Math.min(...transfers.map((t) => t.start)) : 0;
  sum.goodputMbit = span > 0 ? +((sum.bytesMoved * 8) / span / 1e6).toFixed(1) : 0;
  const bad = by((t) => t.result === 'lost' || t.result === 'corrupted');
  sum.failures = bad.map((t) => ({ id: t.id, dir: t.dir, size: t.size, result: t.result, start: +t.start.toFixed(2), end: +t.end.toFixed(2), got: t.got, code: t.code, err: t.err, mismatchAt: t.mismatchAt >= 0 ? t.mismatchAt : undefined, sink: t.sinkMismatch }));
  sum.refusals = by((t) => t.result === 'refused-during-outage').map((t) => ({ id: t.id, dir: t.dir, start: +t.start.toFixed(2), end: +t.end.toFixed(2), socksReply: t.socksReply, outage: t.outage.map((x) => +x.toFixed(1)) }));
  fs.writeFileSync(path.join(RUN, 'summary.json'), JSON.stringify(sum, null, 1));

  const L = [];
  const row = (k, v) => L.push(`  ${k.padEnd(34)} ${v}`);
  L.push('', `chaos soak: ${o.links.map((x) => x.spec).join(' ')}, ${o.minutes} min, seed ${o.seed}, ${C} bulk transfers at a time (${a['min-mib']}-${a['max-mib']} MiB) + ${a.short} short-transfer workers${a.build ? `, build ${a.build}` : ''}`);
  row('faults injected', `${faultsTotal} of ${S.faults.length} planned${faultErrors.length ? ` (${faultErrors.length} command errors, see driver.log)` : ''}`);
  for (const [k, v] of Object.entries(executed)) row(`  ${k}`, v);
  row('total outages (all links down)', `${sum.totalOutages.count}, longest ${sum.totalOutages.longestS} s, ${sum.totalOutages.totalS} s in all`);
  row('subflow sockets reset (ss -K)', resetsKilled);
  L.push('', `  ${'direction'.padEnd(10)} ${'transfers'.padStart(9)} ${'ok'.padStart(5)} ${'lost'.padStart(5)} ${'corrupt'.padStart(7)} ${'refused*'.padStart(8)} ${'MiB verified'.padStart(12)}`);
  for (const [name, d] of [['download', down], ['upload', upl], [' short dn', shortDown], [' short up', shortUp]]) L.push(`  ${name.padEnd(10)} ${String(d.transfers).padStart(9)} ${String(d.ok).padStart(5)} ${String(d.lost).padStart(5)} ${String(d.corrupted).padStart(7)} ${String(d.refusedDuringOutage).padStart(8)} ${(d.bytesVerified / MiB).toFixed(1).padStart(12)}`);
  L.push(`  ${'total'.padEnd(10)} ${String(transfers.length).padStart(9)} ${String(down.ok + upl.ok).padStart(5)} ${String(lost).padStart(5)} ${String(corrupted).padStart(7)} ${String(refused).padStart(8)} ${sum.bytesMovedMiB.toFixed(1).padStart(12)}`);
  L.push(`  (short: the 16 KiB-1 MiB transfers of the ${a.short} short workers, included in the rows above)`);
  L.push('  * refused during outage: SOCKS request failed with nothing transferred while all links were down (or <= 15 s after)', '');
  row('bytes moved (sha256-verified)', `${sum.bytesMovedMiB} MiB (${sum.goodputMbit} Mbit/s both ways together)`);
  row('started during a total outage', `${sum.transfers.startedDuringTotalOutage} (${sum.transfers.startedDuringTotalOutageOk} of them ok)`);
  row('lost', lost);
  row('corrupted', corrupted);
  row('refused during outage', refused + (sum.refusals.length ? ` (SOCKS replies ${[...new Set(sum.refusals.map((r) => r.socksReply))].join(',')})` : ''));
  row('longest stall (no byte progress)', `${sum.longestStallS} s${stall.at ? ` at t=${sum.longestStallAt.join('-')} s, ${sum.longestStallTotalOutageOverlapS} s of it in a total outage` : ''}`);
  row('longest stall of one transfer', `${sum.longestPerTransferStallS} s`);
  row('session restarts', `${restarts} (client /stats sessions ${maxSessions}; "session established": client ${cliEstablished}, server ${srvEstablished})`);
  if (cliExit || srvExit) row('PROCESS EXITED', JSON.stringify({ client: cliExit, server: srvExit }));
  for (const f of sum.failures) L.push(`  FAILED ${f.id} ${f.dir} ${f.size} B ${f.result}: t=${f.start}-${f.end} s, got ${f.got}, curl ${f.code}${f.mismatchAt !== undefined ? `, first bad byte at ${f.mismatchAt}` : ''}${f.err ? `, ${f.err}` : ''}`);
  L.push(`  run dir: ${RUN}`, '');
  console.log(L.join('\n'));
  console.log(JSON.stringify({ ...sum, failures: sum.failures.slice(0, 20), refusals: sum.refusals.length }));
  const fail = lost > 0 || corrupted > 0 || restarts > 0 || !!cliExit || !!srvExit || (a.strict && refused > 0) || faultsTotal < S.faults.length;
  teardown();
  process.exit(fail ? 1 : 0);
}

// ---------------------------------------------------------------- main
const a = parseArgs(process.argv.slice(2));
const cmd = a._[0];
if (cmd === 'target') cmdTarget(a);
else if (cmd === 'run') cmdRun(a).catch((e) => { console.error(e); killAll(); process.exit(1); });
else if (cmd === 'schedule') {
  const o = { seed: Number(a.seed), minutes: Number(a.minutes), faults: Number(a.faults), links: parseLinks(a.links), maxOutage: Number(a['max-outage']), outageGap: Number(a['outage-gap']) };
  printSchedule(makeSchedule(o), o);
} else { console.error('usage: see the header of scripts/chaos-soak.mjs and scripts/chaos-soak.sh -h'); process.exit(2); }
