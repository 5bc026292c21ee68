/**
 * The kernel's own view of a subflow socket (Linux only, through the optional FFI package koffi):
 * read TCP_INFO, set TCP_NOTSENT_LOWAT, and connect a socket bound to an interface
 * (SO_BINDTODEVICE); for transparent proxying, read a redirected connection's original destination
 * (SO_ORIGINAL_DST) and open a TPROXY listener (IP_TRANSPARENT). Node exposes none of these. Anywhere else, or when koffi is missing or fails
 * to load, `available` is false with a `reason` and every call is a no-op, so callers need no
 * platform checks of their own.
 */
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import util from 'node:util';
import { realClock, type Clock } from '@plait/core';

export interface TcpInfo {
  /** tcpi_state: 1 ESTABLISHED ... 7 CLOSE, 10 LISTEN (include/net/tcp_states.h) */
  state: number;
  /** tcpi_ca_state: 0 Open, 1 Disorder, 2 CWR, 3 Recovery, 4 Loss */
  caState: number;
  retransmits: number;
  rttUs: number;
  rttVarUs: number;
  minRttUs: number;
  /** in segments */
  sndCwnd: number;
  sndMss: number;
  /** segments sent and not yet acknowledged */
  unacked: number;
  lost: number;
  retrans: number;
  totalRetrans: number;
  notsentBytes: number;
  deliveryRateBytesPerSec: number;
  /** Infinity when the kernel reports "unlimited" (~0) */
  pacingRateBytesPerSec: number;
  bytesAcked: number;
  bytesSent: number;
  busyTimeUs: number;
  rwndLimitedUs: number;
  sndbufLimitedUs: number;
}

export interface ConnectBoundOptions {
  /** IP literal (v4 or v6, optionally with a %zone); the caller resolves names */
  host: string;
  port: number;
  /** interface name for SO_BINDTODEVICE, e.g. 'eth0', 'wlan0' */
  device: string;
  /** local IP literal to bind to (same family as host) */
  localAddress?: string;
  /** default 10 000 ms */
  timeoutMs?: number;
}

export interface SockOpts {
  readonly available: boolean;
  readonly reason: string | undefined;
  /** getsockopt(fd, IPPROTO_TCP, TCP_INFO); undefined if unavailable or the socket has no fd */
  tcpInfo(socket: net.Socket): TcpInfo | undefined;
  /** setsockopt TCP_NOTSENT_LOWAT (keeps the kernel's unsent queue short so the app decides late which subflow gets data); true on success */
  setNotsentLowat(socket: net.Socket, bytes: number): boolean;
  /**
   * Connect a TCP socket bound to an interface (SO_BINDTODEVICE) and optionally a local address;
   * resolves with a connected net.Socket. Rejects with a SockOptError whose `code` is the errno
   * name (EPERM, ENODEV, ECONNREFUSED, ETIMEDOUT, ...), or ENOTSUP when unavailable.
   */
  connectBound(opts: ConnectBoundOptions): Promise<net.Socket>;
  // ---- transparent proxying (plait client --redirect / --tproxy)
  /**
   * The destination a connection had before the firewall redirected it to us (nftables/iptables
   * REDIRECT or DNAT): getsockopt SO_ORIGINAL_DST. Never throws; says why when there is none.
   */
  originalDst(socket: net.Socket): OriginalDst;
  /**
   * A listening TCP socket with IP_TRANSPARENT set before bind, for TPROXY rules; returns its
   * descriptor for `net.Server.listen({ fd })`. Throws a SockOptError (EPERM: needs CAP_NET_ADMIN).
   */
  listenTransparent(host: string, port: number): number;
}

/** A redirected connection's original destination, or why it has none. */
export type OriginalDst = { ok: true; host: string; port: number } | { ok: false; reason: string };

/** Node-style system error: `code` is the errno name, as on errors from node:net. */
export class SockOptError extends Error {
  readonly code: string;
  readonly errno: number | undefined;
  readonly syscall: string;
  constructor(code: string, syscall: string, message: string, errno?: number) {
    super(message);
    this.name = 'SockOptError';
    this.code = code;
    this.syscall = syscall;
    this.errno = errno;
  }
}

/** The part of koffi this module uses; a test can hand in a stand-in (or a loader that throws). */
export interface KoffiLike {
  load(path: string | null): { func(signature: string): unknown };
  errno(): number;
}

