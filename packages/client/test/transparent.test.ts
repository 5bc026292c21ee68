import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCounters, TRANSPARENT_COUNTERS } from '@plait/core';
import type { OriginalDst } from '@plait/node';
import type { ClientLogger } from '../src/client.js';
import type { Dialer, Target } from '../src/dialer.js';
import { listenTransparent } from '../src/listeners.js';
import type { TransparentMode } from '../src/transparent.js';
import { closeServer, connect, listen, reader, waitFor } from './socket-helpers.js';

// Loopback only. The kernel's part (a REDIRECT rule, SO_ORIGINAL_DST) is in
// test/system/transparent.sh; here a stand-in says where a connection was going.

interface Logged {
  level: 'info' | 'warn' | 'error' | 'debug';
  msg: string;
}

function recordingLog(): { log: ClientLogger; lines: Logged[] } {
  const lines: Logged[] = [];
  const at = (level: Logged['level']) => (_obj: object, msg: string) => void lines.push({ level, msg });
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } };
}

describe('transparent listener (--redirect / --tproxy)', () => {
  let echoPort = 0;
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  const servers: net.Server[] = [echo];
  const sockets: net.Socket[] = [];
  echo.on('connection', (s) => sockets.push(s));
  beforeAll(async () => {
    echoPort = await listen(echo);
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map(closeServer));
  });

  /** A dialer that records targets and connects every one to the local echo server. */
  function echoDialer(): { dial: Dialer; targets: Target[] } {
    const targets: Target[] = [];
    return { targets, dial: (t) => (targets.push(t), connect(echoPort)) };
  }

  async function start(
    mode: TransparentMode,
    originalDst: (s: net.Socket) => OriginalDst,
    dial: Dialer,
    extra: { host?: string; isOwnAddress?: (h: string) => boolean } = {},
  ) {
    const counters = makeCounters(TRANSPARENT_COUNTERS);
    const { log, lines } = recordingLog();
    const server = await listenTransparent(
      { host: extra.host ?? '127.0.0.1', port: 0 },
      { mode, originalDst, counters, log, ...(extra.isOwnAddress ? { isOwnAddress: extra.isOwnAddress } : {}) },
      dial,
    );
    servers.push(server);
    return { port: (server.address() as net.AddressInfo).port, counters, lines };
  }

  async function expectReset(port: number): Promise<void> {
    const sock = net.connect({ port, host: '127.0.0.1' });
    const outcome = new Promise<string>((res) => {
      sock.once('error', (e: NodeJS.ErrnoException) => res(e.code ?? 'error'));
      sock.once('close', () => res('closed'));
    });
    sock.write('GET / HTTP/1.1\r\n\r\n');
    expect(await outcome).toBe('ECONNRESET');
  }

  it('REDIRECT: carries a connection to its original destination, both ways, and counts it', async () => {
    const { dial, targets } = echoDialer();
    const { port, counters } = await start('redirect', () => ({ ok: true, host: '93.184.216.34', port: 80 }), dial);
    const sock = await connect(port);
    const r = reader(sock);
    const payload = randomBytes(512 * 1024);
    sock.end(payload);
    expect((await r.rest()).equals(payload)).toBe(true);
    expect(targets).toEqual([{ host: '93.184.216.34', port: 80 }]);
    expect(counters).toEqual({ transparentAccepted: 1, transparentNoDestination: 0, transparentLoops: 0 });
  });

  it('REDIRECT: an IPv6 original destination is dialled as IPv6', async () => {
    const { dial, targets } = echoDialer();
    const { port } = await start('redirect', () => ({ ok: true, host: '2001:db8::7', port: 443 }), dial);
    const sock = await connect(port);
    sockets.push(sock);
    const r = reader(sock);
    await waitFor(() => targets.length === 1, 'the dial');
    expect(targets[0]).toEqual({ host: '2001:db8::7', port: 443 });
    expect(r.isClosed()).toBe(false);
  });

  it('no original destination (koffi missing, not redirected): reset, counted, warned once then debug', async () => {
    const { dial, targets } = echoDialer();
    const { port, counters, lines } = await start('redirect', () => ({ ok: false, reason: 'no original destination: it was not redirected' }), dial);
    for (let i = 0; i < 3; i++) await expectReset(port);
    expect(targets).toEqual([]);
    expect(counters).toEqual({ transparentAccepted: 0, transparentNoDestination: 3, transparentLoops: 0 });
    const warns = lines.filter((l) => l.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]?.msg).toMatch(/--redirect: dropped a connection: no original destination: it was not redirected/);
    expect(lines.filter((l) => l.level === 'debug')).toHaveLength(2);
  });

  it('REDIRECT loop: the original destination is the listener itself (a direct connection), never dialled', async () => {
    const { dial, targets } = echoDialer();
    // What the kernel answers for a connection nobody redirected: the connection's own destination.
    const { port, counters, lines } = await start('redirect', (s) => ({ ok: true, host: s.localAddress ?? '', port: s.localPort ?? 0 }), dial);
    await expectReset(port);
    expect(targets).toEqual([]);
    expect(counters.transparentLoops).toBe(1);
    expect(lines.find((l) => l.level === 'warn')?.msg).toMatch(/is this listener itself \(a loop/);
  });

  it("REDIRECT loop: another of the router's own addresses at the listener's port", async () => {
    const { dial, targets } = echoDialer();
    let listenerPort = 0;
    const started = await start('redirect', () => ({ ok: true, host: '192.0.2.1', port: listenerPort }), dial, { isOwnAddress: (h) => h === '192.0.2.1' });
    listenerPort = started.port;
    await expectReset(started.port);
    expect(targets).toEqual([]);
    expect(started.counters.transparentLoops).toBe(1);
  });

  it('a connection gone before it is served never crashes the listener', async () => {
    const { dial } = echoDialer();
    const { port, counters } = await start('redirect', () => ({ ok: false, reason: 'the connection is already closed' }), dial);
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.on('error', () => {});
    sock.destroy(); // gone before (or while) it is served
    await expectReset(port);
    await waitFor(() => counters.transparentNoDestination >= 1, 'the drop');
    expect(counters.transparentAccepted).toBe(0);
  });

  it("TPROXY: the destination is the accepted socket's local address", async () => {
    const { dial, targets } = echoDialer();
    // Without a TPROXY rule the local address is the listener's; say it is not ours to stand in for one.
    const { port, counters } = await start('tproxy', () => ({ ok: false, reason: 'unused in TPROXY mode' }), dial, { isOwnAddress: () => false });
    const sock = await connect(port);
    const r = reader(sock);
    sock.end('through tproxy');
    expect((await r.rest()).toString()).toBe('through tproxy');
    expect(targets).toEqual([{ host: '127.0.0.1', port }]);
    expect(counters.transparentAccepted).toBe(1);
  });

  it('TPROXY loop: a direct connection to our own port is dropped', async () => {
    const { dial, targets } = echoDialer();
    const { port, counters } = await start('tproxy', () => ({ ok: false, reason: 'unused' }), dial, { host: '0.0.0.0' });
    await expectReset(port);
    expect(targets).toEqual([]);
    expect(counters.transparentLoops).toBe(1);
  });
});
