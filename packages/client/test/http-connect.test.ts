import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResetCode } from '@plait/core';
import { DialError, type Dialer, type Target } from '../src/dialer.js';
import { parseAuthority, serveHttpConnect, type HttpConnectOptions } from '../src/http-connect.js';
import { listen, closeServer, reader, connect, settles, waitFor } from './socket-helpers.js';
import { TestClock } from './test-clock.js';

// ---- fixtures ----

let echoPort = 0;
const echo = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.pipe(s);
});

function echoDialer(): { dial: Dialer; targets: Target[] } {
  const targets: Target[] = [];
  const dial: Dialer = async (t) => {
    targets.push(t);
    return connect(echoPort);
  };
  return { dial, targets };
}

const servers: net.Server[] = [];
async function proxy(opts: HttpConnectOptions, dial: Dialer): Promise<{ port: number; served: Promise<void>[]; accepted: net.Socket[] }> {
  const served: Promise<void>[] = [];
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    served.push(serveHttpConnect(s, opts, dial));
  });
  servers.push(server);
  return { port: await listen(server), served, accepted };
}

beforeAll(async () => {
  echoPort = await listen(echo);
});
afterAll(async () => {
  await Promise.all([echo, ...servers].map(closeServer));
});

const ESTABLISHED = 'HTTP/1.1 200 Connection established\r\n\r\n';

/** Sends `request`, waits for the proxy to close, and returns what came back as text. */
async function exchange(port: number, request: string | Buffer): Promise<string> {
  const sock = await connect(port);
  const r = reader(sock);
  sock.write(request);
  const got = await r.rest();
  sock.end();
  return got.toString('latin1');
}

function statusOf(response: string): number {
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(response);
  return m ? Number(m[1]) : -1;
}

/** Header block and body of a response; checks Content-Length matches the body. */
function parseResponse(response: string): { status: number; headers: Map<string, string>; body: string } {
  const split = response.indexOf('\r\n\r\n');
  expect(split).toBeGreaterThan(0);
  const [statusLine = '', ...lines] = response.slice(0, split).split('\r\n');
  const headers = new Map<string, string>();
  for (const l of lines) {
    const c = l.indexOf(':');
    headers.set(l.slice(0, c).toLowerCase(), l.slice(c + 1).trim());
  }
  const body = response.slice(split + 4);
  expect(Number(headers.get('content-length'))).toBe(Buffer.byteLength(body));
  return { status: statusOf(statusLine + ' '), headers, body };
}

// ---- tests ----