export interface CreateSockOptsOptions {
  /** returns the koffi module; default: require('koffi') */
  loadKoffi?: () => unknown;
  /** default process.platform / process.arch */
  platform?: string;
  arch?: string;
  /** times connectBound's deadline (default: the real clock); tests drive a virtual one */
  clock?: Clock;
}

// Linux values, identical on x86_64 and aarch64 (asm-generic); they differ on mips/sparc/alpha,
// which is one reason only those two architectures are enabled.
const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000; // the fd must not leak into child processes
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_ERROR = 4;
const SO_BINDTODEVICE = 25;
const IPPROTO_TCP = 6;
const TCP_INFO = 11;
const TCP_NOTSENT_LOWAT = 25;
const POLLOUT = 4;
// Transparent proxying (linux/netfilter_ipv4.h, linux/netfilter_ipv6/ip6_tables.h, linux/in.h, linux/in6.h)
const SOL_IP = 0;
const SOL_IPV6 = 41;
const SO_ORIGINAL_DST = 80; // IP6T_SO_ORIGINAL_DST has the same number, at SOL_IPV6
const IP_TRANSPARENT = 19;
const IPV6_TRANSPARENT = 75;
const LISTEN_BACKLOG = 511; // Node's own default

const TCP_INFO_BUF = 256;
const DEFAULT_TIMEOUT_MS = 10_000;
// connect() waits in poll() on koffi's async worker, which is libuv's thread pool (shared with
// fs and dns.lookup); short slices let queued work run between them instead of pinning a thread
// for the whole connect timeout.
const POLL_SLICE_MS = 100;

/**
 * Byte offsets into struct tcp_info (include/uapi/linux/tcp.h). Cross-checked with offsetof()
 * against /usr/include/linux/tcp.h (linux-libc-dev 6.1, sizeof 232): all match. The kernel
 * appends new fields at the end and copies min(optlen, its sizeof), so these offsets are stable;
 * older kernels return a shorter struct and the missing tail reads as 0 (bytes_sent and the
 * *_limited times arrived in 4.19, delivery_rate in 4.9, busy_time in 4.10).
 */
const OFF = {
  state: 0, // u8 tcpi_state
  caState: 1, // u8 tcpi_ca_state
  retransmits: 2, // u8 tcpi_retransmits
  sndMss: 16, // u32 tcpi_snd_mss
  unacked: 24, // u32 tcpi_unacked
  lost: 32, // u32 tcpi_lost
  retrans: 36, // u32 tcpi_retrans
  rtt: 68, // u32 tcpi_rtt (us)
  rttVar: 72, // u32 tcpi_rttvar (us)
  sndCwnd: 80, // u32 tcpi_snd_cwnd
  totalRetrans: 100, // u32 tcpi_total_retrans
  pacingRate: 104, // u64 tcpi_pacing_rate (bytes/s)
  bytesAcked: 120, // u64 tcpi_bytes_acked
  notsentBytes: 144, // u32 tcpi_notsent_bytes
  minRtt: 148, // u32 tcpi_min_rtt (us)
  deliveryRate: 160, // u64 tcpi_delivery_rate (bytes/s)
  busyTime: 168, // u64 tcpi_busy_time (us)
  rwndLimited: 176, // u64 tcpi_rwnd_limited (us)
  sndbufLimited: 184, // u64 tcpi_sndbuf_limited (us)
  bytesSent: 200, // u64 tcpi_bytes_sent
} as const;

type NativeFn = ((...args: unknown[]) => unknown) & { async?: (...args: unknown[]) => void };

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  getsockopt(fd: number, level: number, name: number, value: Buffer, len: Buffer): number;
  bind(fd: number, addr: Buffer, len: number): number;
  connect(fd: number, addr: Buffer, len: number): number;
  listen(fd: number, backlog: number): number;
  close(fd: number): number;
  inetPton(af: number, src: string, dst: Buffer): number;
  ifNameToIndex(name: string): number;
  pollAsync(fds: Buffer, nfds: number, timeoutMs: number): Promise<number>;
  errno(): number;
}

let singleton: SockOpts | undefined;

/** Lazy singleton over the real koffi; never throws. */
export function loadSockOpts(): SockOpts {
  singleton ??= createSockOpts();
  return singleton;
}

