import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ResetCode } from '@plait/core';
import { DialError, type Dialer, type Target } from '../src/dialer.js';
import { formatIPv6, serveSocks5, type Socks5Options } from '../src/socks5.js';
import { listen, closeServer, reader, connect, settles, waitFor } from './socket-helpers.js';
import { TestClock } from './test-clock.js';

// ---- fixtures ----

let echoPort = 0;
const echo = net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.pipe(s);
});

/** Dials the local echo server whatever the target, and remembers the targets; `hold` delays each dial until it resolves. */
function echoDialer(hold?: Promise<void>): { dial: Dialer; targets: Target[]; remotes: net.Socket[] } {
  const targets: Target[] = [];
  const remotes: net.Socket[] = [];
  const dial: Dialer = async (t) => {
    targets.push(t);
    if (hold) await hold;
    const s = await connect(echoPort);
    remotes.push(s);
    return s;
  };
  return { dial, targets, remotes };
}

const servers: net.Server[] = [];
/** A SOCKS5 proxy on loopback using `dial`; also collects serveSocks5's promises and the accepted sockets. */
async function proxy(opts: Socks5Options, dial: Dialer): Promise<{ port: number; served: Promise<void>[]; accepted: net.Socket[] }> {
  const served: Promise<void>[] = [];
  const accepted: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted.push(s);
    served.push(serveSocks5(s, opts, dial));
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

const GREETING_NOAUTH = Buffer.from([5, 1, 0]);
const SUCCESS = Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);

function connectRequest(atyp: number, addr: Buffer, port: number, cmd = 1): Buffer {
  const p = Buffer.alloc(2);
  p.writeUInt16BE(port);
  return Buffer.concat([Buffer.from([5, cmd, 0, atyp]), addr, p]);
}
const v4Request = (ip: string, port: number, cmd = 1): Buffer =>
  connectRequest(1, Buffer.from(ip.split('.').map(Number)), port, cmd);
const domainRequest = (name: string, port: number): Buffer =>
  connectRequest(3, Buffer.concat([Buffer.from([name.length]), Buffer.from(name, 'latin1')]), port);

async function echoRoundTrip(sock: net.Socket, r: ReturnType<typeof reader>, size: number): Promise<void> {
  const payload = randomBytes(size);
  sock.end(payload);
  const got = await r.rest();
  expect(got.length).toBe(size);
  expect(got.equals(payload)).toBe(true);
}

// ---- tests ----

