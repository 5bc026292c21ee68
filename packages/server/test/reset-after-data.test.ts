import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { connectSession, deriveSecretKeys, makeConfig, realClock, type Session } from '@plait/core';
import { pipeBoth, SocketChannel, StreamDuplex } from '@plait/node';
import { startLinkRelay } from '@plait/testkit';
import { EgressPolicy, PlaitServer } from '../src/index.js';

const SECRET = 'reset-after-data-secret-0123456789';
const BYTES = 200_000;

/** What an application socket saw: its bytes, then how it ended. */
function observe(sock: net.Socket): Promise<{ data: number; error: string | undefined; dataBeforeError: boolean }> {
  return new Promise((resolve) => {
    let data = 0;
    let error: string | undefined;
    let dataBeforeError = false;
    sock.on('data', (c: Buffer) => {
      data += c.length;
      if (error === undefined) dataBeforeError = true;
    });
    sock.on('error', (e: NodeJS.ErrnoException) => void (error ??= e.code ?? e.message));
    sock.on('close', () => resolve({ data, error, dataBeforeError }));
  });
}

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/**
 * A target that sends some bytes and then resets the connection (iperf3's
 * "server busy" sends one). The RST trails the data by 30 ms: a reader that
 * finds data and the RST in one wakeup sees the data and a clean EOF (libuv
 * reports POLLHUP after a partial read as EOF), which no proxy could tell
 * from a FIN; 30 ms lets the plait server read everything first.
 */
async function dataThenReset(bytes: number): Promise<number> {
  const target = net.createServer((s) => {
    s.on('error', () => undefined);
    s.write(Buffer.alloc(bytes, 0x21), () => setTimeout(() => s.resetAndDestroy(), 30));
  });
  await new Promise<void>((r) => target.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => target.close(() => r())));
  return (target.address() as net.AddressInfo).port;
}

/**
 * PlaitServer on loopback, a client session to it over a slow link (4 Mbit/s,
 * 10 ms: the target's RST reaches the server while most of its data is still
 * waiting to be sent), and a local port whose connections are proxied to the
 * target.
 */
async function tunnel(targetPort: number): Promise<{ port: number; client: Session }> {
  const secretKeys = deriveSecretKeys(SECRET);
  const server = new PlaitServer({ listen: { host: '127.0.0.1', port: 0 }, secretKeys, policy: new EgressPolicy({ allowPrivate: true }) });
  const addr = await server.listen();
  cleanups.push(() => server.close());
  const relay = await startLinkRelay({ target: { host: '127.0.0.1', port: addr.port }, delayMs: 10, rateBitsPerSec: 4_000_000 });
  cleanups.push(() => relay.close());
  const sock = net.connect(relay.port, '127.0.0.1');
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const { session } = await connectSession(new SocketChannel(sock), { secretKeys, config: makeConfig(), clock: realClock });
  cleanups.push(() => session.close());
  // The client's frontend, reduced to its core: one stream per accepted socket.
  const front = net.createServer({ allowHalfOpen: true }, (app) => {
    const stream = session.openStream({ host: '127.0.0.1', port: targetPort });
    pipeBoth(app, new StreamDuplex(stream));
  });
  await new Promise<void>((r) => front.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise<void>((r) => front.close(() => r())));
  return { port: (front.address() as net.AddressInfo).port, client: session };
}

describe('a reset keeps its place after the data', () => {
  it('directly, the application reads all the data and then sees ECONNRESET (the behaviour to reproduce)', async () => {
    const port = await dataThenReset(1);
    expect(await observe(net.connect(port, '127.0.0.1'))).toEqual({ data: 1, error: 'ECONNRESET', dataBeforeError: true });
    const port2 = await dataThenReset(BYTES);
    expect(await observe(net.connect(port2, '127.0.0.1'))).toEqual({ data: BYTES, error: 'ECONNRESET', dataBeforeError: true });
  });

  it('through plait, the application reads all the data and then sees ECONNRESET', async () => {
    const { port, client } = await tunnel(await dataThenReset(BYTES));
    expect(await observe(net.connect(port, '127.0.0.1'))).toEqual({ data: BYTES, error: 'ECONNRESET', dataBeforeError: true });
    expect(client.streamCount).toBe(0);
  });

  it("through plait, one byte then a reset (iperf3's server busy)", async () => {
    const { port } = await tunnel(await dataThenReset(1));
    for (let i = 0; i < 3; i++) {
      expect(await observe(net.connect(port, '127.0.0.1'))).toEqual({ data: 1, error: 'ECONNRESET', dataBeforeError: true });
    }
  });
});
