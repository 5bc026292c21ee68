/**
 * WebSocketChannel and dialWebSocket on loopback: bytes in order, real
 * backpressure, the transport's rules (binary only, bounded messages),
 * and the TLS / HTTP failures a user must be told about.
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import type { ChannelHandlers } from '@plait/core';
import { startTlsTerminator, testOnlyTls } from '@plait/testkit';
import { WebSocketChannel, WS_HIGH_WATER_MARK, WS_MAX_PAYLOAD, WS_SUBPROTOCOL } from '../src/ws-channel.js';
import { dialWebSocket, WebSocketDialError } from '../src/ws-dial.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Served {
  port: number;
  /** Server-side channels, in accept order. */
  next(): Promise<WebSocketChannel>;
}

/** A ws server on 127.0.0.1 at /plait that wraps every connection in a WebSocketChannel. */
async function serve(opts: { protocol?: boolean } = {}): Promise<Served> {
  const wss = new WebSocketServer({
    host: '127.0.0.1',
    port: 0,
    path: '/plait',
    maxPayload: WS_MAX_PAYLOAD,
    handleProtocols: (p) => (opts.protocol === false ? false : p.has(WS_SUBPROTOCOL) ? WS_SUBPROTOCOL : false),
  });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const queue: WebSocketChannel[] = [];
  const waiters: ((c: WebSocketChannel) => void)[] = [];
  wss.on('connection', (ws) => {
    const c = new WebSocketChannel(ws, { localLabel: 'server', remoteLabel: 'client' });
    const w = waiters.shift();
    if (w) w(c);
    else queue.push(c);
  });
  cleanups.push(() => new Promise<void>((r) => {
    for (const c of wss.clients) c.terminate();
    wss.close(() => r());
  }));
  return {
    port: (wss.address() as net.AddressInfo).port,
    next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => waiters.push(r))),
  };
}

function tcp(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
    cleanups.push(() => s.destroy());
  });
}

async function dial(port: number, path = '/plait'): Promise<WebSocketChannel> {
  const ch = await dialWebSocket({ url: new URL(`ws://127.0.0.1:${port}${path}`), socket: await tcp(port) });
  cleanups.push(() => ch.destroy());
  return ch;
}

/** Collects what a channel delivers, and how it closed. */
function sink(ch: WebSocketChannel, extra: Partial<ChannelHandlers> = {}) {
  const chunks: Buffer[] = [];
  let closed: { error: Error | undefined } | undefined;
  let onClose: (() => void) | undefined;
  ch.setHandlers({
    data: (c) => chunks.push(Buffer.from(c)),
    drain: extra.drain ?? (() => undefined),
    close: (e) => {
      closed = { error: e };
      onClose?.();
    },
  });
  return {
    bytes: () => Buffer.concat(chunks),
    get closed() {
      return closed;
    },
    whenClosed: () => new Promise<Error | undefined>((r) => (closed ? r(closed.error) : (onClose = () => r(closed!.error)))),
  };
}

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('WebSocketChannel', () => {
  it('carries bytes both ways, in order, and splits writes larger than one message', async () => {
    const srv = await serve();
    const client = await dial(srv.port);
    const server = await srv.next();
    const atServer = sink(server);
    const atClient = sink(client);
    const big = randomBytes(WS_MAX_PAYLOAD * 2 + 12345);
    const small = randomBytes(100);
    client.write(small);
    client.write(big);
    server.write(small);
    await until('all bytes at the server', () => atServer.bytes().length === small.length + big.length);
    expect(atServer.bytes().equals(Buffer.concat([small, big]))).toBe(true);
    await until('bytes at the client', () => atClient.bytes().length === small.length);
    expect(atClient.bytes().equals(small)).toBe(true);
    expect(client.remoteLabel).toBe(`ws://127.0.0.1:${srv.port}/plait`);
  });

  it('write returns false above the high-water mark and drain fires once the reader catches up', async () => {
    const srv = await serve();
    const client = await dial(srv.port);
    const server = await srv.next();
    const atServer = sink(server);
    server.pause(); // the reader stops: the kernel buffers fill, then ws's queue grows
    let drains = 0;
    sink(client, { drain: () => drains++ });
    const chunk = randomBytes(64 * 1024);
    let written = 0;
    let accepted = true;
    for (let i = 0; i < 2000 && accepted; i++) {
      accepted = client.write(chunk);
      written += chunk.length;
      if (!accepted) break;
      // let the socket flush what it can, so the refusal comes from real backpressure
      await new Promise((r) => setImmediate(r));
    }
    expect(accepted).toBe(false);
    expect(client.ws.bufferedAmount).toBeGreaterThanOrEqual(WS_HIGH_WATER_MARK);
    // Paused reader: nothing drains however long we wait a little.
    await new Promise((r) => setTimeout(r, 50));
    expect(drains).toBe(0);
    const heldAtPause = atServer.bytes().length;
    expect(heldAtPause).toBeLessThan(written);
    server.resume();
    await until('drain', () => drains > 0);
    expect(client.ws.bufferedAmount).toBeLessThan(WS_HIGH_WATER_MARK);
    await until('every byte at the server', () => atServer.bytes().length === written);
  });

  it('holds bytes that arrive before a consumer is attached, and delivers them first', async () => {
    const srv = await serve();
    const client = await dial(srv.port);
    const server = await srv.next();
    client.write(Buffer.from('early'));
    await new Promise((r) => setTimeout(r, 50));
    const atServer = sink(server);
    client.write(Buffer.from('-late'));
    await until('both writes', () => atServer.bytes().length === 10);
    expect(atServer.bytes().toString()).toBe('early-late');
  });

  const breaches: [string, () => string | Buffer, boolean, RegExp, number][] = [
    ['a text message', () => 'hello', false, /text message.*binary messages only/, 1003],
    ['a message over the bound, refused before it is buffered', () => Buffer.alloc(WS_MAX_PAYLOAD + 1), true, new RegExp(`over ${WS_MAX_PAYLOAD} bytes`), 1009],
  ];
  it.each(breaches)('closes with a clear error when the peer sends %s', async (_what, payload, binary, why, code) => {
    const srv = await serve();
    const raw = new WebSocket(`ws://127.0.0.1:${srv.port}/plait`, [WS_SUBPROTOCOL]);
    cleanups.push(() => raw.terminate());
    await new Promise((r) => raw.once('open', r));
    const server = await srv.next();
    const atServer = sink(server);
    const peerClose = new Promise<number>((r) => raw.once('close', (c) => r(c)));
    raw.send(payload(), { binary });
    const err = await atServer.whenClosed();
    expect(err?.message).toMatch(why);
    expect(await peerClose).toBe(code);
    expect(atServer.bytes().length).toBe(0);
  });

  it('reports an orderly end as a close without error, and a reset with one', async () => {
    const srv = await serve();
    const client = await dial(srv.port);
    const server = await srv.next();
    const atServer = sink(server);
    sink(client);
    client.write(Buffer.from('last words'));
    client.end();
    expect(await atServer.whenClosed()).toBeUndefined();
    expect(atServer.bytes().toString()).toBe('last words');

    const client2 = await dial(srv.port);
    const server2 = await srv.next();
    const at2 = sink(server2);
    sink(client2);
    client2.destroy();
    expect(await at2.whenClosed()).toBeInstanceOf(Error);
  });
});

