import * as http from 'node:http';
import type * as net from 'node:net';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIVE_PAGE_HEADERS, LIVE_PAGE_HTML, renderLive, updateLiveHistory, type LiveHistory, type LiveSnapshot } from '../src/live-page.js';
import { startStatsServer, type StatsSnapshot } from '../src/stats.js';

const sub = (id: number, over: Record<string, unknown> = {}) => ({
  id,
  addrId: 0,
  local: `127.0.0.${id}:5000${id}`,
  remote: '127.0.0.1:7000',
  state: 'active',
  backup: false,
  rttMs: 12.34,
  minRttMs: 10,
  rateBytesPerSec: 1_000_000,
  inflightBytes: 4096,
  capBytes: 98304,
  bytesSent: 1024,
  bytesReceived: 3 * 1024 * 1024,
  bytesReinjected: 0,
  suspectCount: 0,
  ...over,
});

/** A client with two subflows, the second suspect and reinjected from, and a third path that is down. */
const sample = (received2 = 5 * 1024 * 1024): LiveSnapshot => ({
  role: 'client',
  uptimeSeconds: 3725,
  sessions: [
    {
      token: 'deadbeef',
      openStreams: 3,
      streamsOpened: 7,
      counters: { subflowsSuspected: 1, framesReinjected: 12, decryptFailures: 0, recordsSent: 99 },
      subflows: [sub(1), sub(2, { state: 'suspect', backup: true, bytesReceived: received2, bytesReinjected: 70000 })],
    },
  ],
  counters: { dials: 3, dialFailures: 1 },
  paths: [
    { key: 'a', local: '127.0.0.1', remote: '127.0.0.1:7000', backup: false, state: 'up', attempts: 0 },
    { key: 'b', local: '127.0.0.2', remote: '127.0.0.1:7000', backup: true, state: 'up', attempts: 0 },
    { key: 'c', local: '10.9.9.9', remote: '127.0.0.1:7000', backup: false, state: 'backoff', attempts: 4, lastError: 'connect EADDRNOTAVAIL <10.9.9.9>', problem: 'bind-unavailable' },
  ],
});

const rowOf = (html: string, attr: string): string => {
  const i = html.indexOf(attr);
  expect(i, attr).toBeGreaterThan(-1);
  return html.slice(html.lastIndexOf('<tr', i), html.indexOf('</tr>', i));
};