/** Build a SockOpts (tests inject the loader or platform); never throws. */
export function createSockOpts(options: CreateSockOptsOptions = {}): SockOpts {
  const platform = options.platform ?? process.platform;
  const arch = options.arch ?? process.arch;
  if (platform !== 'linux') return unavailable(`TCP socket options need Linux (this is ${platform})`);
  if (arch !== 'x64' && arch !== 'arm64') return unavailable(`TCP socket options support x64 and arm64 only (this is ${arch})`);
  let koffi: unknown;
  try {
    koffi = (options.loadKoffi ?? defaultLoadKoffi)();
  } catch (e) {
    return unavailable(`the optional package koffi could not be loaded: ${errorText(e)}`);
  }
  if (!isKoffiLike(koffi)) return unavailable('the optional package koffi could not be loaded: unexpected module shape');
  let libc: Libc;
  try {
    libc = bindLibc(koffi);
  } catch (e) {
    return unavailable(`koffi could not bind libc socket functions: ${errorText(e)}`);
  }
  return new LinuxSockOpts(libc, options.clock ?? realClock);
}

function defaultLoadKoffi(): unknown {
  // koffi is CommonJS and optional: a synchronous require keeps loadSockOpts synchronous.
  return createRequire(import.meta.url)('koffi');
}

function isKoffiLike(m: unknown): m is KoffiLike {
  if ((typeof m !== 'object' && typeof m !== 'function') || m === null) return false;
  const r = m as Record<string, unknown>;
  return typeof r['load'] === 'function' && typeof r['errno'] === 'function';
}

function bindLibc(koffi: KoffiLike): Libc {
  let lib: ReturnType<KoffiLike['load']>;
  try {
    lib = koffi.load('libc.so.6'); // glibc
  } catch {
    lib = koffi.load(null); // e.g. musl: libc's symbols are already in the process
  }
  const fn = (signature: string): NativeFn => {
    const f = lib.func(signature);
    if (typeof f !== 'function') throw new Error(`koffi returned no function for ${signature}`);
    return f as NativeFn;
  };
  const socket = fn('int socket(int domain, int type, int protocol)');
  const setsockopt = fn('int setsockopt(int fd, int level, int name, const void *value, uint32_t len)');
  // Buffers go to `void *` by reference, so the kernel writes straight into them.
  const getsockopt = fn('int getsockopt(int fd, int level, int name, void *value, void *len)');
  const bind = fn('int bind(int fd, const void *addr, uint32_t len)');
  const connect = fn('int connect(int fd, const void *addr, uint32_t len)');
  const listen = fn('int listen(int fd, int backlog)');
  const close = fn('int close(int fd)');
  const inetPton = fn('int inet_pton(int af, const char *src, void *dst)');
  const ifNameToIndex = fn('unsigned int if_nametoindex(const char *name)');
  const poll = fn('int poll(void *fds, unsigned long nfds, int timeout)');
  const pollAsync = poll.async;
  if (typeof pollAsync !== 'function') throw new Error('koffi functions have no .async');
  return {
    socket: (d, t, p) => Number(socket(d, t, p)),
    setsockopt: (fd, level, name, value, len) => Number(setsockopt(fd, level, name, value, len)),
    getsockopt: (fd, level, name, value, len) => Number(getsockopt(fd, level, name, value, len)),
    bind: (fd, addr, len) => Number(bind(fd, addr, len)),
    connect: (fd, addr, len) => Number(connect(fd, addr, len)),
    listen: (fd, backlog) => Number(listen(fd, backlog)),
    close: (fd) => Number(close(fd)),
    inetPton: (af, src, dst) => Number(inetPton(af, src, dst)),
    ifNameToIndex: (name) => Number(ifNameToIndex(name)),
    // Only the return value is used: errno is per thread and this runs on a worker thread.
    pollAsync: (fds, nfds, timeoutMs) =>
      new Promise<number>((resolve, reject) => {
        pollAsync.call(poll, fds, nfds, timeoutMs, (err: unknown, res: unknown) => {
          if (err) reject(err instanceof Error ? err : new Error(String(err)));
          else resolve(Number(res));
        });
      }),
    errno: () => koffi.errno(),
  };
}

function unavailable(reason: string): SockOpts {
  return {
    available: false,
    reason,
    tcpInfo: () => undefined,
    setNotsentLowat: () => false,
    connectBound: (opts) =>
      Promise.reject(new SockOptError('ENOTSUP', 'connect', `cannot bind to interface '${opts.device}': ${reason}`)),
    originalDst: () => ({ ok: false, reason: `cannot read the original destination: ${reason}` }),
    listenTransparent: () => {
      throw new SockOptError('ENOTSUP', 'setsockopt', `cannot open a transparent (TPROXY) listener: ${reason}`);
    },
  };
}

