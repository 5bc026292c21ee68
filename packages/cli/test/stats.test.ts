import * as http from 'node:http';
import type * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionStats } from '@plait/core';
import { isAllowedStatsHost, publicSnapshot, startStatsServer, toPrometheus, type StatsSnapshot } from '../src/stats.js';

const TOKEN = '0123456789abcdef0123456789abcdef';

function session(token = TOKEN): SessionStats {
  return {
    role: 'client',
    token,
    openStreams: 1,
    streamsOpened: 2,
    recvBufferedBytes: 0,
    counters: { recordsSent: 3 },
    subflows: [
      {
        id: 1,
        local: '127.0.0.1:5000',
        remote: '127.0.0.1:7000',
        state: 'active',
        backup: false,
        rttMs: 1,
        rateBytesPerSec: 2,
        inflightBytes: 0,
        bytesSent: 10,
        bytesReceived: 20,
        bytesReinjected: 0,
      },
    ],
  } as unknown as SessionStats;
}

const snap = (): StatsSnapshot => ({ role: 'client', uptimeSeconds: 1, sessions: [session()], counters: { dials: 1 } });

describe('isAllowedStatsHost (DNS rebinding defense)', () => {
  it.each([
    '127.0.0.1',
    '127.0.0.1:9100',
    '10.0.0.5:80',
    '[::1]',
    '[::1]:9100',
    '[2001:db8::1]:9100',
    'localhost',
    'localhost:9100',
    'LocalHost:9100',
    'localhost.',
    'localhost.:9100',
  ])('allows %j', (h) => expect(isAllowedStatsHost(h)).toBe(true));

  it.each([
    'evil.example',
    'evil.example:9100',
    '127.0.0.1.nip.io',
    'localhost.evil.example',
    'evil-localhost',
    '2130706433',
    '0x7f000001',
    '::1',
    '[::1',
    '[evil.example]:80',
    '127.0.0.1:99999',
    '127.0.0.1:',
    '127.0.0.1:80:80',
    '',
    ' 127.0.0.1',
  ])('refuses %j', (h) => expect(isAllowedStatsHost(h)).toBe(false));

  it('allows a request without Host (HTTP/1.0 tools; browsers always send one)', () => {
    expect(isAllowedStatsHost(undefined)).toBe(true);
  });
});

describe('token prefix only', () => {
  it('publicSnapshot keeps 8 hex digits of each token and leaves the caller’s objects alone', () => {
    const s = snap();
    const p = publicSnapshot(s);
    expect(p.sessions[0]!.token).toBe('01234567');
    expect(s.sessions[0]!.token).toBe(TOKEN);
    expect(JSON.stringify(p)).not.toContain(TOKEN);
  });
  it('Prometheus text carries the prefix only', () => {
    const text = toPrometheus(snap());
    expect(text).toContain('session="01234567"');
    expect(text).not.toMatch(/[0-9a-f]{32}/);
  });
});

describe('startStatsServer', () => {
  let server: http.Server;
  let port = 0;
  beforeAll(async () => {
    server = await startStatsServer('127.0.0.1', 0, snap);
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const get = (path: string, host: string | undefined): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string> = {};
      if (host !== undefined) headers.host = host;
      const req = http.request({ host: '127.0.0.1', port, path, headers, agent: false, setHost: host === undefined ? false : true }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });

  it('refuses a foreign Host with 403 and a reason, on /stats, /metrics and unknown paths', async () => {
    for (const path of ['/stats', '/metrics', '/nope']) {
      const r = await get(path, 'evil.example');
      expect(r.status).toBe(403);
      expect(r.body).toMatch(/Host/);
      expect(r.body).not.toContain('0123456');
    }
  });

  it('serves IP-literal and localhost Hosts, showing only the token prefix', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, '[::1]']) {
      const r = await get('/stats', host);
      expect(r.status, host).toBe(200);
      const j = JSON.parse(r.body) as StatsSnapshot;
      expect(j.sessions[0]!.token).toBe('01234567');
      expect(r.body).not.toContain(TOKEN);
      const m = await get('/metrics', host);
      expect(m.status).toBe(200);
      expect(m.body).not.toContain(TOKEN);
    }
  });
});

describe('published ports in /metrics', () => {
  it('client rows are labelled by port and target, server rows by port, user and session', () => {
    const client = toPrometheus({
      ...snap(),
      publications: [{ serverPort: 8443, target: '[fd00::5]:443', state: 'open', code: 'OPEN', reason: 'listening', connections: 2, connectionsTotal: 7, connectionsFailed: 1, bytesIn: 100, bytesOut: 5000 }],
    });
    expect(client).toContain('plait_publication_open{port="8443",target="[fd00::5]:443"} 1');
    expect(client).toContain('plait_publication_connections{port="8443",target="[fd00::5]:443"} 2');
    expect(client).toContain('plait_publication_connections_total{port="8443",target="[fd00::5]:443"} 7');
    expect(client).toContain('plait_publication_connections_refused_total{port="8443",target="[fd00::5]:443"} 1');
    expect(client).toContain('plait_publication_bytes_total{port="8443",target="[fd00::5]:443",direction="out"} 5000');
    const server = toPrometheus({
      ...snap(),
      role: 'server',
      publications: [
        { port: 8443, user: 'alice', session: TOKEN.slice(0, 8), state: 'taken', connections: 0, connectionsTotal: 3, connectionsRefused: 0, bytesIn: 1, bytesOut: 2 },
        { port: 2222, session: 'abcdef01', state: 'open', connections: 1, connectionsTotal: 1, connectionsRefused: 4, bytesIn: 3, bytesOut: 4 },
      ],
    });
    expect(server).toContain('plait_publication_open{port="8443",user="alice",session="01234567"} 0');
    expect(server).toContain('plait_publication_connections_refused_total{port="2222",session="abcdef01"} 4');
    expect(server).toContain('plait_publication_bytes_total{port="8443",user="alice",session="01234567",direction="in"} 1');
  });
});