describe('renderLive (the function the page runs)', () => {
  const t0 = 1_700_000_000_000;
  const hist: LiveHistory = updateLiveHistory(updateLiveHistory({}, sample(), t0), sample(5 * 1024 * 1024 + 1_000_000), t0 + 1000);
  const html = renderLive(sample(5 * 1024 * 1024 + 1_000_000), hist, { connected: true, updatedAt: t0 + 1000 });

  it('one row per subflow with addresses, state word, role, RTT, bytes, reinjected, in-flight vs cap', () => {
    const r1 = rowOf(html, 'data-subflow="1"');
    expect(r1).toContain('127.0.0.1:50001 → 127.0.0.1:7000');
    expect(r1).toContain('● active');
    expect(r1).not.toContain('backup');
    expect(r1).toContain('12.3 ms');
    expect(r1).toContain('↑ 1.00 KiB');
    expect(r1).toContain('↓ 3.00 MiB');
    expect(r1).toContain('4.00 KiB / 96.0 KiB');
    expect(r1).toContain('<meter min="0" max="98304" value="4096">');
    const r2 = rowOf(html, 'data-subflow="2"');
    expect(r2).toContain('row-warn');
    expect(r2).toContain('◐ suspect');
    expect(r2).toContain('backup');
    expect(r2).toContain('68.4 KiB'); // reinjected
    expect(r2).toContain('↓ 8.00 Mbit/s'); // 1 MB more in 1 s
    expect(r1).toContain('↓ 0 bit/s');
  });

  it('shows the overflow role, from subflow and path stats', () => {
    const snap = sample();
    const subs = snap.sessions![0]!.subflows!;
    subs[0] = { ...subs[0]!, role: 'overflow' } as never;
    snap.paths![0] = { ...snap.paths![0]!, role: 'overflow' } as never;
    const page = renderLive(snap, {}, { connected: true, updatedAt: t0 });
    expect(rowOf(page, 'data-subflow="1"')).toContain('<span class="backup">overflow</span>');
    expect(rowOf(page, 'data-path="a"')).toContain('<span class="backup">overflow</span>');
  });

  it('session figures, uptime, and the client paths with their problem', () => {
    expect(html).toContain('plait client');
    expect(html).toContain('up 1h 2m 5s');
    expect(html).toContain('<code>deadbeef</code>');
    expect(html).toMatch(/open streams<\/dt><dd>3</);
    expect(html).toMatch(/subflows suspected<\/dt><dd>1</);
    expect(html).toMatch(/frames reinjected<\/dt><dd>12</);
    expect(html).toMatch(/decrypt failures<\/dt><dd>0</);
    const p = rowOf(html, 'data-path="c"');
    expect(p).toContain('✕ backoff');
    expect(p).toContain('<b>bind-unavailable</b>: connect EADDRNOTAVAIL &lt;10.9.9.9&gt;'); // escaped
    expect(html).toMatch(/dialFailures<\/dt><dd>1</);
  });

  it('a sparkline per subflow from the history', () => {
    expect(hist['deadbeef/2']!.down).toEqual([1_000_000]);
    const h3 = updateLiveHistory(hist, sample(5 * 1024 * 1024 + 3_000_000), t0 + 2000);
    expect(h3['deadbeef/2']!.down).toEqual([1_000_000, 2_000_000]);
    const r2 = rowOf(renderLive(sample(), h3, { connected: true }), 'data-subflow="2"');
    expect(r2).toMatch(/<svg class="spark"[^>]*role="img"/);
    expect(r2).toMatch(/<polyline class="down" points="[\d.]+,[\d.]+ [\d.]+,[\d.]+"/);
    let h: LiveHistory = {};
    for (let i = 0; i < 100; i++) h = updateLiveHistory(h, sample(i * 1000), t0 + i * 1000);
    expect(h['deadbeef/2']!.down).toHaveLength(60);
    expect(Object.keys(updateLiveHistory(h, { sessions: [] }, t0 + 200_000))).toEqual([]);
  });

  it('empty state: no session yet, the path problems still shown', () => {
    const s = { ...sample(), sessions: [] };
    const out = renderLive(s, {}, { connected: true });
    expect(out).toContain('No session yet');
    expect(out).toContain('bind-unavailable');
    expect(renderLive({ role: 'server', uptimeSeconds: 5, sessions: [], counters: {} }, {}, { connected: true })).toContain('no client has connected');
  });

  it('disconnected: says so, keeps the last figures', () => {
    const out = renderLive(sample(), hist, { connected: false, error: 'Failed to fetch' });
    expect(out).toContain('disconnected: Failed to fetch');
    expect(out).toContain('data-subflow="2"');
    expect(renderLive(undefined, {}, { connected: false })).toContain('disconnected');
  });

  it('escapes what comes from the wire', () => {
    const s = sample();
    s.sessions![0]!.token = '<img src=x onerror=alert(1)>';
    s.sessions![0]!.subflows![0]!.state = '"><script>';
    const out = renderLive(s, {}, { connected: true });
    expect(out).not.toContain('<img');
    expect(out).not.toContain('<script');
  });

  it('is self-contained: the copy the page embeds behaves the same (no closure over module names)', () => {
    const copy = new Function(`return [${updateLiveHistory.toString()}, ${renderLive.toString()}]`)() as [typeof updateLiveHistory, typeof renderLive];
    const h = copy[0](copy[0]({}, sample(), t0), sample(5 * 1024 * 1024 + 1_000_000), t0 + 1000);
    expect(h).toEqual(hist);
    expect(copy[1](sample(5 * 1024 * 1024 + 1_000_000), h, { connected: true, updatedAt: t0 + 1000 })).toBe(html);
  });
});

describe('the page document', () => {
  it('inline script and style only, admitted by hash; no external reference', () => {
    expect(LIVE_PAGE_HTML).not.toMatch(/https?:\/\//);
    expect(LIVE_PAGE_HTML).not.toMatch(/\s(src|href)=/);
    const script = /<script>([\s\S]*)<\/script>/.exec(LIVE_PAGE_HTML)![1]!;
    const style = /<style>([\s\S]*)<\/style>/.exec(LIVE_PAGE_HTML)![1]!;
    expect(script).not.toMatch(/<\/script/i);
    expect(() => new Function(script)).not.toThrow();
    const hash = (s: string) => `'sha256-${createHash('sha256').update(s).digest('base64')}'`;
    const csp = LIVE_PAGE_HEADERS['content-security-policy']!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain(`script-src ${hash(script)}`);
    expect(csp).toContain(`style-src ${hash(style)}`);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain('unsafe');
    expect(script).toContain("fetch('/stats'");
    expect(script).toContain("'/live'");
  });
});

describe('GET / on the stats server', () => {
  let server: http.Server;
  let port: number;
  const snap = (): StatsSnapshot => ({ role: 'client', uptimeSeconds: 1, sessions: [], counters: {} });
  beforeAll(async () => {
    server = await startStatsServer('127.0.0.1', 0, snap);
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const get = (path: string, host?: string) =>
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path, headers: host ? { host } : {} }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
        })
        .on('error', reject);
    });

  it('200 text/html with the CSP and nosniff', async () => {
    const r = await get('/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.headers['content-security-policy']).toBe(LIVE_PAGE_HEADERS['content-security-policy']);
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.body).toBe(LIVE_PAGE_HTML);
    expect(r.body).not.toMatch(/https?:\/\//);
    expect((await get('/?x=1')).status).toBe(200);
  });

  it('refused for a foreign Host, like /stats', async () => {
    for (const p of ['/', '/stats']) {
      const r = await get(p, 'evil.example:9100');
      expect(r.status).toBe(403);
      expect(r.body).not.toContain('<html');
    }
    expect((await get('/', 'localhost:1')).status).toBe(200);
  });
});