/** The descriptor under a Node socket, if it still has one (none before connect or after close). */
function socketFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === 'number' && Number.isInteger(fd) && fd >= 0 ? fd : undefined;
}

class LinuxSockOpts implements SockOpts {
  readonly available = true;
  readonly reason = undefined;
  // Reused across calls: the calls are synchronous, and the scheduler may poll often.
  private readonly infoBuf = Buffer.alloc(TCP_INFO_BUF);
  private readonly lenBuf = Buffer.alloc(4);
  private readonly intBuf = Buffer.alloc(4);
  private readonly addrBuf = Buffer.alloc(28); // sockaddr_in6, the larger of the two

  constructor(
    private readonly libc: Libc,
    private readonly clock: Clock,
  ) {}

  tcpInfo(socket: net.Socket): TcpInfo | undefined {
    const fd = socketFd(socket);
    if (fd === undefined) return undefined;
    const b = this.infoBuf;
    b.fill(0);
    this.lenBuf.writeUInt32LE(TCP_INFO_BUF); // both supported architectures are little-endian
    if (this.libc.getsockopt(fd, IPPROTO_TCP, TCP_INFO, b, this.lenBuf) !== 0) return undefined;
    const len = Math.min(this.lenBuf.readUInt32LE(0), TCP_INFO_BUF);
    b.fill(0, len); // a shorter (older) struct: the fields it lacks read as 0
    const u32 = (off: number): number => b.readUInt32LE(off);
    const u64 = (off: number): number => {
      const v = b.readBigUInt64LE(off);
      return v === 0xffff_ffff_ffff_ffffn ? Number.POSITIVE_INFINITY : Number(v);
    };
    return {
      state: b.readUInt8(OFF.state),
      caState: b.readUInt8(OFF.caState),
      retransmits: b.readUInt8(OFF.retransmits),
      rttUs: u32(OFF.rtt),
      rttVarUs: u32(OFF.rttVar),
      minRttUs: u32(OFF.minRtt),
      sndCwnd: u32(OFF.sndCwnd),
      sndMss: u32(OFF.sndMss),
      unacked: u32(OFF.unacked),
      lost: u32(OFF.lost),
      retrans: u32(OFF.retrans),
      totalRetrans: u32(OFF.totalRetrans),
      notsentBytes: u32(OFF.notsentBytes),
      deliveryRateBytesPerSec: u64(OFF.deliveryRate),
      pacingRateBytesPerSec: u64(OFF.pacingRate),
      bytesAcked: u64(OFF.bytesAcked),
      bytesSent: u64(OFF.bytesSent),
      busyTimeUs: u64(OFF.busyTime),
      rwndLimitedUs: u64(OFF.rwndLimited),
      sndbufLimitedUs: u64(OFF.sndbufLimited),
    };
  }

