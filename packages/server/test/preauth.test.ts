/**
 * Pre-auth hardening (DESIGN principle 8), against a real server on
 * loopback: a stranger that sends junk costs a few KiB, and idle strangers
 * cannot keep a real client from creating a session or joining one.
 */
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectSession, deriveSecretKeys, joinSession, makeConfig, realClock, type Session } from '@plait/core';
import { SocketChannel } from '@plait/node';
import { PlaitServer, type PlaitServerOptions } from '../src/server.js';

const secretKeys = deriveSecretKeys('preauth-test-secret-0123456789');
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, f: () => T | undefined | false, ms: number): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** A server on an ephemeral port, plus the server side of every accepted socket (to read bytesRead). */
async function startServer(extra: Partial<PlaitServerOptions> = {}) {
  const server = new PlaitServer({ listen: { host: '127.0.0.1', port: 0 }, secretKeys, ...extra });
  const accepted: net.Socket[] = [];
  // The listening socket is private; peeking at it measures what the server really read.
  (server as unknown as { tcp: net.Server[] }).tcp[0]!.on('connection', (s: net.Socket) => accepted.push(s));
  const addr = await server.listen();
  cleanups.push(() => server.close());
  return { server, port: addr.port, accepted };
}

function connect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

describe('pre-auth byte budget', () => {
  it('a connection that sends a bad first byte and then floods zeros is cut off: the server reads at most a few chunks', async () => {
    const { server, port, accepted } = await startServer();
    const sock = await connect(port);
    sock.on('error', () => undefined);
    let closed = false;
    sock.on('close', () => void (closed = true));
    const chunk = Buffer.alloc(64 * 1024);
    const limit = 24 * 1024 * 1024;
    let written = 0;
    sock.write(Buffer.from([0x47])); // 'G', as in "GET /": not a plait message type
    // Flood with backpressure until the server cuts us off or `limit` is sent.
    while (!closed && written < limit) {
      const ok = sock.write(chunk);
      written += chunk.length;
      if (!ok) {
        await Promise.race([new Promise((r) => sock.once('drain', r)), new Promise((r) => sock.once('close', r)), sleep(2_000)]);
      }
    }
    const serverSide = await waitFor('the server socket', () => accepted[0], 2_000);
    await waitFor('the server to drop the flooder', () => serverSide.destroyed, 5_000);
    // Before the fix the server kept reading (and buffering) everything sent.
    expect(serverSide.bytesRead).toBeLessThanOrEqual(256 * 1024);
    expect(server.acceptor.counters.rejectBadMessage).toBe(1);
    expect(server.acceptor.counters.rejected).toBe(1);
    sock.destroy();
  });
});

/** Idle attackers from `local`, re-opened as the server drops them (like the measured attack). */
function idleFlood(port: number, local: string, count: number, reopenMs: number) {
  const socks = new Set<net.Socket>();
  let stopped = false;
  let opened = 0;
  const open = (): void => {
    if (stopped) return;
    opened++;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: local });
    socks.add(s);
    s.on('error', () => undefined);
    s.resume(); // read (and discard) the REJECT, so the close is noticed and the slot re-taken
    s.on('close', () => {
      socks.delete(s);
      if (!stopped) setTimeout(open, reopenMs).unref();
    });
  };
  for (let i = 0; i < count; i++) open();
  const stop = (): void => {
    stopped = true;
    for (const s of socks) s.destroy();
  };
  cleanups.push(stop);
  return { stop, get open() { return socks.size; }, get opened() { return opened; } };
}

async function newSession(port: number): Promise<Session> {
  const sock = await connect(port);
  const { session } = await connectSession(new SocketChannel(sock), { secretKeys, config: makeConfig(), clock: realClock });
  cleanups.push(() => session.close());
  return session;
}

async function join(session: Session, port: number, addrId: number): Promise<void> {
  const sock = await connect(port);
  await joinSession(session, new SocketChannel(sock), { clock: realClock, addrId, secretKeys });
}

describe('handshake slots under an idle flood', () => {
  it('with hundreds of idle connections held (127.0.0.1 and 127.0.0.2), new sessions and joins still succeed at the first attempt', async () => {
    const { server, port } = await startServer();
    const a = idleFlood(port, '127.0.0.1', 300, 100);
    const b = idleFlood(port, '127.0.0.2', 60, 100);
    // Wait until the flood has filled what the server will hold for these two addresses.
    await waitFor('the flood to be accepted', () => a.opened >= 300 && b.opened >= 60 && server.acceptor.handshakesInProgress >= 100, 10_000);
    for (let i = 0; i < 3; i++) {
      const session = await newSession(port);
      expect(session.isClosed).toBe(false);
      await join(session, port, 1);
      await join(session, port, 2);
      expect(session.subflowCount).toBe(3);
    }
    const c = server.acceptor.counters;
    expect(c.helloOk).toBe(3);
    expect(c.joinOk).toBe(6);
    expect((c.preauthEvictedSource ?? 0) + (c.preauthEvictedGlobal ?? 0)).toBeGreaterThan(0);
    a.stop();
    b.stop();
  });

  it('a small global limit with many addresses: the oldest idle connections are evicted for a real client', async () => {
    const { server, port } = await startServer({ maxPendingHandshakes: 64, maxPendingPerSource: 48 });
    const floods = ['127.0.0.1', '127.0.0.2', '127.0.0.3'].map((ip) => idleFlood(port, ip, 60, 100));
    await waitFor('the flood to fill the global limit', () => server.acceptor.handshakesInProgress >= 64, 10_000);
    const session = await newSession(port);
    await join(session, port, 1);
    expect(session.subflowCount).toBe(2);
    expect(server.acceptor.counters.preauthEvictedGlobal).toBeGreaterThan(0);
    expect(server.acceptor.handshakesInProgress).toBeLessThanOrEqual(64);
    for (const f of floods) f.stop();
  });
});
