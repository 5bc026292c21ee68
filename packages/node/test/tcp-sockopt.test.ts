import { fstatSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { TestClock, track } from '@plait/testkit';
import { createSockOpts, loadSockOpts, SockOptError, type KoffiLike } from '../src/tcp-sockopt.js';

// Loopback only: every address in this file is 127.0.0.1 or ::1.

type Koffi = typeof import('koffi');
const koffi = createRequire(import.meta.url)('koffi') as Koffi;
const libc = koffi.load('libc.so.6');
const c = {
  socket: libc.func('int socket(int, int, int)') as (d: number, t: number, p: number) => number,
  getsockopt: libc.func('int getsockopt(int, int, int, void *, void *)') as (fd: number, l: number, n: number, v: Buffer, len: Buffer) => number,
  bind: libc.func('int bind(int, const void *, uint32_t)') as (fd: number, a: Buffer, len: number) => number,
  listen: libc.func('int listen(int, int)') as (fd: number, backlog: number) => number,
  getsockname: libc.func('int getsockname(int, void *, void *)') as (fd: number, a: Buffer, len: Buffer) => number,
  close: libc.func('int close(int)') as (fd: number) => number,
};

const so = loadSockOpts();
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanups.splice(0)) f();
});

function fdOf(s: net.Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('socket has no fd');
  return fd;
}

/** Test-side getsockopt read-back, independent of the module under test. */
function getsockoptRaw(s: net.Socket, level: number, name: number, size: number): Buffer {
  const value = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(size);
  expect(c.getsockopt(fdOf(s), level, name, value, len)).toBe(0);
  return value.subarray(0, len.readUInt32LE(0));
}

async function listen(host: '127.0.0.1' | '::1', onConn: (s: net.Socket) => void = () => undefined): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer(onConn);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  cleanups.push(() => server.close());
  return { server, port: (server.address() as net.AddressInfo).port };
}

async function connectPlain(host: string, port: number): Promise<net.Socket> {
  const s = net.connect(port, host);
  cleanups.push(() => s.destroy());
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  return s;
}

async function rejectionOf(p: Promise<unknown>): Promise<SockOptError> {
  try {
    const s = await p;
    if (s instanceof net.Socket) s.destroy();
  } catch (e) {
    expect(e).toBeInstanceOf(SockOptError);
    return e as SockOptError;
  }
  throw new Error('expected a rejection');
}

/** Echo every byte back; also count what arrived. */
function echoServer(host: '127.0.0.1' | '::1') {
  const seen: net.Socket[] = [];
  return listen(host, (s) => {
    seen.push(s);
    cleanups.push(() => s.destroy());
    s.on('error', () => undefined);
    s.pipe(s);
  }).then((l) => ({ ...l, seen }));
}

async function roundTrip(s: net.Socket, payload: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let got = 0;
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      got += d.length;
      if (got >= payload.length) resolve();
    });
    s.once('error', reject);
  });
  s.write(payload);
  await done;
  return Buffer.concat(chunks);
}

/**
 * Whether this process may bind an unbound socket to a device: CAP_NET_RAW, or Linux >= 5.7,
 * which allows it to anyone (only re-binding a bound socket still needs the capability).
 */
function mayBindDevice(): boolean {
  const capEff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
  const hasCapNetRaw = capEff !== undefined && ((BigInt(`0x${capEff}`) >> 13n) & 1n) === 1n;
  const [major = 0, minor = 0] = os.release().split('.').map((x) => Number.parseInt(x, 10));
  return hasCapNetRaw || major > 5 || (major === 5 && minor >= 7);
}

/**
 * Real koffi, except that setsockopt(level, name) fails with EPERM (as for an unprivileged
 * process; this box runs as root); records the descriptors socket() opened.
 */
