import { createHash } from 'node:crypto';

/**
 * The live link page served at GET / on the stats port: one self-contained
 * HTML document (inline CSS and JS, no external resources) that takes the
 * stats JSON the /live WebSocket pushes every second (polling /stats once a
 * second instead while the WebSocket fails) and shows each path and subflow.
 *
 * The rendering is two pure functions, `updateLiveHistory` and
 * `renderLive`, that the page's script embeds with Function.prototype.toString,
 * so the tests run the very code the browser runs. They must stay
 * self-contained: no imports, no module-level names, only their arguments
 * and JavaScript built-ins.
 */

/** Samples kept per subflow: one a second for the last minute. */
export const LIVE_HISTORY_SAMPLES = 60;

/** The shape of /stats the page reads (loosely typed: it is JSON from the wire). */
export interface LiveSnapshot {
  role?: string;
  uptimeSeconds?: number;
  sessions?: {
    token?: string;
    openStreams?: number;
    streamsOpened?: number;
    counters?: Record<string, number>;
    subflows?: {
      id: number;
      local?: string;
      remote?: string;
      state?: string;
      backup?: boolean;
      role?: string;
      rttMs?: number;
      rateBytesPerSec?: number;
      inflightBytes?: number;
      capBytes?: number;
      bytesSent?: number;
      bytesReceived?: number;
      bytesReinjected?: number;
    }[];
  }[];
  counters?: Record<string, number>;
  paths?: { key?: string; local?: string; remote?: string; backup?: boolean; role?: string; state?: string; attempts?: number; lastError?: string; problem?: string }[];
}

/** Per subflow (key "token/id"): the last counters seen and the rates over the last minute. */
export interface LiveHistory {
  [key: string]: { t: number; sent: number; received: number; up: number[]; down: number[] };
}

export interface LiveStatus {
  /** false after a failed poll: the page says "disconnected" and keeps the last figures. */
  connected: boolean;
  /** Why the last poll failed. */
  error?: string;
  /** Time of the last good snapshot (ms since the epoch). */
  updatedAt?: number;
  /** How the last snapshot came: pushed over the /live WebSocket, or by polling /stats. */
  via?: 'websocket' | 'polling';
}

/**
 * Fold a snapshot into the history: per subflow, upload and download rates
 * from the byte counters' change since the previous snapshot, the last
 * LIVE_HISTORY_SAMPLES (60) kept. Subflows gone from the snapshot are dropped.
 * Returns a new history; `now` is in ms.
 */
export function updateLiveHistory(prev: LiveHistory, snap: LiveSnapshot, now: number): LiveHistory {
  const keep = 60;
  const next: LiveHistory = {};
  for (const st of snap.sessions || []) {
    for (const sf of st.subflows || []) {
      const key = String(st.token) + '/' + String(sf.id);
      const sent = sf.bytesSent || 0;
      const received = sf.bytesReceived || 0;
      const old = prev[key];
      if (!old) {
        next[key] = { t: now, sent, received, up: [], down: [] };
        continue;
      }
      const dt = (now - old.t) / 1000;
      if (dt <= 0) {
        next[key] = old;
        continue;
      }
      const up = old.up.concat([Math.max(0, (sent - old.sent) / dt)]).slice(-keep);
      const down = old.down.concat([Math.max(0, (received - old.received) / dt)]).slice(-keep);
      next[key] = { t: now, sent, received, up, down };
    }
  }
  return next;
}