describe('dialWebSocket', () => {
  it('wss:// through a TLS terminator works with the right CA', async () => {
    const srv = await serve();
    const tls = await startTlsTerminator(srv.port);
    cleanups.push(() => tls.close());
    const ch = await dialWebSocket({ url: new URL(`wss://127.0.0.1:${tls.port}/plait`), socket: await tcp(tls.port), ca: testOnlyTls().ca });
    cleanups.push(() => ch.destroy());
    const server = await srv.next();
    const atServer = sink(server);
    sink(ch);
    ch.write(Buffer.from('over tls'));
    await until('bytes', () => atServer.bytes().length === 8);
    expect(atServer.bytes().toString()).toBe('over tls');
  });

  it('wss:// refuses a certificate it cannot verify, and says how to trust a private CA', async () => {
    const srv = await serve();
    const tls = await startTlsTerminator(srv.port);
    cleanups.push(() => tls.close());
    const err = await dialWebSocket({ url: new URL(`wss://127.0.0.1:${tls.port}/plait`), socket: await tcp(tls.port) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WebSocketDialError);
    expect((err as WebSocketDialError).code).toBe('WS_TLS');
    expect((err as Error).message).toMatch(/--ca FILE/);
  });

  it('wss:// refuses a valid certificate for another name', async () => {
    const srv = await serve();
    const tls = await startTlsTerminator(srv.port);
    cleanups.push(() => tls.close());
    // 127.0.0.2 reaches the same listener on Linux, but the certificate names 127.0.0.1, ::1 and localhost only.
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect(tls.port, '127.0.0.1', () => resolve(s));
      s.once('error', reject);
    });
    const err = await dialWebSocket({ url: new URL(`wss://example.test:${tls.port}/plait`), socket, ca: testOnlyTls().ca }).catch((e: unknown) => e);
    expect((err as WebSocketDialError).code).toBe('WS_TLS');
    expect((err as WebSocketDialError).tlsCode).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('names a wrong path (HTTP 404) and a WebSocket server that is not plait', async () => {
    const srv = await serve();
    const wrong = await dialWebSocket({ url: new URL(`ws://127.0.0.1:${srv.port}/nope`), socket: await tcp(srv.port) }).catch((e: unknown) => e);
    expect((wrong as WebSocketDialError).code).toBe('WS_HTTP_STATUS');
    expect((wrong as Error).message).toMatch(/HTTP 400|HTTP 404/);

    const other = await serve({ protocol: false });
    const notPlait = await dialWebSocket({ url: new URL(`ws://127.0.0.1:${other.port}/plait`), socket: await tcp(other.port) }).catch((e: unknown) => e);
    expect((notPlait as WebSocketDialError).code).toBe('WS_NOT_PLAIT');
  });
});