function koffiDenying(level: number, name: number): { koffi: KoffiLike; opened: number[] } {
  const opened: number[] = [];
  const denying: KoffiLike = {
    errno: () => koffi.errno(),
    load: (path) => {
      const lib = koffi.load(path ?? 'libc.so.6');
      return {
        func: (signature: string) => {
          const real = lib.func(signature) as (...args: unknown[]) => unknown;
          if (signature.includes(' socket(')) {
            return (...args: unknown[]) => {
              const fd = Number(real(...args));
              opened.push(fd);
              return fd;
            };
          }
          if (!signature.includes(' setsockopt(')) return real;
          return (...args: unknown[]) => {
            if (args[1] === level && args[2] === name) {
              koffi.errno(1); // EPERM
              return -1;
            }
            return real(...args);
          };
        },
      };
    },
  };
  return { koffi: denying, opened };
}

describe('loadSockOpts on this Linux box', () => {
  it('is available, and a lazy singleton', () => {
    expect(so.available).toBe(true);
    expect(so.reason).toBeUndefined();
    expect(loadSockOpts()).toBe(so);
  });
});

describe('tcpInfo', () => {
  it('reads sane values from a connected loopback socket, and bytesAcked covers 1 MiB the peer read', async () => {
    let received = 0;
    const { port } = await listen('127.0.0.1', (peer) => {
      cleanups.push(() => peer.destroy());
      peer.on('data', (d: Buffer) => {
        received += d.length;
      });
    });
    const s = await connectPlain('127.0.0.1', port);

    const first = so.tcpInfo(s);
    expect(first).toBeDefined();
    expect(first?.state).toBe(1); // TCP_ESTABLISHED
    expect(first?.rttUs).toBeGreaterThan(0);
    expect(first?.sndMss).toBeGreaterThan(0);
    expect(first?.sndCwnd).toBeGreaterThan(0);
    expect(first?.minRttUs).toBeGreaterThan(0);

    const MiB = 1024 * 1024;
    s.write(Buffer.alloc(MiB, 0x5a));
    await vi.waitFor(() => expect(received).toBe(MiB), { timeout: 10_000, interval: 5 });
    // The last ACK may trail the peer's read by a delayed-ACK interval.
    await vi.waitFor(() => expect(so.tcpInfo(s)?.bytesAcked).toBeGreaterThanOrEqual(MiB), { timeout: 5_000, interval: 5 });
    const after = so.tcpInfo(s);
    expect(after?.bytesSent).toBeGreaterThanOrEqual(MiB);
    expect(after?.notsentBytes).toBe(0);
    expect(after?.unacked).toBe(0);
    expect(after?.deliveryRateBytesPerSec).toBeGreaterThan(0);
    expect(after?.pacingRateBytesPerSec).toBeGreaterThan(0);
    // Busy time is kept in jiffies: a 1 MiB loopback write can finish inside one (0 then).
    expect(after?.busyTimeUs).toBeGreaterThanOrEqual(0);
    expect(Number.isFinite(after?.busyTimeUs)).toBe(true);
  });

  it('gives undefined, not a throw, for a closed or never-connected socket', async () => {
    const { port } = await listen('127.0.0.1');
    const s = await connectPlain('127.0.0.1', port);
    s.destroy();
    await new Promise((resolve) => s.once('close', resolve));
    expect(so.tcpInfo(s)).toBeUndefined();
    expect(so.setNotsentLowat(s, 16_384)).toBe(false);
    expect(so.tcpInfo(new net.Socket())).toBeUndefined();
  });
});

describe('setNotsentLowat', () => {
  it('sets TCP_NOTSENT_LOWAT, read back with getsockopt', async () => {
    const { port } = await listen('127.0.0.1');
    const s = await connectPlain('127.0.0.1', port);
    expect(so.setNotsentLowat(s, 16_384)).toBe(true);
    expect(getsockoptRaw(s, 6, 25, 4).readInt32LE(0)).toBe(16_384);
    expect(so.setNotsentLowat(s, 131_072)).toBe(true);
    expect(getsockoptRaw(s, 6, 25, 4).readInt32LE(0)).toBe(131_072);
  });

  it('refuses values the kernel cannot take', async () => {
    const { port } = await listen('127.0.0.1');
    const s = await connectPlain('127.0.0.1', port);
    expect(so.setNotsentLowat(s, -1)).toBe(false);
    expect(so.setNotsentLowat(s, 1.5)).toBe(false);
    expect(so.setNotsentLowat(s, 2 ** 31)).toBe(false);
  });
});

