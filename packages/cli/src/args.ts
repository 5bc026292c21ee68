import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { MIN_SECRET_BYTES } from '@plait/core';

/** A bad flag or value: printed as one line naming the flag, exit status 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface HostPort {
  host: string;
  port: number;
}

/** HOST:PORT, [IPv6]:PORT, or :PORT / PORT (host defaults to `defaultHost`). */
export function parseHostPort(flag: string, value: string, defaultHost = '127.0.0.1'): HostPort {
  let host: string;
  let portStr: string;
  const bracket = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  if (bracket) {
    host = bracket[1]!;
    portStr = bracket[2]!;
    if (isIP(host) !== 6) throw new UsageError(`${flag}: "${host}" is not an IPv6 address`);
  } else if (/^\d+$/.test(value)) {
    host = defaultHost;
    portStr = value;
  } else {
    const i = value.lastIndexOf(':');
    if (i < 0) throw new UsageError(`${flag}: expected HOST:PORT, got "${value}"`);
    host = value.slice(0, i) || defaultHost;
    portStr = value.slice(i + 1);
    if (host.includes(':')) throw new UsageError(`${flag}: put IPv6 addresses in brackets, like [::1]:1080`);
  }
  const port = Number(portStr);
  if (!/^\d+$/.test(portStr) || port > 65535) throw new UsageError(`${flag}: port must be 0-65535, got "${portStr}"`);
  if (!/^[A-Za-z0-9.\-_:]+$/.test(host)) throw new UsageError(`${flag}: "${host}" is not a host name or address`);
  return { host, port };
}

export function parseAddress(flag: string, value: string): string {
  if (isIP(value) === 0) throw new UsageError(`${flag}: "${value}" is not an IP address`);
  return value;
}

export function parsePositiveInt(flag: string, value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n <= 0 || !Number.isSafeInteger(n)) throw new UsageError(`${flag}: expected a positive integer, got "${value}"`);
  return n;
}

/** The secret from --secret, --secret-file or PLAIT_SECRET (never logged). */
export function resolveSecret(opts: { secret?: string; secretFile?: string }, env = process.env): string {
  if (opts.secret !== undefined && opts.secretFile !== undefined) throw new UsageError('--secret and --secret-file: give only one');
  let secret: string | undefined;
  let flag = '--secret';
  if (opts.secretFile !== undefined) {
    flag = '--secret-file';
    try {
      secret = readFileSync(opts.secretFile, 'utf8').trim();
    } catch (e) {
      throw new UsageError(`--secret-file: cannot read ${opts.secretFile}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  } else if (opts.secret !== undefined) {
    secret = opts.secret;
  } else if (env.PLAIT_SECRET) {
    secret = env.PLAIT_SECRET;
    flag = 'PLAIT_SECRET';
  }
  if (secret === undefined || secret === '') {
    throw new UsageError('--secret: a secret is required (--secret S, --secret-file F or PLAIT_SECRET); make one with `plait keygen`');
  }
  if (Buffer.byteLength(secret, 'utf8') < MIN_SECRET_BYTES) {
    throw new UsageError(`${flag}: the secret must be at least ${MIN_SECRET_BYTES} bytes; make one with \`plait keygen\``);
  }
  return secret;
}

/** Commander's collector for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
