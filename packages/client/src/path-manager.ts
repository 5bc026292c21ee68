import * as os from 'node:os';
import { isIP } from 'node:net';

/** A local source for subflows: an address, or "the default route". */
export interface LocalSource {
  /** Source address to bind, or undefined for the OS's choice. */
  address: string | undefined;
  backup: boolean;
  /** Where it came from, for logs: `--bind`, `--via eth0`, `default`. */
  origin: string;
  /** Interface to bind to (SO_BINDTODEVICE) for `--via` / `--backup IFACE` sources. */
  device?: string;
}

export interface RemoteAddr {
  host: string;
  port: number;
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
}

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
  const isBackupName = (x: string): boolean => opts.backups.includes(x);
  const add = (address: string, origin: string, backup: boolean, device?: string): void => {
    const prev = out.get(address);
    if (prev) {
      prev.backup ||= backup;
      prev.device ??= device;
    } else out.set(address, { address, origin, backup, ...(device ? { device } : {}) });
  };
  for (const b of opts.binds) add(b, '--bind', isBackupName(b));
  for (const iface of opts.vias) for (const a of interfaceAddresses(iface, ifaces)) add(a, `--via ${iface}`, isBackupName(iface) || isBackupName(a), iface);
  for (const b of opts.backups) {
    if (isIP(b)) add(b, '--backup', true);
    else for (const a of interfaceAddresses(b, ifaces)) add(a, `--backup ${b}`, true, b);
  }
  if (out.size === 0 && opts.vias.length === 0) return [{ address: undefined, backup: false, origin: 'default route' }];
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
      paths.push({ key: `${local.address ?? '*'}>${remote.host}:${remote.port}`, local, remote });
    }
  }
  return paths;
}

/** Exponential backoff with full jitter: the n-th retry waits in [base*2^n/2, base*2^n], capped. */
export function backoffMs(attempt: number, baseMs = 250, maxMs = 15_000, random = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}