describe('connectBound', () => {
  it("connects through device 'lo' and carries bytes both ways (IPv4)", async () => {
    const { port, seen } = await echoServer('127.0.0.1');
    const pending = so.connectBound({ host: '127.0.0.1', port, device: 'lo' });
    if (!mayBindDevice()) {
      const err = await rejectionOf(pending);
      expect(err.code).toBe('EPERM');
      expect(err.message).toMatch(/--via.*root or CAP_NET_RAW/);
      return;
    }
    const s = await pending;
    cleanups.push(() => s.destroy());
    expect(s.remoteAddress).toBe('127.0.0.1');
    expect(s.remotePort).toBe(port);
    // The device binding is on the socket Node now owns.
    expect(getsockoptRaw(s, 1, 25, 16).toString('latin1').replace(/\0+$/, '')).toBe('lo');
    const payload = Buffer.alloc(256 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
    expect((await roundTrip(s, payload)).equals(payload)).toBe(true);
    expect(seen[0]?.remotePort).toBe(s.localPort);
    // And the module can read its own sockets.
    expect(so.tcpInfo(s)?.state).toBe(1);
    expect(so.setNotsentLowat(s, 32_768)).toBe(true);
  });

  it("connects through 'lo' to ::1 from a given local address (IPv6)", async () => {
    const { port, seen } = await echoServer('::1');
    const s = await so.connectBound({ host: '::1', port, device: 'lo', localAddress: '::1' });
    cleanups.push(() => s.destroy());
    expect(s.remoteAddress).toBe('::1');
    expect(s.localAddress).toBe('::1');
    const payload = Buffer.from('both ways over ::1');
    expect((await roundTrip(s, payload)).toString()).toBe(payload.toString());
    expect(seen[0]?.remoteAddress).toBe('::1');
  });

  it('binds the given IPv4 local address', async () => {
    const { port } = await echoServer('127.0.0.1');
    const s = await so.connectBound({ host: '127.0.0.1', port, device: 'lo', localAddress: '127.0.0.1' });
    cleanups.push(() => s.destroy());
    expect(s.localAddress).toBe('127.0.0.1');
    expect((await roundTrip(s, Buffer.from('x'))).toString()).toBe('x');
  });

  it("rejects device 'nonexistent0' with ENODEV", async () => {
    const { port } = await listen('127.0.0.1');
    const err = await rejectionOf(so.connectBound({ host: '127.0.0.1', port, device: 'nonexistent0' }));
    expect(err.code).toBe('ENODEV');
    expect(err.syscall).toBe('setsockopt');
    expect(err.message).toContain('nonexistent0');
  });

  it('rejects a refused port with ECONNREFUSED', async () => {
    const { server, port } = await listen('127.0.0.1');
    await new Promise((resolve) => server.close(resolve));
    const err = await rejectionOf(so.connectBound({ host: '127.0.0.1', port, device: 'lo' }));
    expect(err.code).toBe('ECONNREFUSED');
    expect(err.syscall).toBe('connect');
  });

  it('rejects with ETIMEDOUT when the SYN goes unanswered, once the timeout has passed on the clock and not before', async () => {
    // A listener with backlog 0 that never accepts: once one connection waits in its accept
    // queue, the kernel drops further SYNs, so the next connect hangs in SYN_SENT.
    const fd = c.socket(2, 1, 0);
    expect(fd).toBeGreaterThanOrEqual(0);
    cleanups.push(() => c.close(fd));
    const sin = Buffer.alloc(16);
    sin.writeUInt16LE(2, 0);
    Buffer.from([127, 0, 0, 1]).copy(sin, 4);
    expect(c.bind(fd, sin, 16)).toBe(0);
    expect(c.listen(fd, 0)).toBe(0);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(16);
    expect(c.getsockname(fd, sin, len)).toBe(0);
    const port = sin.readUInt16BE(2);
    await connectPlain('127.0.0.1', port); // fills the accept queue

    const clock = new TestClock();
    const timed = createSockOpts({ clock });
    const pending = track(timed.connectBound({ host: '127.0.0.1', port, device: 'lo', timeoutMs: 100 }));
    await clock.advance(99);
    // Several poll slices, and longer than the timeout in real time: only the clock may end the wait.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(pending.settled).toBe(false);
    await clock.advance(1);
    await clock.settle(() => pending.settled, 'connectBound to give up at 100 ms of clock time');
    const err = await rejectionOf(pending.promise);
    expect(err.code).toBe('ETIMEDOUT');
    expect(err.message).toMatch(/after 100 ms/);
  });

  it('rejects host names and mixed families without touching the network', async () => {
    expect((await rejectionOf(so.connectBound({ host: 'localhost', port: 1, device: 'lo' }))).code).toBe('EINVAL');
    expect((await rejectionOf(so.connectBound({ host: '::1', port: 1, device: 'lo', localAddress: '127.0.0.1' }))).code).toBe('EINVAL');
    expect((await rejectionOf(so.connectBound({ host: '127.0.0.1', port: 0, device: 'lo' }))).code).toBe('EINVAL');
  });

  it('turns EPERM from SO_BINDTODEVICE into a --via message and closes the descriptor', async () => {
    // The kernel only says EPERM to an unprivileged re-bind (>= 5.7) or any unprivileged bind
    // (older kernels); this box runs as root, so a koffi stand-in makes setsockopt fail that way.
    const { koffi: failing, opened } = koffiDenying(1, 25); // SOL_SOCKET, SO_BINDTODEVICE
    const unprivileged = createSockOpts({ loadKoffi: () => failing });
    expect(unprivileged.available).toBe(true);
    const { port } = await listen('127.0.0.1');
    const err = await rejectionOf(unprivileged.connectBound({ host: '127.0.0.1', port, device: 'lo' }));
    expect(err.code).toBe('EPERM');
    expect(err.message).toMatch(/--via.*root or CAP_NET_RAW/);
    expect(opened).toHaveLength(1);
    expect(() => fstatSync(opened[0] ?? -1)).toThrow(/EBADF/);
  });
});

describe('fallback without koffi', () => {
  it('koffi missing: available false with a reason, every call a no-op', async () => {
    let calls = 0;
    const missing = createSockOpts({
      loadKoffi: () => {
        calls++;
        throw Object.assign(new Error("Cannot find module 'koffi'"), { code: 'MODULE_NOT_FOUND' });
      },
    });
    expect(calls).toBe(1);
    expect(missing.available).toBe(false);
    expect(missing.reason).toMatch(/koffi.*Cannot find module/);

    const { port } = await listen('127.0.0.1');
    const s = await connectPlain('127.0.0.1', port);
    expect(missing.tcpInfo(s)).toBeUndefined();
    expect(missing.setNotsentLowat(s, 16_384)).toBe(false);
    expect(getsockoptRaw(s, 6, 25, 4).readInt32LE(0)).not.toBe(16_384); // really untouched
    const err = await rejectionOf(missing.connectBound({ host: '127.0.0.1', port, device: 'lo' }));
    expect(err.code).toBe('ENOTSUP');
    expect(err.message).toContain(missing.reason ?? '');
  });

  it('a loader returning something that is not koffi is a fallback too', () => {
    const odd = createSockOpts({ loadKoffi: () => ({ hello: 1 }) });
    expect(odd.available).toBe(false);
    expect(odd.reason).toMatch(/unexpected module shape/);
  });

  it('other platforms never load koffi', () => {
    const loadKoffi = vi.fn(() => koffi);
    const mac = createSockOpts({ platform: 'darwin', loadKoffi });
    expect(mac.available).toBe(false);
    expect(mac.reason).toMatch(/Linux.*darwin/);
    const mips = createSockOpts({ platform: 'linux', arch: 'mips', loadKoffi });
    expect(mips.available).toBe(false);
    expect(mips.reason).toMatch(/mips/);
    expect(loadKoffi).not.toHaveBeenCalled();
    expect(mac.tcpInfo(new net.Socket())).toBeUndefined();
  });
});

// ---------------------------------------------- transparent proxying (--redirect / --tproxy)

/** Real koffi, except that getsockopt(level, 80) (SO_ORIGINAL_DST) answers what `orig` says. */
function origDstKoffi(orig: (level: number, value: Buffer, len: Buffer) => number, calls: number[][] = []): KoffiLike {
  return {
    errno: () => koffi.errno(),
    load: (path) => {
      const lib = koffi.load(path ?? 'libc.so.6');
      return {
        func: (signature: string) => {
          const real = lib.func(signature) as (...args: unknown[]) => unknown;
          if (!signature.includes(' getsockopt(')) return real;
          return (...args: unknown[]) => {
            if (args[2] !== 80) return real(...args);
            calls.push([args[1] as number, args[2] as number]);
            return orig(args[1] as number, args[3] as Buffer, args[4] as Buffer);
          };
        },
      };
    },
  } as KoffiLike;
}

function sockaddrIn(ip: [number, number, number, number], port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(2, 0);
  b.writeUInt16BE(port, 2);
  Buffer.from(ip).copy(b, 4);
  return b;
}

describe('originalDst (SO_ORIGINAL_DST)', () => {
  it('reads the IPv4 original destination the kernel writes, asking SOL_IP', async () => {
    const calls: number[][] = [];
    const so4 = createSockOpts({
      loadKoffi: () =>
        origDstKoffi((_level, value, len) => {
          sockaddrIn([93, 184, 216, 34], 443).copy(value);
          len.writeUInt32LE(16);
          return 0;
        }, calls),
    });
    const { port } = await listen('127.0.0.1');
    const s = await connectPlain('127.0.0.1', port);
    expect(so4.originalDst(s)).toEqual({ ok: true, host: '93.184.216.34', port: 443 });
    expect(calls).toEqual([[0, 80]]);
  });

  it('asks SOL_IPV6 on an IPv6 connection and formats the address as Node does', async () => {
    const calls: number[][] = [];
    const so6 = createSockOpts({
      loadKoffi: () =>
        origDstKoffi((_level, value, len) => {
          const b = Buffer.alloc(28);
          b.writeUInt16LE(10, 0);
          b.writeUInt16BE(8443, 2);
          Buffer.from('20010db8000000000000000000000007', 'hex').copy(b, 8);
          b.copy(value);
          len.writeUInt32LE(28);
          return 0;
        }, calls),
    });
    const { port } = await listen('::1');
    const s = await connectPlain('::1', port);
    expect(so6.originalDst(s)).toEqual({ ok: true, host: '2001:db8::7', port: 8443 });
    expect(calls).toEqual([[41, 80]]);
  });

  it('no NAT entry (ENOENT): not ok, with a reason naming the cause', async () => {
    const none = createSockOpts({
      loadKoffi: () =>
        origDstKoffi(() => {
          koffi.errno(2); // ENOENT
          return -1;
        }),
    });
    const { port } = await listen('127.0.0.1');
    const s = await connectPlain('127.0.0.1', port);
    const r = none.originalDst(s);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/not redirected.*SO_ORIGINAL_DST: ENOENT/);
  });

  it('a sockaddr of an unknown family or too short is refused, never misread', async () => {
    const odd = createSockOpts({
      loadKoffi: () =>
        origDstKoffi((_level, value, len) => {
          value.writeUInt16LE(99, 0);
          len.writeUInt32LE(16);
          return 0;
        }),
    });
    const short = createSockOpts({
      loadKoffi: () =>
        origDstKoffi((_level, value, len) => {
          sockaddrIn([10, 0, 0, 1], 80).copy(value);
          len.writeUInt32LE(6);
          return 0;
        }),
    });
    const { port } = await listen('127.0.0.1');
    const s = await connectPlain('127.0.0.1', port);
    expect(odd.originalDst(s)).toEqual({ ok: false, reason: expect.stringMatching(/address family 99/) as string });
    expect(short.originalDst(s).ok).toBe(false);
  });

  it('on this kernel, a connection nobody redirected has none, or its own destination (conntrack without NAT)', async () => {
    const { port } = await listen('127.0.0.1');
    const s = await connectPlain('127.0.0.1', port);
    const r = so.originalDst(s);
    if (r.ok) expect(r).toEqual({ ok: true, host: '127.0.0.1', port });
    else expect(r.reason).toMatch(/SO_ORIGINAL_DST/);
    s.destroy();
    await new Promise((resolve) => s.once('close', resolve));
    expect(so.originalDst(s)).toEqual({ ok: false, reason: 'the connection is already closed' });
  });

  it('without koffi: not ok, with the reason', async () => {
    const missing = createSockOpts({ loadKoffi: () => ({}) });
    const { port } = await listen('127.0.0.1');
    const r = missing.originalDst(await connectPlain('127.0.0.1', port));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/cannot read the original destination.*koffi/);
    expect(() => missing.listenTransparent('127.0.0.1', 0)).toThrow(/TPROXY.*koffi/);
  });
});