describe('serveHttpConnect', () => {
  it('tunnels after CONNECT, keeping bytes sent right after the header block', async () => {
    const d = echoDialer();
    const { port, served } = await proxy({}, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    const early = randomBytes(5000);
    sock.write(
      Buffer.concat([
        Buffer.from('CONNECT example.invalid:443 HTTP/1.1\r\nHost: example.invalid:443\r\nUser-Agent: t\r\n\r\n'),
        early,
      ]),
    );
    expect((await r.take(ESTABLISHED.length)).toString()).toBe(ESTABLISHED);
    expect((await r.take(early.length)).equals(early)).toBe(true);
    const big = randomBytes(4 * 1024 * 1024);
    sock.end(big);
    const back = await r.rest();
    expect(back.equals(big)).toBe(true);
    expect(d.targets).toEqual([{ host: 'example.invalid', port: 443 }]);
    await settles(served[0], 'serveHttpConnect after the tunnel closed');
  });

  it('accepts a bracketed IPv6 target, HTTP/1.0, bare LF line ends and leading blank lines', async () => {
    for (const [req, host] of [
      ['CONNECT [2001:db8::5]:8443 HTTP/1.1\r\n\r\n', '2001:db8::5'],
      ['CONNECT 192.0.2.4:8443 HTTP/1.0\n\n', '192.0.2.4'],
      ['\r\nCONNECT h.example:8443 HTTP/1.1\r\nX: y\r\n\r\n', 'h.example'],
    ] as const) {
      const d = echoDialer();
      const { port } = await proxy({}, d.dial);
      const sock = await connect(port);
      const r = reader(sock);
      sock.write(req);
      expect((await r.take(ESTABLISHED.length)).toString()).toBe(ESTABLISHED);
      sock.end('ping');
      expect((await r.rest()).toString()).toBe('ping');
      expect(d.targets).toEqual([{ host, port: 8443 }]);
    }
  });

  it('parses a request that arrives one byte at a time', async () => {
    const d = echoDialer();
    const { port, accepted } = await proxy({}, d.dial);
    const sock = await connect(port);
    sock.setNoDelay(true);
    const r = reader(sock);
    const request = Buffer.from('CONNECT slow.example:25 HTTP/1.1\r\nHost: slow.example:25\r\n\r\nhi');
    // Each byte is read by the proxy before the next is sent (the last two wait in the paused socket).
    for (const [i, b] of request.entries()) {
      sock.write(Buffer.from([b]));
      if (i < request.length - 2) await waitFor(() => accepted.length === 1 && accepted[0]!.bytesRead === i + 1, `byte ${i} read by the proxy`);
    }
    expect((await r.take(ESTABLISHED.length)).toString()).toBe(ESTABLISHED);
    expect((await r.take(2)).toString()).toBe('hi');
    expect(d.targets).toEqual([{ host: 'slow.example', port: 25 }]);
    sock.destroy();
  });

  for (const method of ['GET', 'POST', 'OPTIONS']) {
    it(`answers ${method} with 405 and Allow: CONNECT`, async () => {
      const d = echoDialer();
      const { port } = await proxy({}, d.dial);
      const res = parseResponse(await exchange(port, `${method} http://example.invalid/ HTTP/1.1\r\nHost: example.invalid\r\n\r\n`));
      expect(res.status).toBe(405);
      expect(res.headers.get('allow')).toBe('CONNECT');
      expect(res.body.length).toBeGreaterThan(0);
      expect(d.targets).toEqual([]);
    });
  }

  for (const [name, req] of [
    ['no port', 'CONNECT example.invalid HTTP/1.1\r\n\r\n'],
    ['port out of range', 'CONNECT example.invalid:65536 HTTP/1.1\r\n\r\n'],
    ['port zero', 'CONNECT example.invalid:0 HTTP/1.1\r\n\r\n'],
    ['non-numeric port', 'CONNECT example.invalid:https HTTP/1.1\r\n\r\n'],
    ['unbracketed IPv6', 'CONNECT 2001:db8::1:443 HTTP/1.1\r\n\r\n'],
    ['unclosed bracket', 'CONNECT [2001:db8::1:443 HTTP/1.1\r\n\r\n'],
    ['bracketed non-IPv6', 'CONNECT [example.invalid]:443 HTTP/1.1\r\n\r\n'],
    ['a path as target', 'CONNECT /foo:443 HTTP/1.1\r\n\r\n'],
    ['HTTP/2.0', 'CONNECT example.invalid:443 HTTP/2.0\r\n\r\n'],
    ['missing version', 'CONNECT example.invalid:443\r\n\r\n'],
    ['header without colon', 'CONNECT example.invalid:443 HTTP/1.1\r\nBroken header\r\n\r\n'],
    ['binary garbage', '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n'],
  ] as const) {
    it(`answers 400 to ${name}`, async () => {
      const d = echoDialer();
      const { port } = await proxy({}, d.dial);
      const res = parseResponse(await exchange(port, Buffer.from(req, 'latin1')));
      expect(res.status).toBe(400);
      expect(d.targets).toEqual([]);
    });
  }

  it('answers 431 to a header block over 16 KiB that never ends', async () => {
    const d = echoDialer();
    const { port } = await proxy({}, d.dial);
    const res = await exchange(port, `CONNECT a.example:1 HTTP/1.1\r\nX-Pad: ${'a'.repeat(17 * 1024)}\r\n`);
    expect(statusOf(res)).toBe(431);
    expect(d.targets).toEqual([]);
  });

  it('answers 431 to a complete header block just over the limit, but accepts one at the limit', async () => {
    const head = (padLen: number): string => `CONNECT a.example:1 HTTP/1.1\r\nX-Pad: ${'a'.repeat(padLen)}\r\n\r\n`;
    const overhead = head(0).length;
    const d = echoDialer();
    const { port } = await proxy({ maxHeaderBytes: 1000 }, d.dial);
    expect(statusOf(await exchange(port, head(1001 - overhead)))).toBe(431);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(head(1000 - overhead));
    expect((await r.take(ESTABLISHED.length)).toString()).toBe(ESTABLISHED);
    sock.destroy();
    expect(d.targets.length).toBe(1);
  });

  const failures: [ResetCode, number][] = [
    [ResetCode.REFUSED, 502],
    [ResetCode.HOST_UNREACHABLE, 502],
    [ResetCode.NETWORK_UNREACHABLE, 502],
    [ResetCode.DNS_FAILED, 502],
    [ResetCode.TIMEOUT, 504],
    [ResetCode.NOT_ALLOWED, 403],
    [ResetCode.INTERNAL, 502],
  ];
  for (const [code, status] of failures) {
    it(`answers ${status} when the dial fails with RESET code ${code}`, async () => {
      const dial: Dialer = () => Promise.reject(new DialError(code, 'no'));
      const { port, served } = await proxy({}, dial);
      const res = parseResponse(await exchange(port, 'CONNECT x.example:443 HTTP/1.1\r\n\r\n'));
      expect(res.status).toBe(status);
      expect(res.body.trim().length).toBeGreaterThan(0);
      await settles(served[0], 'serveHttpConnect after the error response');
    });
  }

  it('answers 502 when the dialer fails with a plain error', async () => {
    const dial: Dialer = () => Promise.reject(new Error('boom'));
    const { port } = await proxy({}, dial);
    expect(statusOf(await exchange(port, 'CONNECT x.example:443 HTTP/1.1\r\n\r\n'))).toBe(502);
  });

  it('gives up on a client that never finishes its header block, at the handshake timeout and not before', async () => {
    const clock = new TestClock();
    const d = echoDialer();
    const { port, served, accepted } = await proxy({ handshakeTimeoutMs: 150, clock }, d.dial);
    const line = 'CONNECT x.example:443 HTTP/1.1\r\n';
    const response = exchange(port, line);
    await clock.settle(() => accepted.length === 1 && accepted[0]!.bytesRead === line.length, 'the request line reached the proxy');
    await clock.advance(149);
    expect(accepted[0]!.bytesWritten).toBe(0);
    await clock.advance(1);
    // The 408 is written by the clock's timer itself, not later.
    expect(accepted[0]!.bytesWritten).toBeGreaterThan(0);
    expect(statusOf(await response)).toBe(408);
    await settles(served[0], 'serveHttpConnect after the 408');
    expect(d.targets).toEqual([]);
  });

  it('closes when the client leaves before finishing the request', async () => {
    const d = echoDialer();
    const { port, served } = await proxy({}, d.dial);
    const sock = await connect(port);
    sock.end('CONNECT x.example:443 HTTP/1.1\r\n');
    await settles(served[0], 'serveHttpConnect after the client left');
    expect(d.targets).toEqual([]);
  });
});

describe('parseAuthority', () => {
  const ok: [string, string, number][] = [
    ['example.com:443', 'example.com', 443],
    ['192.0.2.1:1', '192.0.2.1', 1],
    ['[::1]:65535', '::1', 65535],
    ['[2001:db8::ffff:192.0.2.1]:80', '2001:db8::ffff:192.0.2.1', 80],
  ];
  for (const [s, host, port] of ok) {
    it(`parses ${s}`, () => expect(parseAuthority(s)).toEqual({ host, port }));
  }
  for (const s of ['example.com', ':443', 'example.com:', '[::1]443', '[::1]:', 'a b:1', 'a:1:2', 'user@host:1', '[fe80::1%eth0]:1', 'h:123456']) {
    it(`rejects ${JSON.stringify(s)}`, () => expect(parseAuthority(s)).toBeNull());
  }
});

describe('serveHttpConnect with proxy credentials', () => {
  const auth = { username: 'alice', password: 'open:sesame é' };
  const basic = (cred: string): string => `Basic ${Buffer.from(cred, 'utf8').toString('base64')}`;
  const request = (headers: string[]): string => ['CONNECT t.example:443 HTTP/1.1', 'Host: t.example:443', ...headers, '', ''].join('\r\n');

  it('answers 407 with Proxy-Authenticate: Basic realm="plait" and never dials, for missing or wrong credentials', async () => {
    const d = echoDialer();
    const { port } = await proxy({ auth }, d.dial);
    for (const headers of [
      [],
      [`Proxy-Authorization: ${basic('alice:open:sesame')}`],
      [`Proxy-Authorization: ${basic('alice:open:sesame éx')}`],
      [`Proxy-Authorization: ${basic('bob:open:sesame é')}`],
      [`Proxy-Authorization: ${basic('alice')}`],
      [`Proxy-Authorization: Bearer ${Buffer.from('alice:open:sesame é').toString('base64')}`],
      ['Proxy-Authorization: Basic !!!notbase64'],
      // Credentials in the wrong header do not count.
      [`Authorization: ${basic('alice:open:sesame é')}`],
    ]) {
      const res = parseResponse(await exchange(port, request(headers)));
      expect(res.status, headers.join()).toBe(407);
      expect(res.headers.get('proxy-authenticate')).toBe('Basic realm="plait"');
    }
    expect(d.targets).toEqual([]);
  });

  it('answers 400 to two Proxy-Authorization headers (which one would count is ambiguous)', async () => {
    const d = echoDialer();
    const { port } = await proxy({ auth }, d.dial);
    const res = parseResponse(await exchange(port, request([`Proxy-Authorization: ${basic('x:y')}`, `Proxy-Authorization: ${basic('alice:open:sesame é')}`])));
    expect(res.status).toBe(400);
    expect(d.targets).toEqual([]);
  });

  it('tunnels with the right credentials (scheme and header name in any case, UTF-8 password)', async () => {
    for (const header of [`Proxy-Authorization: ${basic('alice:open:sesame é')}`, `proxy-authorization:   basic ${Buffer.from('alice:open:sesame é').toString('base64')}  `]) {
      const d = echoDialer();
      const { port } = await proxy({ auth }, d.dial);
      const sock = await connect(port);
      const r = reader(sock);
      sock.write(request([header]));
      expect((await r.take(ESTABLISHED.length)).toString()).toBe(ESTABLISHED);
      sock.end('ping');
      expect((await r.rest()).toString()).toBe('ping');
      expect(d.targets).toEqual([{ host: 't.example', port: 443 }]);
    }
  });

  it('without configured credentials, a Proxy-Authorization header is ignored', async () => {
    const d = echoDialer();
    const { port } = await proxy({}, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(request([`Proxy-Authorization: ${basic('any:thing')}`]));
    expect((await r.take(ESTABLISHED.length)).toString()).toBe(ESTABLISHED);
    sock.destroy();
  });
});
