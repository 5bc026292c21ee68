/**
 * The server's WebSocket listener on loopback: WebSocket and TCP subflows
 * join one session; anything that is not a plait upgrade at the path is
 * answered and closed; strangers get the same pre-auth treatment as on TCP.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { connectSession, deriveSecretKeys, joinSession, makeConfig, realClock } from '@plait/core';
import { dialWebSocket, SocketChannel, WS_SUBPROTOCOL } from '@plait/node';
import { PlaitServer } from '../src/server.js';
import { forwardedFor, WebSocketListener } from '../src/ws-listener.js';

const secretKeys = deriveSecretKeys('ws-listener-test-secret-0123456789');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tcp(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.once('error', reject);
    cleanups.push(() => s.destroy());
  });
}

async function startServer() {
  const server = new PlaitServer({
    listen: [
      { host: '127.0.0.1', port: 0 },
      { host: '127.0.0.1', port: 0, path: '/plait' },
    ],
    secretKeys,
  });
  await server.listen();
  cleanups.push(() => server.close());
  const [t, w] = server.listeners;
  expect(t!.transport).toBe('tcp');
  expect(w!.transport).toBe('ws');
  return { server, tcpPort: t!.address.port, wsPort: w!.address.port };
}

function get(port: number, path: string, headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
  });
}

describe('WebSocket listener', () => {
  it('a session made over TCP takes a WebSocket subflow in (join + HMACs), and the reverse', async () => {
    const { server, tcpPort, wsPort } = await startServer();
    const config = makeConfig({});
    const url = new URL(`ws://127.0.0.1:${wsPort}/plait`);

    const a = await connectSession(new SocketChannel(await tcp(tcpPort)), { secretKeys, config, clock: realClock });
    cleanups.push(() => a.session.close());
    const wsChannel = await dialWebSocket({ url, socket: await tcp(wsPort, '127.0.0.2') });
    await joinSession(a.session, wsChannel, { clock: realClock, secretKeys, addrId: 1 });
    expect(a.session.stats().subflows.map((s) => s.remote)).toEqual([`127.0.0.1:${tcpPort}`, `ws://127.0.0.1:${wsPort}/plait`]);

    const b = await connectSession(await dialWebSocket({ url, socket: await tcp(wsPort) }), { secretKeys, config, clock: realClock });
    cleanups.push(() => b.session.close());
    await joinSession(b.session, new SocketChannel(await tcp(tcpPort)), { clock: realClock, secretKeys, addrId: 1 });
    expect(b.session.stats().subflows).toHaveLength(2);

    const sessions = server.sessions();
    expect(sessions).toHaveLength(2);
    for (const s of sessions) expect(s.stats().subflows).toHaveLength(2);
    // The server labels a WebSocket subflow with its listener.
    const locals = sessions.flatMap((s) => s.stats().subflows.map((x) => x.local));
    expect(locals.filter((l) => l === `ws://127.0.0.1:${wsPort}/plait`)).toHaveLength(2);
  });

  it('answers a plain request with 426 and an upgrade at another path with 404', async () => {
    const { wsPort } = await startServer();
    const plain = await get(wsPort, '/plait');
    expect(plain.status).toBe(426);
    expect(plain.body).toMatch(/plait client/);
    const ws = new WebSocket(`ws://127.0.0.1:${wsPort}/other`, [WS_SUBPROTOCOL]);
    const status = await new Promise<number>((r) => {
      ws.once('unexpected-response', (_req, res) => r(res.statusCode ?? 0));
      ws.once('error', () => r(-1));
    });
    expect(status).toBe(404);
  });

  it('a stranger who upgrades and sends junk is refused and closed, like on TCP', async () => {
    const { server, wsPort } = await startServer();
    const ws = new WebSocket(`ws://127.0.0.1:${wsPort}/plait`, [WS_SUBPROTOCOL]);
    cleanups.push(() => ws.terminate());
    await new Promise((r) => ws.once('open', r));
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    ws.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await closed;
    expect(server.acceptor.counters.rejected).toBe(1);
    expect(server.sessions()).toHaveLength(0);
  });

  it('closes a connection that does not finish its upgrade request in time', async () => {
    const l = new WebSocketListener({ host: '127.0.0.1', port: 0, path: '/plait', headersTimeoutMs: 300, onChannel: () => undefined });
    const { port } = await l.listen();
    cleanups.push(() => l.close());
    const s = await tcp(port);
    s.on('error', () => undefined);
    s.write('GET /plait HTTP/1.1\r\nHost: x\r\n'); // and never the blank line
    // Node's own headers timer (real time, not the injected clock) does the closing; the
    // assertion is that it happens at all. The 10 s is a hang guard for a clear message.
    let guard: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => s.once('close', () => r())),
      new Promise<never>((_, reject) => (guard = setTimeout(() => reject(new Error('never closed: the headers timeout did not fire')), 10_000))),
    ]).finally(() => clearTimeout(guard));
  });
});

describe('WebSocket listener: idle strangers before the upgrade', () => {
  it('past the limit the oldest pending connection is evicted, so a real upgrade still gets in', async () => {
    let channels = 0;
    const l = new WebSocketListener({
      host: '127.0.0.1',
      port: 0,
      path: '/plait',
      maxPendingUpgrades: 4,
      onChannel: (ch) => {
        channels++;
        ch.destroy();
      },
    });
    const { port } = await l.listen();
    cleanups.push(() => l.close());
    const idle: net.Socket[] = [];
    const closed: boolean[] = [];
    for (let i = 0; i < 10; i++) {
      const s = await tcp(port);
      s.on('error', () => undefined);
      const k = closed.push(false) - 1;
      s.on('close', () => (closed[k] = true));
      idle.push(s);
    }
    const deadline = Date.now() + 5_000;
    while (closed.filter(Boolean).length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(closed.slice(0, 6)).toEqual([true, true, true, true, true, true]); // the oldest six went
    expect(closed.slice(6)).toEqual([false, false, false, false]);
    expect(l.evicted).toBe(6);
    const ws = new WebSocket(`ws://127.0.0.1:${port}/plait`, [WS_SUBPROTOCOL]);
    cleanups.push(() => ws.terminate());
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    expect(channels).toBe(1);
  });
});

describe('forwardedFor', () => {
  it("trusts a loopback proxy's last X-Forwarded-For entry only", () => {
    expect(forwardedFor('127.0.0.1', '203.0.113.9')).toBe('203.0.113.9');
    expect(forwardedFor('::ffff:127.0.0.1', '1.1.1.1, 203.0.113.9')).toBe('203.0.113.9'); // the first is the client's own claim
    expect(forwardedFor('::1', '2001:db8::5')).toBe('2001:db8::5');
    expect(forwardedFor('198.51.100.7', '203.0.113.9')).toBeUndefined(); // a remote peer cannot choose its source
    expect(forwardedFor('127.0.0.1', 'not-an-address')).toBeUndefined();
    expect(forwardedFor('127.0.0.1', undefined)).toBeUndefined();
  });
});
