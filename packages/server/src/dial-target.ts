import type * as dns from 'node:dns';
import { lookup as dnsLookup } from 'node:dns';
import * as net from 'node:net';
import { domainToASCII } from 'node:url';
import { realClock, ResetCode, type Clock, type Timer } from '@plait/core';
import { noteSlabReads, resetCodeForErrno, slabOnread } from '@plait/node';
import type { EgressPolicy } from './egress-policy.js';

/** A failed egress connection, with the RESET code to send back on the stream. */
export class EgressError extends Error {
  constructor(
    readonly code: ResetCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'EgressError';
  }
}

/** The `dns.lookup` call shape used here; `dns.lookup` itself fits. */
export type LookupFn = (
  hostname: string,
  options: dns.LookupAllOptions,
  callback: (err: NodeJS.ErrnoException | null, addresses: dns.LookupAddress[]) => void,
) => void;

export interface DialTargetOptions {
  /** Whole dial budget, DNS included (default 10 s). */
  timeoutMs?: number;
  /** Resolver (default `dns.lookup`); injectable for tests. */
  lookup?: LookupFn;
  /** Head start of each connection attempt over the next (RFC 8305 "Connection Attempt Delay", default 250 ms). */
  attemptDelayMs?: number;
  /** Times the dial budget and the attempt delay (default: the real clock); tests drive a virtual one. */
  clock?: Clock;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_ATTEMPT_DELAY_MS = 250;
/** Finds dead targets within minutes instead of the OS default of about 2 h. */
const KEEPALIVE_DELAY_MS = 60_000;


/** When every attempt failed, report the most telling failure: the host answering beats silence beats no route. */
const CODE_RANK: ResetCode[] = [
  ResetCode.REFUSED,
  ResetCode.TIMEOUT,
  ResetCode.HOST_UNREACHABLE,
  ResetCode.NETWORK_UNREACHABLE,
];

function errnoOf(err: unknown): string {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : '';
}

/** Re-exported: the errno table lives in @plait/node, shared with the client's published ports. */
export { resetCodeForErrno };

interface Candidate {
  address: string;
  family: 4 | 6;
}

/**
 * Orders addresses as RFC 8305 section 4 asks: alternate families, starting
 * with the family the resolver put first (its order already reflects the
 * system's address preferences).
 */
export function interleave(addrs: Candidate[]): Candidate[] {
  const first = addrs[0]?.family;
  const a = addrs.filter((x) => x.family === first);
  const b = addrs.filter((x) => x.family !== first);
  const out: Candidate[] = [];
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x) out.push(x);
    if (y) out.push(y);
  }
  return out;
}

function resolve(lookup: LookupFn, host: string): Promise<Candidate[]> {
  return new Promise((ok, fail) => {
    lookup(host, { all: true, family: 0 }, (err, addresses) => {
      if (err) {
        fail(new EgressError(ResetCode.DNS_FAILED, `cannot resolve ${host}: ${err.code ?? err.message}`, { cause: err }));
        return;
      }
      const seen = new Set<string>();
      const out: Candidate[] = [];
      for (const a of addresses) {
        if (seen.has(a.address)) continue;
        seen.add(a.address);
        const family = net.isIP(a.address);
        if (family === 4 || family === 6) out.push({ address: a.address, family });
      }
      if (out.length === 0) fail(new EgressError(ResetCode.DNS_FAILED, `${host} has no addresses`));
      else ok(out);
    });
  });
}