/** The page's body for one snapshot (or none yet) and the history: an HTML string, every value escaped. */
export function renderLive(snap: LiveSnapshot | undefined, hist: LiveHistory, status: LiveStatus): string {
  const esc = (v: unknown): string =>
    String(v).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string);
  const num = (v: unknown): number => (typeof v === 'number' && isFinite(v) ? v : 0);
  const bytes = (v: unknown): string => {
    const n = num(v);
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let x = n;
    while (x >= 1024 && i < units.length - 1) {
      x /= 1024;
      i++;
    }
    return (i === 0 ? String(Math.round(x)) : x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)) + ' ' + units[i];
  };
  const rate = (v: unknown): string => {
    const bits = num(v) * 8;
    const units = ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s'];
    let i = 0;
    let x = bits;
    while (x >= 1000 && i < units.length - 1) {
      x /= 1000;
      i++;
    }
    return (i === 0 ? String(Math.round(x)) : x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0)) + ' ' + units[i];
  };
  const duration = (v: unknown): string => {
    let s = Math.floor(num(v));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    return d > 0 ? d + 'd ' + h + 'h ' + m + 'm' : h > 0 ? h + 'h ' + m + 'm ' + s + 's' : m > 0 ? m + 'm ' + s + 's' : s + 's';
  };
  // Subflow states (pending-ok, active, suspect, closed) and client path states (idle, connecting, up, backoff):
  // a symbol and the word, not colour alone.
  const kinds: Record<string, string> = { active: 'ok', up: 'ok', suspect: 'warn', 'pending-ok': 'info', pending: 'info', connecting: 'info', idle: 'info', closed: 'bad', backoff: 'bad' };
  const icons: Record<string, string> = { ok: '●', warn: '◐', info: '○', bad: '✕' };
  const kindOf = (state: unknown): string => kinds[String(state)] || 'info';
  const badge = (state: unknown): string => {
    const k = kindOf(state);
    return '<span class="st ' + k + '">' + icons[k] + ' ' + esc(state === undefined ? 'unknown' : state) + '</span>';
  };
  // A non-regular role, tagged (older stats have only the backup flag).
  const roleTag = (role: unknown, backup: unknown): string => {
    const r = role === undefined ? (backup ? 'backup' : 'regular') : String(role);
    return r === 'regular' ? '' : ' <span class="backup">' + esc(r) + '</span>';
  };
  const spark = (up: number[], down: number[]): string => {
    const w = 120;
    const h = 28;
    const max = Math.max(1, ...up, ...down);
    const line = (xs: number[]): string =>
      xs.map((v, i) => (w - (xs.length - 1 - i) * (w / 59)).toFixed(1) + ',' + (h - 1 - (v / max) * (h - 3)).toFixed(1)).join(' ');
    const label = 'last minute: up peak ' + rate(Math.max(0, ...up)) + ', down peak ' + rate(Math.max(0, ...down));
    return (
      '<svg class="spark" width="' + w + '" height="' + h + '" viewBox="0 0 ' + w + ' ' + h + '" role="img" aria-label="' + esc(label) + '"><title>' + esc(label) + '</title>' +
      '<line x1="0" y1="' + (h - 0.5) + '" x2="' + w + '" y2="' + (h - 0.5) + '" class="axis"/>' +
      (down.length > 1 ? '<polygon class="downfill" points="' + (w - (down.length - 1) * (w / 59)).toFixed(1) + ',' + h + ' ' + line(down) + ' ' + w + ',' + h + '"/>' : '') +
      (down.length > 1 ? '<polyline class="down" points="' + line(down) + '"/>' : '') +
      (up.length > 1 ? '<polyline class="up" points="' + line(up) + '"/>' : '') +
      '</svg>'
    );
  };
  const last = (xs: number[]): number | undefined => (xs.length ? xs[xs.length - 1] : undefined);

  const out: string[] = [];
  const when = status.updatedAt ? new Date(status.updatedAt).toTimeString().slice(0, 8) : '';
  out.push('<header><h1>plait ' + esc(snap?.role || '') + '</h1>');
  out.push(
    status.connected
      ? '<span class="conn ok" data-via="' + esc(status.via || '') + '">● live' + (status.via === 'polling' ? ' (polling /stats)' : '') + '</span>'
      : '<span class="conn bad" role="alert">✕ disconnected' + (status.error ? ': ' + esc(status.error) : '') + ' — retrying</span>',
  );
  if (snap) out.push('<span class="meta">up ' + esc(duration(snap.uptimeSeconds)) + '</span>');
  if (when) out.push('<span class="meta">updated ' + esc(when) + '</span>');
  out.push('</header>');

  if (!snap) {
    out.push('<p class="empty">' + (status.connected ? 'Loading…' : 'No stats yet: the stats port did not answer.') + '</p>');
    return out.join('');
  }

  const sessions = snap.sessions || [];
  if (sessions.length === 0) {
    out.push(
      '<p class="empty">No session yet' + (snap.role === 'client' ? ': the client is still connecting to the server.' : ': no client has connected.') + '</p>',
    );
  }
  for (const st of sessions) {
    const c = st.counters || {};
    out.push('<section class="session"><h2>session <code>' + esc(st.token) + '</code></h2><dl class="figs">');
    const fig = (k: string, v: string, warn?: boolean): void => {
      out.push('<div' + (warn ? ' class="warn"' : '') + '><dt>' + esc(k) + '</dt><dd>' + esc(v) + '</dd></div>');
    };
    fig('open streams', String(num(st.openStreams)));
    fig('streams opened', String(num(st.streamsOpened)));
    fig('subflows suspected', String(num(c.subflowsSuspected)), num(c.subflowsSuspected) > 0);
    fig('frames reinjected', String(num(c.framesReinjected)), num(c.framesReinjected) > 0);
    fig('decrypt failures', String(num(c.decryptFailures)), num(c.decryptFailures) > 0);
    out.push('</dl>');
    out.push(
      '<table><thead><tr><th>#</th><th>local → remote</th><th>state</th><th class="n">RTT</th><th class="n">rate</th>' +
        '<th>last minute <span class="key up">↑ up</span> <span class="key down">↓ down</span></th><th class="n">sent / received</th><th class="n">reinjected</th><th>in flight / cap</th></tr></thead><tbody>',
    );
    const subs = st.subflows || [];
    if (subs.length === 0) out.push('<tr><td colspan="9" class="empty">no subflow up</td></tr>');
    for (const sf of subs) {
      const h = hist[String(st.token) + '/' + String(sf.id)] || { up: [], down: [] };
      const infl = num(sf.inflightBytes);
      const cap = num(sf.capBytes);
      out.push(
        '<tr class="sf row-' + kindOf(sf.state) + '" data-subflow="' + esc(sf.id) + '">' +
          '<td>' + esc(sf.id) + '</td>' +
          '<td class="addr">' + esc(sf.local) + ' → ' + esc(sf.remote) + '</td>' +
          '<td>' + badge(sf.state) + roleTag(sf.role, sf.backup) + '</td>' +
          '<td class="n">' + esc(num(sf.rttMs).toFixed(1)) + ' ms</td>' +
          '<td class="n two"><span class="up" title="upload">↑ ' + esc(rate(last(h.up) ?? 0)) + '</span><span class="down" title="download">↓ ' + esc(rate(last(h.down) ?? 0)) + '</span></td>' +
          '<td>' + spark(h.up, h.down) + '</td>' +
          '<td class="n two"><span title="sent">↑ ' + esc(bytes(sf.bytesSent)) + '</span><span title="received">↓ ' + esc(bytes(sf.bytesReceived)) + '</span></td>' +
          '<td class="n' + (num(sf.bytesReinjected) > 0 ? ' warn' : '') + '">' + esc(bytes(sf.bytesReinjected)) + '</td>' +
          '<td class="cap"><meter min="0" max="' + esc(cap || 1) + '" value="' + esc(Math.min(infl, cap || 1)) + '"></meter><span>' +
          esc(bytes(infl)) + ' / ' + esc(cap ? bytes(cap) : '—') + '</span></td>' +
          '</tr>',
      );
    }
    out.push('</tbody></table>');
    const other = Object.keys(c)
      .filter((k) => num(c[k]) > 0 && k !== 'subflowsSuspected' && k !== 'framesReinjected' && k !== 'decryptFailures')
      .sort();
    if (other.length) {
      out.push('<details><summary>session counters</summary><dl class="figs small">');
      for (const k of other) fig(k, String(num(c[k])));
      out.push('</dl></details>');
    }
    out.push('</section>');
  }

  const paths = snap.paths || [];
  if (paths.length) {
    out.push('<section><h2>paths</h2><table class="paths"><thead><tr><th>local → remote</th><th>state</th><th>role</th><th class="n">attempts</th><th>problem</th></tr></thead><tbody>');
    for (const p of paths) {
      out.push(
        '<tr class="path" data-path="' + esc(p.key || '') + '">' +
          '<td class="addr">' + esc(p.local) + ' → ' + esc(p.remote) + '</td>' +
          '<td>' + badge(p.state) + '</td>' +
          '<td>' + (roleTag(p.role, p.backup) || 'regular') + '</td>' +
          '<td class="n">' + esc(num(p.attempts)) + '</td>' +
          '<td class="problem">' + (p.lastError ? (p.problem ? '<b>' + esc(p.problem) + '</b>: ' : '') + esc(p.lastError) : p.problem ? '<b>' + esc(p.problem) + '</b>' : '') + '</td>' +
          '</tr>',
      );
    }
    out.push('</tbody></table></section>');
  }

  const tc = snap.counters || {};
  const keys = Object.keys(tc).sort();
  if (keys.length) {
    out.push('<section><h2>' + esc(snap.role || '') + ' counters</h2><dl class="figs small">');
    for (const k of keys) out.push('<div><dt>' + esc(k) + '</dt><dd>' + esc(num(tc[k])) + '</dd></div>');
    out.push('</dl></section>');
  }
  return out.join('');
}