  setNotsentLowat(socket: net.Socket, bytes: number): boolean {
    if (!Number.isInteger(bytes) || bytes < 0 || bytes > 0x7fff_ffff) return false; // the kernel reads an int
    const fd = socketFd(socket);
    if (fd === undefined) return false;
    this.intBuf.writeInt32LE(bytes);
    return this.libc.setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, this.intBuf, 4) === 0;
  }

  async connectBound(opts: ConnectBoundOptions): Promise<net.Socket> {
    const { host, port, device } = opts;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const where = `${host.includes(':') ? `[${host}]` : host}:${port} via ${device}`;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new SockOptError('EINVAL', 'connect', `invalid port ${port} for ${where}`);
    }
    const target = this.sockaddr(host, port, 'connect', where);
    const local = opts.localAddress === undefined ? undefined : this.sockaddr(opts.localAddress, 0, 'bind', where);
    if (local && local.family !== target.family) {
      throw new SockOptError('EINVAL', 'bind', `localAddress ${opts.localAddress} is not the same IP family as ${host}`);
    }

    const libc = this.libc;
    const fd = libc.socket(target.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) throw this.errnoError(libc.errno(), 'socket', where);
    let owned = true; // until net.Socket takes the descriptor over
    try {
      const dev = Buffer.from(`${device}\0`);
      if (libc.setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, dev, dev.length) !== 0) {
        throw this.deviceError(libc.errno(), device);
      }
      if (local && libc.bind(fd, local.addr, local.addr.length) !== 0) {
        throw this.errnoError(libc.errno(), 'bind', `${opts.localAddress} (${where})`);
      }
      if (libc.connect(fd, target.addr, target.addr.length) !== 0) {
        const errno = libc.errno();
        if (errno !== os.constants.errno.EINPROGRESS) throw this.errnoError(errno, 'connect', where);
        await this.awaitWritable(fd, timeoutMs, where);
      }
      const soError = this.intOption(fd, SOL_SOCKET, SO_ERROR);
      if (soError !== 0) throw this.errnoError(soError, 'connect', where);
      const socket = new net.Socket({ fd, readable: true, writable: true });
      owned = false;
      return socket;
    } finally {
      if (owned) libc.close(fd);
    }
  }

  // ---------------------------------------------- transparent proxying (--redirect / --tproxy)

  originalDst(socket: net.Socket): OriginalDst {
    const fd = socketFd(socket);
    if (fd === undefined) return { ok: false, reason: 'the connection is already closed' };
    // An IPv4 connection (also one on a dual-stack listener, as ::ffff:a.b.c.d) asks SOL_IP.
    const local = socket.localAddress ?? '';
    const v6 = net.isIPv6(local) && !local.toLowerCase().startsWith('::ffff:');
    const b = this.addrBuf;
    b.fill(0);
    this.lenBuf.writeUInt32LE(v6 ? 28 : 16);
    if (this.libc.getsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, SO_ORIGINAL_DST, b, this.lenBuf) !== 0) {
      const code = errnoName(this.libc.errno());
      // ENOENT: conntrack knows no such connection; ENOPROTOOPT: conntrack is not loaded.
      const why = code === 'ENOENT' || code === 'ENOPROTOOPT' ? 'it was not redirected by the firewall (no NAT entry)' : 'the kernel refused';
      return { ok: false, reason: `no original destination: ${why} (getsockopt SO_ORIGINAL_DST: ${code})` };
    }
    return parseSockaddr(b, Math.min(this.lenBuf.readUInt32LE(0), b.length));
  }

  listenTransparent(host: string, port: number): number {
    const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new SockOptError('EINVAL', 'bind', `invalid port ${port} for ${where}`);
    const at = this.sockaddr(host, port, 'bind', where);
    const libc = this.libc;
    const fd = libc.socket(at.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
    if (fd < 0) throw this.errnoError(libc.errno(), 'socket', where);
    let owned = true; // until the caller takes the descriptor
    try {
      this.intBuf.writeInt32LE(1);
      if (libc.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, this.intBuf, 4) !== 0) throw this.errnoError(libc.errno(), 'setsockopt', where);
      const v6 = at.family === AF_INET6;
      if (libc.setsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, this.intBuf, 4) !== 0) {
        const errno = libc.errno();
        const code = errnoName(errno);
        const msg =
          code === 'EPERM' || code === 'EACCES'
            ? `a TPROXY listener (--tproxy) needs root or CAP_NET_ADMIN (setsockopt IP_TRANSPARENT: ${code})`
            : `setsockopt IP_TRANSPARENT on ${where} failed: ${code}`;
        throw new SockOptError(code, 'setsockopt', msg, errno);
      }
      if (libc.bind(fd, at.addr, at.addr.length) !== 0) throw this.errnoError(libc.errno(), 'bind', where);
      if (libc.listen(fd, LISTEN_BACKLOG) !== 0) throw this.errnoError(libc.errno(), 'listen', where);
      owned = false;
      return fd;
    } finally {
      if (owned) libc.close(fd);
    }
  }

  // ------------------------------------------------------------------------------------------

  /** Wait for the non-blocking connect to finish (writable or error), or time out. */
  private async awaitWritable(fd: number, timeoutMs: number, where: string): Promise<void> {
    const pollfd = Buffer.alloc(8); // struct pollfd { int fd; short events; short revents; }
    pollfd.writeInt32LE(fd, 0);
    pollfd.writeInt16LE(POLLOUT, 4);
    const deadline = this.clock.now() + timeoutMs;
    for (;;) {
      const left = deadline - this.clock.now();
      if (left <= 0) {
        throw new SockOptError('ETIMEDOUT', 'connect', `connect ETIMEDOUT ${where} after ${timeoutMs} ms`, os.constants.errno.ETIMEDOUT);
      }
      pollfd.writeInt16LE(0, 6);
      // The clock is read between slices, so the deadline is never more than a slice late;
      // poll takes whole ms. -1 can only be EINTR here (the fd is ours and valid): poll again.
      if ((await this.libc.pollAsync(pollfd, 1, Math.ceil(Math.min(left, POLL_SLICE_MS)))) > 0) return;
    }
  }

  private intOption(fd: number, level: number, name: number): number {
    const value = Buffer.alloc(4);
    const len = Buffer.alloc(4);
    len.writeUInt32LE(4);
    if (this.libc.getsockopt(fd, level, name, value, len) !== 0) return this.libc.errno();
    return value.readInt32LE(0);
  }

  private sockaddr(ip: string, port: number, syscall: string, where: string): { family: number; addr: Buffer } {
    const zoneAt = ip.indexOf('%');
    const bare = zoneAt < 0 ? ip : ip.slice(0, zoneAt);
    const kind = net.isIP(bare);
    if (kind === 4) {
      // struct sockaddr_in: family (host order), port (network order), 4-byte address, 8 zero bytes
      const addr = Buffer.alloc(16);
      addr.writeUInt16LE(AF_INET, 0);
      addr.writeUInt16BE(port, 2);
      if (zoneAt >= 0 || this.libc.inetPton(AF_INET, bare, addr.subarray(4, 8)) !== 1) {
        throw new SockOptError('EINVAL', syscall, `not an IPv4 literal: ${ip} (${where})`);
      }
      return { family: AF_INET, addr };
    }
    if (kind === 6) {
      // struct sockaddr_in6: family, port (network order), flowinfo, 16-byte address, scope id
      const addr = Buffer.alloc(28);
      addr.writeUInt16LE(AF_INET6, 0);
      addr.writeUInt16BE(port, 2);
      if (this.libc.inetPton(AF_INET6, bare, addr.subarray(8, 24)) !== 1) {
        throw new SockOptError('EINVAL', syscall, `not an IPv6 literal: ${ip} (${where})`);
      }
      if (zoneAt >= 0) {
        const zone = ip.slice(zoneAt + 1);
        const scope = /^\d+$/.test(zone) ? Number(zone) : this.libc.ifNameToIndex(zone);
        if (!scope) throw new SockOptError('ENODEV', syscall, `no such network interface '${zone}' in ${ip}`);
        addr.writeUInt32LE(scope, 24);
      }
      return { family: AF_INET6, addr };
    }
    throw new SockOptError('EINVAL', syscall, `not an IP literal: ${ip} (resolve names before connectBound)`);
  }

  private deviceError(errno: number, device: string): SockOptError {
    const code = errnoName(errno);
    if (code === 'EPERM' || code === 'EACCES') {
      return new SockOptError(
        code,
        'setsockopt',
        `binding to interface '${device}' (--via) needs root or CAP_NET_RAW (setsockopt SO_BINDTODEVICE: ${code})`,
        errno,
      );
    }
    if (code === 'ENODEV') {
      return new SockOptError(code, 'setsockopt', `no such network interface '${device}' (setsockopt SO_BINDTODEVICE: ENODEV)`, errno);
    }
    return new SockOptError(code, 'setsockopt', `setsockopt SO_BINDTODEVICE '${device}' failed: ${code}`, errno);
  }

  private errnoError(errno: number, syscall: string, where: string): SockOptError {
    const code = errnoName(errno);
    return new SockOptError(code, syscall, `${syscall} ${code} ${where}`, errno);
  }
}

/** struct sockaddr_in / sockaddr_in6 as the kernel wrote it (`len` bytes) -> an address and port. */
export function parseSockaddr(b: Buffer, len: number): OriginalDst {
  const family = len >= 2 ? b.readUInt16LE(0) : -1;
  if (family === AF_INET && len >= 8) {
    return { ok: true, host: `${b[4]}.${b[5]}.${b[6]}.${b[7]}`, port: b.readUInt16BE(2) };
  }
  if (family === AF_INET6 && len >= 24) {
    const groups: string[] = [];
    for (let i = 8; i < 24; i += 2) groups.push(b.readUInt16BE(i).toString(16));
    // The URL parser writes IPv6 in its shortest form (RFC 5952), as Node's socket addresses are.
    const host = new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
    return { ok: true, host, port: b.readUInt16BE(2) };
  }
  return { ok: false, reason: `no original destination: the kernel returned address family ${family} (${len} bytes)` };
}

function errnoName(errno: number): string {
  try {
    const name = util.getSystemErrorName(-errno); // libuv's names are the errno names on Linux
    if (/^E[A-Z0-9]+$/.test(name)) return name;
  } catch {
    // not a known errno: fall through
  }
  return `ERRNO_${errno}`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] ?? e.message : String(e);
}