describe('listenTransparent (IP_TRANSPARENT)', () => {
  function mayTransparent(): boolean {
    const capEff = /CapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
    return capEff !== undefined && ((BigInt(`0x${capEff}`) >> 12n) & 1n) === 1n; // CAP_NET_ADMIN
  }

  it('opens a listening socket with IP_TRANSPARENT that Node can serve from', async () => {
    if (!mayTransparent()) {
      expect(() => so.listenTransparent('127.0.0.1', 0)).toThrow(/--tproxy.*CAP_NET_ADMIN/);
      return;
    }
    const fd = so.listenTransparent('127.0.0.1', 0);
    const value = Buffer.alloc(4);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(4);
    expect(c.getsockopt(fd, 0, 19, value, len)).toBe(0);
    expect(value.readInt32LE(0)).toBe(1);
    const server = net.createServer((peer) => peer.end('hello from fd'));
    cleanups.push(() => server.close());
    await new Promise<void>((resolve) => server.listen({ fd }, resolve));
    const port = (server.address() as net.AddressInfo).port;
    const s = await connectPlain('127.0.0.1', port);
    const got = await new Promise<string>((resolve) => {
      let text = '';
      s.on('data', (d: Buffer) => (text += d.toString()));
      s.on('end', () => resolve(text));
    });
    expect(got).toBe('hello from fd');
  });

  it('EPERM from IP_TRANSPARENT: a --tproxy message, and the descriptor is closed', () => {
    const { koffi: failing, opened } = koffiDenying(0, 19); // SOL_IP, IP_TRANSPARENT
    const unprivileged = createSockOpts({ loadKoffi: () => failing });
    let err: unknown;
    try {
      unprivileged.listenTransparent('127.0.0.1', 0);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SockOptError);
    expect((err as SockOptError).code).toBe('EPERM');
    expect((err as SockOptError).message).toMatch(/--tproxy.*root or CAP_NET_ADMIN/);
    expect(opened).toHaveLength(1);
    expect(() => fstatSync(opened[0] ?? -1)).toThrow(/EBADF/);
  });

  it('a busy port is EADDRINUSE, a name is EINVAL', () => {
    if (!mayTransparent()) return;
    const fd = so.listenTransparent('127.0.0.1', 0);
    cleanups.push(() => c.close(fd));
    const sin = Buffer.alloc(16);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(16);
    expect(c.getsockname(fd, sin, len)).toBe(0);
    expect(() => so.listenTransparent('127.0.0.1', sin.readUInt16BE(2))).toThrow(expect.objectContaining({ code: 'EADDRINUSE' }) as Error);
    expect(() => so.listenTransparent('localhost', 0)).toThrow(expect.objectContaining({ code: 'EINVAL' }) as Error);
  });
});