const CSS = `
:root{color-scheme:light dark;--bg:#f7f7f5;--fg:#1d1d1f;--mute:#6b6b70;--card:#fff;--line:#e3e3e0;--ok:#1a7f37;--warn:#9a6700;--bad:#c62828;--info:#0b62c4;--up:#0b62c4;--down:#1a7f37}
@media (prefers-color-scheme:dark){:root{--bg:#161618;--fg:#e8e8ea;--mute:#9a9aa0;--card:#1f1f22;--line:#333338;--ok:#4ac26b;--warn:#d4a72c;--bad:#ff6b6b;--info:#58a6ff;--up:#58a6ff;--down:#4ac26b}}
*{box-sizing:border-box}
body{margin:0;padding:16px 20px;background:var(--bg);color:var(--fg);font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
header{display:flex;align-items:baseline;gap:16px;flex-wrap:wrap;margin-bottom:12px}
h1{font-size:20px;margin:0}
h2{font-size:15px;margin:0 0 8px}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.meta{color:var(--mute)}
.conn{font-weight:600}.conn.ok{color:var(--ok)}.conn.bad{color:var(--bad)}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;margin-bottom:14px;overflow-x:auto}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:5px 7px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap;vertical-align:middle}
th{font-size:12px;font-weight:600;color:var(--mute)}
tbody tr:last-child td{border-bottom:0}
.n{text-align:right}
.addr{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.st{font-weight:600}
.st.ok{color:var(--ok)}.st.warn{color:var(--warn)}.st.info{color:var(--info)}.st.bad{color:var(--bad)}
tr.row-warn{background:color-mix(in srgb,var(--warn) 12%,transparent)}
tr.row-bad{opacity:.65}
.two span{display:block}.two .up{color:var(--up)}.two .down{color:var(--down)}
.backup{border:1px solid var(--mute);border-radius:4px;padding:0 4px;font-size:12px}
td.warn{color:var(--warn);font-weight:600}
.problem{white-space:normal;color:var(--bad);min-width:240px}
.figs{display:flex;flex-wrap:wrap;gap:6px 22px;margin:0 0 10px}
.figs div{display:flex;gap:6px;align-items:baseline}
.figs dt{color:var(--mute)}.figs dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}
.figs.small{font-size:13px}
.figs div.warn dd{color:var(--warn)}
.spark{display:block}
.spark polyline{fill:none;stroke-width:1.6;stroke-linejoin:round}
.spark .up{stroke:var(--up)}.spark .down{stroke:var(--down)}.spark .axis{stroke:var(--line)}.spark .downfill{fill:var(--down);opacity:.15;stroke:none}
.key{font-weight:600;margin-left:4px}.key.up{color:var(--up)}.key.down{color:var(--down)}
meter{display:block;width:100%;min-width:90px;height:10px}
.cap span{font-size:12px;color:var(--mute)}
.empty{color:var(--mute);font-style:italic}
details{margin-top:8px}summary{cursor:pointer;color:var(--mute)}
`;