/** Runs connection attempts staggered by `delayMs`; the first to connect wins and the rest are destroyed. */
function race(
  cands: Candidate[],
  port: number,
  delayMs: number,
  clock: Clock,
  signal: AbortSignal,
  label: string,
): Promise<net.Socket> {
  return new Promise((resolvePromise, rejectPromise) => {
    const live = new Set<net.Socket>();
    const failures: { address: string; code: ResetCode; errno: string }[] = [];
    let next = 0;
    let timer: Timer | undefined;
    let settled = false;

    const settle = (): void => {
      settled = true;
      timer?.cancel();
      signal.removeEventListener('abort', onAbort);
      for (const s of live) s.destroy();
      live.clear();
    };
    const onAbort = (): void => {
      if (settled) return;
      settle();
      rejectPromise(new EgressError(ResetCode.TIMEOUT, `connecting to ${label} timed out`));
    };
    const giveUp = (): void => {
      settle();
      const best = CODE_RANK.find((c) => failures.some((f) => f.code === c)) ?? ResetCode.INTERNAL;
      const detail = failures.map((f) => `${f.address}: ${f.errno || 'error'}`).join(', ');
      rejectPromise(new EgressError(best, `cannot connect to ${label} (${detail})`));
    };

    const attempt = (): void => {
      timer?.cancel();
      timer = undefined;
      const c = cands[next++];
      if (!c) {
        if (live.size === 0) giveUp();
        return;
      }
      // Half-open allowed: a target's FIN must not end the client's direction too.
      // onread: reads into 1 MiB slabs, not a fresh 64 KiB buffer each (less GC).
      // writableHighWaterMark (passed on to the Duplex; @types/node omits it):
      // a record's frames fit, so pipeBoth's per-tick cork batches them.
      const onread = slabOnread(() => s);
      const opts: net.TcpNetConnectOpts & { writableHighWaterMark: number } = {
        host: c.address,
        port,
        family: c.family,
        allowHalfOpen: true,
        onread,
        writableHighWaterMark: 256 * 1024,
      };
      const s: net.Socket = net.connect(opts);
      noteSlabReads(s, onread);
      live.add(s);
      const onError = (err: Error): void => {
        live.delete(s);
        s.destroy();
        if (settled) return;
        const errno = errnoOf(err);
        failures.push({ address: c.address, code: resetCodeForErrno(errno), errno });
        // A failed attempt hands over at once instead of waiting out the delay (RFC 8305 section 5).
        attempt();
      };
      s.on('error', onError);
      s.once('connect', () => {
        if (settled) return;
        live.delete(s);
        s.off('error', onError);
        settle();
        resolvePromise(s);
      });
      if (next < cands.length) timer = clock.setTimeout(attempt, delayMs);
    };

    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort);
    attempt();
  });
}

function abortable<T>(p: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  return new Promise<T>((ok, fail) => {
    if (signal.aborted) {
      fail(onAbort());
      return;
    }
    const listener = (): void => fail(onAbort());
    signal.addEventListener('abort', listener, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', listener);
        ok(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', listener);
        fail(e);
      },
    );
  });
}

/**
 * Connects to a stream's target on behalf of a client: resolves a name
 * (both families), drops the addresses the policy denies, and connects to
 * the rest with happy eyeballs. Only checked addresses are ever connected to,
 * so a name cannot be re-resolved to something else in between. Rejects with
 * an `EgressError`.
 */
export async function dialTarget(
  target: { host: string; port: number },
  policy: EgressPolicy,
  opts: DialTargetOptions = {},
): Promise<net.Socket> {
  const { port } = target;
  let host = target.host;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const label = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new EgressError(ResetCode.NOT_ALLOWED, `invalid port in ${label}`);
  }

  const clock = opts.clock ?? realClock;
  const controller = new AbortController();
  const timer = clock.setTimeout(() => controller.abort(), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  try {
    let candidates: Candidate[];
    const literal = net.isIP(host);
    // WHATWG host parsing also turns "127.1" or "0x7f.1" into dotted quads, as getaddrinfo would.
    const ascii = literal ? host : domainToASCII(host);
    const family = literal || net.isIP(ascii);
    if (family === 4 || family === 6) {
      const verdict = policy.check(ascii);
      if (!verdict.ok) throw new EgressError(ResetCode.NOT_ALLOWED, `${label} not allowed: ${verdict.reason}`);
      candidates = [{ address: ascii, family }];
    } else {
      if (ascii === '' || ascii.length > 254) {
        throw new EgressError(ResetCode.DNS_FAILED, `invalid host name "${host}"`);
      }
      const found = await abortable(
        resolve(opts.lookup ?? dnsLookup, ascii),
        controller.signal,
        () => new EgressError(ResetCode.TIMEOUT, `resolving ${host} timed out`),
      );
      const reasons: string[] = [];
      const allowed = found.filter((c) => {
        const v = policy.check(c.address);
        if (!v.ok) reasons.push(v.reason);
        return v.ok;
      });
      if (allowed.length === 0) {
        throw new EgressError(ResetCode.NOT_ALLOWED, `${label} not allowed: ${reasons.join('; ')}`);
      }
      candidates = interleave(allowed);
    }
    const delayMs = opts.attemptDelayMs ?? DEFAULT_ATTEMPT_DELAY_MS;
    const socket = await race(candidates, port, delayMs, clock, controller.signal, label);
    socket.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    return socket;
  } finally {
    timer.cancel();
  }
}