describe('serveSocks5 CONNECT', () => {
  it('connects by IPv4 and echoes 4 MiB byte-exact, passing half-close both ways', async () => {
    const d = echoDialer();
    const { port, served } = await proxy({}, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(GREETING_NOAUTH);
    expect([...(await r.take(2))]).toEqual([5, 0]);
    sock.write(v4Request('203.0.113.7', 8443));
    expect((await r.take(10)).equals(SUCCESS)).toBe(true);
    await echoRoundTrip(sock, r, 4 * 1024 * 1024);
    expect(d.targets).toEqual([{ host: '203.0.113.7', port: 8443 }]);
    await r.closed();
    await served[0];
  });

  it('connects by IPv6 and passes the address in compressed text form', async () => {
    const d = echoDialer();
    const { port } = await proxy({}, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    const addr = Buffer.from('20010db8000000000000000000000001', 'hex');
    sock.write(Buffer.concat([GREETING_NOAUTH, connectRequest(4, addr, 443)]));
    await r.take(2);
    expect((await r.take(10)).equals(SUCCESS)).toBe(true);
    await echoRoundTrip(sock, r, 2 * 1024 * 1024);
    expect(d.targets).toEqual([{ host: '2001:db8::1', port: 443 }]);
  });

  it('passes a domain name to the dialer unresolved', async () => {
    const d = echoDialer();
    const { port } = await proxy({}, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.concat([GREETING_NOAUTH, domainRequest('example.invalid', 80)]));
    await r.take(2);
    expect((await r.take(10)).equals(SUCCESS)).toBe(true);
    await echoRoundTrip(sock, r, 3 * 1024 * 1024);
    expect(d.targets).toEqual([{ host: 'example.invalid', port: 80 }]);
  });

  it('parses a handshake that arrives one byte at a time', async () => {
    const d = echoDialer();
    const { port, accepted } = await proxy({}, d.dial);
    const sock = await connect(port);
    sock.setNoDelay(true);
    const r = reader(sock);
    const all = Buffer.concat([GREETING_NOAUTH, domainRequest('split.example', 4242)]);
    // Each byte is read by the proxy before the next is sent: one byte per read.
    for (const [i, byte] of all.entries()) {
      sock.write(Buffer.from([byte]));
      await waitFor(() => accepted.length === 1 && accepted[0]!.bytesRead === i + 1, `byte ${i} read by the proxy`);
    }
    expect([...(await r.take(2))]).toEqual([5, 0]);
    expect((await r.take(10)).equals(SUCCESS)).toBe(true);
    await echoRoundTrip(sock, r, 64 * 1024);
    expect(d.targets).toEqual([{ host: 'split.example', port: 4242 }]);
  });

  it('keeps data pipelined behind the request while the dial is in progress', async () => {
    let go: () => void = () => {};
    const d = echoDialer(new Promise<void>((res) => (go = res)));
    const { port } = await proxy({ auth: { username: 'u', password: 'p' } }, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    const early = randomBytes(100_000);
    // Greeting, authentication, request and payload all before any reply.
    sock.write(
      Buffer.concat([Buffer.from([5, 1, 2]), Buffer.from([1, 1, 0x75, 1, 0x70]), v4Request('198.51.100.1', 22), early]),
    );
    // The dial completes only after the payload has been written behind the request.
    await new Promise<void>((res) => sock.write(Buffer.alloc(0), () => res()));
    go();
    expect([...(await r.take(2))]).toEqual([5, 2]);
    expect([...(await r.take(2))]).toEqual([1, 0]);
    expect((await r.take(10)).equals(SUCCESS)).toBe(true);
    expect((await r.take(early.length)).equals(early)).toBe(true);
    sock.end();
    expect((await r.rest()).length).toBe(0);
  });

  it('replies success only after the dial resolved', async () => {
    let release: (s: Duplex) => void = () => {};
    let dialing: () => void = () => {};
    const dialCalled = new Promise<void>((res) => (dialing = res));
    const dial: Dialer = () => {
      dialing();
      return new Promise<Duplex>((res) => (release = res));
    };
    const { port, accepted } = await proxy({}, dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.concat([GREETING_NOAUTH, v4Request('192.0.2.1', 80)]));
    await r.take(2);
    await dialCalled;
    // The dial is pending (its socket connected meanwhile): the proxy has written the method selection only.
    const remote = await connect(echoPort);
    expect(accepted[0]!.bytesWritten).toBe(2);
    expect(r.received().length).toBe(0);
    release(remote);
    expect((await r.take(10)).equals(SUCCESS)).toBe(true);
    sock.destroy();
  });

  it('destroys the remote when the client goes away during the dial', async () => {
    let release: (s: Duplex) => void = () => {};
    const dial: Dialer = () => new Promise<Duplex>((res) => (release = res));
    const { port, served } = await proxy({}, dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.concat([GREETING_NOAUTH, v4Request('192.0.2.1', 80)]));
    await r.take(2);
    // A reset, not a FIN: a FIN could be a client half-closing after its request.
    sock.resetAndDestroy();
    await settles(served[0], 'serveSocks5 after the reset');
    const remote = await connect(echoPort);
    const closed = new Promise<void>((res) => remote.once('close', () => res()));
    release(remote);
    await closed;
    expect(remote.destroyed).toBe(true);
  });
});

describe('serveSocks5 authentication', () => {
  const auth = { username: 'alice', password: 's3cret' };
  const authMsg = (u: string, p: string): Buffer =>
    Buffer.concat([Buffer.from([1, u.length]), Buffer.from(u), Buffer.from([p.length]), Buffer.from(p)]);

  it('accepts the right credentials', async () => {
    const d = echoDialer();
    const { port } = await proxy({ auth }, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.from([5, 2, 0, 2]));
    expect([...(await r.take(2))]).toEqual([5, 2]);
    sock.write(authMsg('alice', 's3cret'));
    expect([...(await r.take(2))]).toEqual([1, 0]);
    sock.write(v4Request('192.0.2.9', 9));
    expect((await r.take(10)).equals(SUCCESS)).toBe(true);
    await echoRoundTrip(sock, r, 1000);
  });

  for (const [u, p] of [
    ['alice', 'wrong'],
    ['bob', 's3cret'],
    ['alice', 's3cre'],
    ['', ''],
  ] as const) {
    it(`rejects username "${u}" / password "${p}" and closes`, async () => {
      const d = echoDialer();
      const { port } = await proxy({ auth }, d.dial);
      const sock = await connect(port);
      const r = reader(sock);
      sock.write(Buffer.from([5, 1, 2]));
      await r.take(2);
      sock.write(Buffer.concat([authMsg(u, p), v4Request('192.0.2.9', 9)]));
      expect([...(await r.take(2))]).toEqual([1, 1]);
      expect((await r.rest()).length).toBe(0);
      expect(d.targets).toEqual([]);
    });
  }

  it('answers 0xFF when auth is required but the client offers only "no auth"', async () => {
    const d = echoDialer();
    const { port } = await proxy({ auth }, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.concat([GREETING_NOAUTH, v4Request('192.0.2.9', 9)]));
    expect([...(await r.rest())]).toEqual([5, 0xff]);
    expect(d.targets).toEqual([]);
  });

  it('after a refusal, lets a client that never closes linger 2 s of clock time, then drops it', async () => {
    const clock = new TestClock();
    const { port, accepted, served } = await proxy({ auth, clock }, echoDialer().dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(GREETING_NOAUTH);
    // The refusal arrives with the proxy's FIN; this client keeps its side open.
    expect([...(await r.rest())]).toEqual([5, 0xff]);
    await clock.advance(1_999);
    expect(accepted[0]!.destroyed).toBe(false);
    await clock.advance(1);
    expect(accepted[0]!.destroyed).toBe(true);
    await settles(served[0], 'serveSocks5 after the linger');
    sock.destroy();
  });

  it('answers 0xFF when no auth is configured and the client offers only username/password', async () => {
    const d = echoDialer();
    const { port } = await proxy({}, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.from([5, 1, 2]));
    expect([...(await r.rest())]).toEqual([5, 0xff]);
  });
});

describe('serveSocks5 errors', () => {
  for (const [cmd, name] of [
    [2, 'BIND'],
    [3, 'UDP ASSOCIATE'],
  ] as const) {
    it(`replies 0x07 to ${name} and closes without dialing`, async () => {
      const d = echoDialer();
      const { port } = await proxy({}, d.dial);
      const sock = await connect(port);
      const r = reader(sock);
      sock.write(Buffer.concat([GREETING_NOAUTH, v4Request('192.0.2.1', 80, cmd)]));
      const got = await r.rest();
      expect([...got.subarray(0, 2)]).toEqual([5, 0]);
      expect(got.length).toBe(12);
      expect(got[3]).toBe(0x07);
      expect(d.targets).toEqual([]);
    });
  }

  it('replies 0x08 to an unknown address type', async () => {
    const d = echoDialer();
    const { port } = await proxy({}, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.concat([GREETING_NOAUTH, Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80])]));
    const got = await r.rest();
    expect(got[3]).toBe(0x08);
    expect(d.targets).toEqual([]);
  });

  // Expected bytes written out from PROTOCOL.md section 9 rather than computed.
  const table: [ResetCode, number][] = [
    [ResetCode.CANCEL, 0x01],
    [ResetCode.REFUSED, 0x05],
    [ResetCode.HOST_UNREACHABLE, 0x04],
    [ResetCode.NETWORK_UNREACHABLE, 0x03],
    [ResetCode.TIMEOUT, 0x06],
    [ResetCode.NOT_ALLOWED, 0x02],
    [ResetCode.DNS_FAILED, 0x04],
    [ResetCode.LIMIT, 0x01],
    [ResetCode.PROTOCOL, 0x01],
    [ResetCode.SESSION_CLOSED, 0x01],
    [ResetCode.INTERNAL, 0x01],
  ];
  for (const [code, rep] of table) {
    it(`replies 0x0${rep.toString(16)} when the dial fails with RESET code ${code}`, async () => {
      const dial: Dialer = () => Promise.reject(new DialError(code, 'nope'));
      const { port, served } = await proxy({}, dial);
      const sock = await connect(port);
      const r = reader(sock);
      sock.write(Buffer.concat([GREETING_NOAUTH, domainRequest('fail.example', 1)]));
      const got = await r.rest();
      expect([...got]).toEqual([5, 0, 5, rep, 0, 1, 0, 0, 0, 0, 0, 0]);
      sock.end();
      await settles(served[0], 'serveSocks5 after the client ended');
    });
  }

  it('replies 0x01 when the dialer fails with a plain error', async () => {
    const dial: Dialer = () => Promise.reject(new Error('boom'));
    const { port } = await proxy({}, dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.concat([GREETING_NOAUTH, v4Request('192.0.2.1', 80)]));
    expect([...(await r.rest())]).toEqual([5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0]);
  });

  for (const [name, bytes] of [
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')],
    ['SOCKS4', Buffer.from([4, 1, 0, 80, 127, 0, 0, 1, 0])],
    ['a bad request version', Buffer.concat([GREETING_NOAUTH, Buffer.from([4, 1, 0, 1, 1, 2, 3, 4, 0, 80])])],
  ] as const) {
    it(`closes on ${name} without a crash, and keeps serving`, async () => {
      const d = echoDialer();
      const { port, served } = await proxy({}, d.dial);
      const sock = await connect(port);
      const r = reader(sock);
      sock.write(bytes);
      const got = await r.rest();
      // At most the method selection, never a CONNECT reply.
      expect(got.length).toBeLessThanOrEqual(2);
      await served[0];
      const again = await connect(port);
      const r2 = reader(again);
      again.write(Buffer.concat([GREETING_NOAUTH, v4Request('192.0.2.1', 1)]));
      await r2.take(12);
      await echoRoundTrip(again, r2, 10);
      expect(d.targets.length).toBe(1);
    });
  }

  it('drops a client that never completes the greeting, at the handshake timeout and not before', async () => {
    const clock = new TestClock();
    const d = echoDialer();
    const { port, served, accepted } = await proxy({ handshakeTimeoutMs: 150, clock }, d.dial);
    const sock = await connect(port);
    const r = reader(sock);
    sock.write(Buffer.from([5, 2, 0]));
    // Half a greeting has reached the proxy (it reads it, then waits for the rest).
    await clock.settle(() => accepted.length === 1 && accepted[0]!.bytesRead === 3, 'the partial greeting reached the proxy');
    await clock.advance(149);
    expect(accepted[0]!.destroyed).toBe(false);
    await clock.advance(1);
    expect(accepted[0]!.destroyed).toBe(true);
    expect((await r.rest()).length).toBe(0);
    await settles(served[0], 'serveSocks5 after the timeout');
    expect(d.targets).toEqual([]);
  });

  it('closes when the client leaves mid-handshake', async () => {
    const d = echoDialer();
    const { port, served } = await proxy({}, d.dial);
    const sock = await connect(port);
    sock.end(Buffer.from([5, 1]));
    await settles(served[0], 'serveSocks5 after the client left');
    expect(d.targets).toEqual([]);
  });
});

describe('formatIPv6', () => {
  const cases: [string, string][] = [
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['20010db8000100000001000100010001', '2001:db8:1:0:1:1:1:1'],
    ['fe800000000000000000000000000000', 'fe80::'],
    ['00000000000000000000ffff7f000001', '::ffff:7f00:1'],
    ['20010db8aaaabbbbccccddddeeeeffff', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff'],
  ];
  for (const [hex, text] of cases) {
    it(`${hex} -> ${text}`, () => {
      expect(formatIPv6(Buffer.from(hex, 'hex'))).toBe(text);
      expect(net.isIPv6(text)).toBe(true);
    });
  }
});