/**
 * The page's own loop: take the snapshots /live pushes; when the WebSocket
 * fails (or goes quiet), poll /stats once a second and try /live again
 * every 10 s. Either way: fold, render; on failure say so and keep trying.
 */
export const LIVE_PAGE_MAIN = `
let snap, hist = {}, status = { connected: true };
let mode = 'connecting', ws, quiet, retry, pollTimer;
const root = document.getElementById('live');
const draw = () => { root.innerHTML = renderLive(snap, hist, status); };
function take(s, via) {
  const now = Date.now();
  hist = updateLiveHistory(hist, s, now);
  snap = s;
  status = { connected: true, updatedAt: now, via };
  draw();
}
function lost(why) {
  status = { connected: false, error: why, updatedAt: status.updatedAt, via: status.via };
  draw();
}
function connect() {
  clearTimeout(retry);
  try {
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/live');
  } catch (e) {
    fallBack();
    return;
  }
  const alive = () => { clearTimeout(quiet); quiet = setTimeout(() => ws.close(), 5000); };
  ws.onopen = () => { mode = 'websocket'; clearTimeout(pollTimer); alive(); };
  ws.onmessage = (ev) => {
    alive();
    try { take(JSON.parse(ev.data), 'websocket'); } catch (e) { lost('bad snapshot: ' + String(e && e.message || e)); }
  };
  ws.onclose = () => { clearTimeout(quiet); ws = undefined; fallBack(); };
}
function fallBack() {
  const wasPolling = mode === 'polling';
  mode = 'polling';
  if (!wasPolling) poll();
  clearTimeout(retry);
  retry = setTimeout(connect, 10000); // polling goes on until /live opens
}
async function poll() {
  if (mode !== 'polling') return;
  try {
    const r = await fetch('/stats', { cache: 'no-store' });
    if (!r.ok) throw new Error('HTTP ' + r.status);
    const s = await r.json();
    if (mode === 'polling') take(s, 'polling');
  } catch (e) {
    lost(String(e && e.message || e));
  }
  if (mode === 'polling') pollTimer = setTimeout(poll, 1000);
}
draw();
connect();
`;

const SCRIPT = `'use strict';\nconst updateLiveHistory = ${updateLiveHistory.toString()};\nconst renderLive = ${renderLive.toString()};\n${LIVE_PAGE_MAIN}`;

const sha256 = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

/** The whole page. */
export const LIVE_PAGE_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>plait links</title>
<style>${CSS}</style>
</head><body><main id="live" aria-live="polite"></main>
<script>${SCRIPT}</script>
</body></html>
`;

/**
 * Headers for the page: a Content-Security-Policy that admits only this
 * page's own inline script and style (by hash) and fetches to its own
 * origin, nothing else (no external resource, no framing, no forms).
 */
export const LIVE_PAGE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(CSS)}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};
