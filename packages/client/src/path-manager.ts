import * as os from 'node:os';
import { isIP } from 'node:net';
import type { SubflowRole } from '@plait/core';

/** A local source for subflows: an address, or "the default route". */
export interface LocalSource {
  /** Source address to bind, or undefined for the OS's choice. */
  address: string | undefined;
  /** From --backup / --overflow (an address or interface named there); else regular. */
  role: SubflowRole;
  /** Where it came from, for logs: `--bind`, `--via eth0`, `default`. */
  origin: string;
  /** Interface to bind to (SO_BINDTODEVICE) for `--via` / `--backup IFACE` sources. */
  device?: string;
}

export interface RemoteAddr {
  host: string;
  port: number;
  /** Set for a WebSocket server (ws://HOST:PORT/PATH or wss://...): subflows dial it, `host` and `port` come from it. */
  url?: string;
  /** 0 for addresses given on the command line; the server's id for ADD_ADDR. */
  id: number;
}

export interface PathSpec {
  key: string;
  local: LocalSource;
  remote: RemoteAddr;
}

export interface SourceOptions {
  binds: string[];
  vias: string[];
  /** Addresses or interface names whose subflows are backups. */
  backups: string[];
  /** Addresses or interface names whose subflows carry only what the regular ones cannot take. */
  overflows?: string[];
}

/** When one address gets two roles (its interface is named for one, the address for another), the more sparing wins. */
const ROLE_RANK: Record<SubflowRole, number> = { regular: 0, overflow: 1, backup: 2 };

type Interfaces = ReturnType<typeof os.networkInterfaces>;

/** Usable addresses of an interface (link-local IPv6 needs a scope; skipped). */
export function interfaceAddresses(name: string, ifaces: Interfaces = os.networkInterfaces()): string[] {
  const list = ifaces[name] ?? [];
  return list.filter((a) => !(a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80'))).map((a) => a.address);
}

/**
 * The local sources the flags ask for, read now. `--via` interfaces are read
 * from os.networkInterfaces() on each call so that changes are followed.
 */
export function localSources(opts: SourceOptions, ifaces: Interfaces = os.networkInterfaces()): LocalSource[] {
  const out = new Map<string, LocalSource>();
  const overflows = opts.overflows ?? [];
  const roleOf = (...names: string[]): SubflowRole =>
    names.some((x) => opts.backups.includes(x)) ? 'backup' : names.some((x) => overflows.includes(x)) ? 'overflow' : 'regular';
  const add = (address: string, origin: string, role: SubflowRole, device?: string): void => {
    const prev = out.get(address);
    if (prev) {
      if (ROLE_RANK[role] > ROLE_RANK[prev.role]) prev.role = role;
      prev.device ??= device;
    } else out.set(address, { address, origin, role, ...(device ? { device } : {}) });
  };
  for (const b of opts.binds) add(b, '--bind', roleOf(b));
  for (const iface of opts.vias) for (const a of interfaceAddresses(iface, ifaces)) add(a, `--via ${iface}`, roleOf(iface, a), iface);
  for (const [flag, list, role] of [
    ['--backup', opts.backups, 'backup'],
    ['--overflow', overflows, 'overflow'],
  ] as const) {
    for (const b of list) {
      if (isIP(b)) add(b, flag, role);
      else for (const a of interfaceAddresses(b, ifaces)) add(a, `${flag} ${b}`, role, b);
    }
  }
  if (out.size === 0 && opts.vias.length === 0) return [{ address: undefined, role: 'regular', origin: 'default route' }];
  return [...out.values()];
}

/** Every local source paired with every server address of a compatible family (fullmesh). */
export function planPaths(sources: LocalSource[], remotes: RemoteAddr[]): PathSpec[] {
  const paths: PathSpec[] = [];
  for (const local of sources) {
    for (const remote of remotes) {
      const lf = local.address ? isIP(local.address) : 0;
      const rf = isIP(remote.host);
      if (lf !== 0 && rf !== 0 && lf !== rf) continue;
      paths.push({ key: `${local.address ?? '*'}>${remote.url ?? `${remote.host}:${remote.port}`}`, local, remote });
    }
  }
  return paths;
}

/** Exponential backoff with full jitter: the n-th retry waits in [base*2^n/2, base*2^n], capped. */
export function backoffMs(attempt: number, baseMs = 250, maxMs = 15_000, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
