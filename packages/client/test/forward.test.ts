import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResetCode } from '@plait/core';
import { DialError, type Dialer, type Target } from '../src/dialer.js';
import { parseForwardSpec, serveForward } from '../src/forward.js';
import { listen, closeServer, reader, connect, settles } from './socket-helpers.js';

// ---- tests ----

describe('parseForwardSpec', () => {
  const ok: [string, string, number, string, number][] = [
    ['8080:example.com:80', '127.0.0.1', 8080, 'example.com', 80],
    ['0.0.0.0:8080:example.com:80', '0.0.0.0', 8080, 'example.com', 80],
    ['localhost:1:db.internal:5432', 'localhost', 1, 'db.internal', 5432],
    ['8080:[2001:db8::1]:443', '127.0.0.1', 8080, '2001:db8::1', 443],
    ['[::1]:8080:192.0.2.1:443', '::1', 8080, '192.0.2.1', 443],
    ['[::]:65535:[::ffff:192.0.2.1]:65535', '::', 65535, '::ffff:192.0.2.1', 65535],
    ['0:h:1', '127.0.0.1', 0, 'h', 1],
    [' 8080:h:80 ', '127.0.0.1', 8080, 'h', 80],
  ];
  for (const [spec, listenHost, listenPort, host, port] of ok) {
    it(`parses ${JSON.stringify(spec)}`, () => {
      expect(parseForwardSpec(spec)).toEqual({ listenHost, listenPort, target: { host, port } });
    });
  }

  const bad: [string, RegExp][] = [
    ['', /expected LPORT:HOST:PORT/],
    ['8080', /expected LPORT:HOST:PORT/],
    ['8080:host', /expected LPORT:HOST:PORT/],
    ['a:b:c:d:e', /expected LPORT:HOST:PORT/],
    ['8080:2001:db8::1:443', /expected LPORT:HOST:PORT/],
    ['x:host:80', /listen port "x"/],
    ['65536:host:80', /listen port "65536"/],
    ['-1:host:80', /listen port "-1"/],
    ['8080:host:0', /target port "0"/],
    ['8080:host:http', /target port "http"/],
    ['8080:host:1e3', /target port "1e3"/],
    ['8080::80', /target host is empty/],
    [':8080:h:80', /listen host is empty/],
    ['8080:[example.com]:80', /target host "\[example.com\]" is not a bracketed IPv6/],
    ['8080:[::1:80', /unclosed "\["/],
    ['8080:[::1]x:80', /unexpected "x"/],
    ['[192.0.2.1]:8080:h:80', /listen host .* not a bracketed IPv6/],
    ['8080:a/b:80', /target host "a\/b" is not a valid host/],
  ];
  for (const [spec, message] of bad) {
    it(`rejects ${JSON.stringify(spec)}`, () => {
      expect(() => parseForwardSpec(spec)).toThrow(message);
    });
  }
  it('names the spec in its errors', () => {
    expect(() => parseForwardSpec('8080:host:nope')).toThrow(/"8080:host:nope"/);
  });
});

describe('serveForward', () => {
  let echoPort = 0;
  const echo = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
  const servers: net.Server[] = [echo];
  beforeAll(async () => {
    echoPort = await listen(echo);
  });
  afterAll(async () => {
    await Promise.all(servers.map(closeServer));
  });

  async function forward(target: Target, dial: Dialer): Promise<{ port: number; served: Promise<void>[] }> {
    const served: Promise<void>[] = [];
    const server = net.createServer({ allowHalfOpen: true }, (s) => served.push(serveForward(s, target, dial)));
    servers.push(server);
    return { port: await listen(server), served };
  }

  it('dials the fixed target and carries data both ways, including bytes sent during the dial', async () => {
    const targets: Target[] = [];
    let sent: () => void = () => {};
    const payloadSent = new Promise<void>((res) => (sent = res));
    const dial: Dialer = async (t) => {
      targets.push(t);
      // The dial completes only after the client has sent part of its payload.
      await payloadSent;
      return connect(echoPort);
    };
    const { port, served } = await forward({ host: 'db.internal', port: 5432 }, dial);
    const sock = await connect(port);
    const r = reader(sock);
    const payload = randomBytes(2 * 1024 * 1024);
    // The first 64 KiB are in the kernel, on their way to the forward, before the dial completes.
    sock.write(payload.subarray(0, 64 * 1024), () => sent());
    sock.end(payload.subarray(64 * 1024));
    const back = await r.rest();
    expect(back.equals(payload)).toBe(true);
    expect(targets).toEqual([{ host: 'db.internal', port: 5432 }]);
    await settles(served[0], 'serveForward after the tunnel closed');
  });

  it('resets the client connection when the dial fails', async () => {
    const dial: Dialer = () => Promise.reject(new DialError(ResetCode.REFUSED, 'refused'));
    const { port, served } = await forward({ host: 'x', port: 1 }, dial);
    // The reset may even beat the client's own connect callback, so no connect() helper here.
    const sock = net.connect({ port, host: '127.0.0.1' });
    const err = new Promise<NodeJS.ErrnoException>((res) => sock.once('error', res));
    sock.write('hello');
    expect((await settles(err, 'the client sees the reset')).code).toBe('ECONNRESET');
    await settles(served[0], 'serveForward after the reset');
  });

  it('destroys the remote when the client reset during the dial', async () => {
    let release: (s: net.Socket) => void = () => {};
    let dialing: () => void = () => {};
    const dialCalled = new Promise<void>((res) => (dialing = res));
    const dial: Dialer = () => {
      dialing();
      return new Promise<net.Socket>((res) => (release = res));
    };
    const { port, served } = await forward({ host: 'x', port: 1 }, dial);
    const sock = await connect(port);
    await dialCalled;
    sock.resetAndDestroy();
    await settles(served[0], 'serveForward after the reset');
    const remote = await connect(echoPort);
    const closed = new Promise<void>((res) => remote.once('close', () => res()));
    release(remote);
    await settles(closed, 'the remote is closed');
    expect(remote.destroyed).toBe(true);
  });
});
