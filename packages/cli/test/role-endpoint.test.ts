import * as http from 'node:http';
import type * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SubflowRole } from '@plait/core';
import { parseRoleBody, ROLE_BODY_MAX } from '../src/role-endpoint.js';
import { changeRole } from '../src/role-command.js';
import { startStatsServer, type StatsSnapshot } from '../src/stats.js';

const snap = (): StatsSnapshot => ({ role: 'client', uptimeSeconds: 1, sessions: [], counters: {} });

describe('POST /subflows/<id> body', () => {
  it('takes {"role": ...} or {"backup": bool}', () => {
    expect(parseRoleBody('{"role":"overflow"}')).toEqual({ role: 'overflow' });
    expect(parseRoleBody('{"backup":true}')).toEqual({ role: 'backup' });
    expect(parseRoleBody('{"backup":false}')).toEqual({ role: 'regular' });
  });
  it.each([
    ['', /not JSON/],
    ['{"role":"fast"}', /"role" must be one of regular, backup, overflow/],
    ['{"role":"backup","backup":true}', /not both/],
    ['{"backup":"yes"}', /"backup" must be true or false/],
    ['{"role":"backup","x":1}', /unknown field "x"/],
    ['[]', /JSON object/],
    ['{}', /send \{"role"/],
    ['{"__proto__":{"role":"backup"}}', /unknown field "__proto__"/],
  ])('refuses %j with a reason', (body, why) => {
    const r = parseRoleBody(body);
    expect('error' in r && r.error).toMatch(why);
  });
});

describe('POST /subflows/<id> on a stats server', () => {
  let server: http.Server;
  let port: number;
  const calls: [number, SubflowRole][] = [];
  beforeAll(async () => {
    server = await startStatsServer('127.0.0.1', 0, snap, {
      setRole: (id, role) => {
        calls.push([id, role]);
        return id === 3 ? '127.0.0.2>vps:7000' : undefined;
      },
    });
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  function post(path: string, body: string | Buffer, headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' }, method = 'POST'): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path, method, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  it('changes the role and says which path', async () => {
    const r = await post('/subflows/3', '{"backup": true}');
    expect(r.status).toBe(200);
    expect(JSON.parse(r.body)).toEqual({ subflow: 3, path: '127.0.0.2>vps:7000', role: 'backup' });
    expect(calls.at(-1)).toEqual([3, 'backup']);
  });

  it('clear 4xx errors: unknown id, bad body, wrong type, wrong method, cross-site, too large, foreign Host', async () => {
    const before = calls.length;
    expect(await post('/subflows/9', '{"role":"regular"}')).toMatchObject({ status: 404, body: expect.stringMatching(/no subflow 9/) });
    expect(await post('/subflows/3', '{"role":"fast"}')).toMatchObject({ status: 400, body: expect.stringMatching(/must be one of/) });
    expect(await post('/subflows/3', '{"role":"backup"}', { 'content-type': 'text/plain' })).toMatchObject({ status: 415 });
    // A form a web page could send without a CORS preflight: refused.
    expect(await post('/subflows/3', 'role=backup', { 'content-type': 'application/x-www-form-urlencoded' })).toMatchObject({ status: 415 });
    expect(await post('/subflows/3', '{"role":"backup"}', { 'content-type': 'application/json', origin: 'http://evil.example' })).toMatchObject({ status: 403, body: expect.stringMatching(/cross-site/) });
    expect(await post('/subflows/3', '{"role":"backup"}', { 'content-type': 'application/json', host: 'evil.example:80' })).toMatchObject({ status: 403 });
    expect((await post('/subflows/3', '', {}, 'GET')).status).toBe(405);
    expect(await post('/subflows/3', Buffer.alloc(ROLE_BODY_MAX + 1, 0x20))).toMatchObject({ status: 413 });
    expect(calls.length - before).toBe(1); // only the unknown id reached setRole
    // The same origin (a page served by this port) may.
    expect((await post('/subflows/3', '{"role":"overflow"}', { 'content-type': 'application/json', origin: `http://127.0.0.1:${port}` })).status).toBe(200);
  });

  it('a body sent without Content-Length (chunked) is still bounded', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/subflows/3', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', () => resolve(-1)); // the server may cut us off mid-body: also a refusal
      for (let i = 0; i < 64; i++) req.write(Buffer.alloc(1024, 0x20));
      req.end();
      setTimeout(() => reject(new Error('no answer')), 5000).unref();
    });
    expect([413, -1]).toContain(status);
  });

  it('the server has no role endpoint (roles are the client\'s)', async () => {
    const s = await startStatsServer('127.0.0.1', 0, snap);
    const p = (s.address() as net.AddressInfo).port;
    const r = await changeRole('3', 'backup', { stats: `127.0.0.1:${p}` });
    s.close();
    expect(r).toEqual({ ok: false, message: 'roles are changed on the client (its --stats port); the server follows them' });
  });

  it('`plait role` talks to it', async () => {
    expect(await changeRole('3', 'regular', { stats: `127.0.0.1:${port}` })).toEqual({ ok: true, message: 'subflow 3 (path 127.0.0.2>vps:7000): role regular' });
    expect(await changeRole('8', 'regular', { stats: `127.0.0.1:${port}` })).toEqual({ ok: false, message: 'no subflow 8 (GET /stats lists the subflows and their ids)' });
    await expect(changeRole('0', 'regular', { stats: `127.0.0.1:${port}` })).rejects.toThrow(/^<subflow>: /);
    await expect(changeRole('3', 'fast', { stats: `127.0.0.1:${port}` })).rejects.toThrow(/^<role>: "fast" is not a role/);
  });
});
