import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResetCode } from '@plait/core';
import { DialError, type Dialer, type Target } from '../src/dialer.js';
import { parseForwardSpec, serveForward } from '../src/forward.js';

// ---- helpers (kept local so each test file stands alone) ----

function listen(server: net.Server, host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => {
      const addr = server.address();
      if (addr === null || typeof addr === 'string') reject(new Error('no port'));
      else resolve(addr.port);
    });
  });
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Collects everything a socket receives and lets a test wait for bytes, end or close. */
function reader(sock: net.Socket) {
  const chunks: Buffer[] = [];
  let length = 0;
  let ended = false;
  let closed = false;
  let waiters: (() => void)[] = [];
  const wake = (): void => {
    const w = waiters;
    waiters = [];
    for (const f of w) f();
  };
  sock.on('data', (c: Buffer) => {
    chunks.push(c);
    length += c.length;
    wake();
  });
  sock.on('end', () => {
    ended = true;
    wake();
  });
  sock.on('close', () => {
    closed = true;
    wake();
  });
  sock.on('error', () => {});
  const until = (cond: () => boolean, what: string, ms = 10_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      const check = (): void => {
        if (cond()) {
          clearTimeout(t);
          resolve();
        } else waiters.push(check);
      };
      check();
    });
  const all = (): Buffer => {
    const b = Buffer.concat(chunks);
    chunks.length = 0;
    if (b.length > 0) chunks.push(b);
    return b;
  };
  return {
    received: (): Buffer => all(),
    isClosed: (): boolean => closed,
    async take(n: number): Promise<Buffer> {
      await until(() => length >= n || closed, `${n} bytes`);
      const b = all();
      if (b.length < n) throw new Error(`closed after ${b.length} of ${n} bytes`);
      chunks.length = 0;
      if (b.length > n) chunks.push(b.subarray(n));
      length -= n;
      return b.subarray(0, n);
    },
    async rest(): Promise<Buffer> {
      await until(() => ended || closed, 'end');
      return all();
    },
    closed: (): Promise<void> => until(() => closed, 'close'),
  };
}

function connect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function within<T>(p: Promise<T> | undefined, ms: number): Promise<T> {
  if (!p) return Promise.reject(new Error('no promise'));
  return Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`not settled within ${ms} ms`)))]);
}

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
    const dial: Dialer = async (t) => {
      targets.push(t);
      await sleep(100);
      return connect(echoPort);
    };
    const { port, served } = await forward({ host: 'db.internal', port: 5432 }, dial);
    const sock = await connect(port);
    const r = reader(sock);
    const payload = randomBytes(2 * 1024 * 1024);
    sock.end(payload);
    const back = await r.rest();
    expect(back.equals(payload)).toBe(true);
    expect(targets).toEqual([{ host: 'db.internal', port: 5432 }]);
    await within(served[0], 2000);
  });

  it('resets the client connection when the dial fails', async () => {
    const dial: Dialer = () => Promise.reject(new DialError(ResetCode.REFUSED, 'refused'));
    const { port, served } = await forward({ host: 'x', port: 1 }, dial);
    // The reset may even beat the client's own connect callback, so no connect() helper here.
    const sock = net.connect({ port, host: '127.0.0.1' });
    const err = new Promise<NodeJS.ErrnoException>((res) => sock.once('error', res));
    sock.write('hello');
    expect((await within(err, 2000)).code).toBe('ECONNRESET');
    await within(served[0], 2000);
  });

  it('destroys the remote when the client reset during the dial', async () => {
    let release: (s: net.Socket) => void = () => {};
    const dial: Dialer = () => new Promise<net.Socket>((res) => (release = res));
    const { port, served } = await forward({ host: 'x', port: 1 }, dial);
    const sock = await connect(port);
    await sleep(20);
    sock.resetAndDestroy();
    await within(served[0], 2000);
    const remote = await connect(echoPort);
    release(remote);
    await sleep(20);
    expect(remote.destroyed).toBe(true);
  });
});
