import { closeSync, fstatSync, openSync } from 'node:fs';
import { readOpenFile } from '@plait/node';
import { isIP } from 'node:net';
import { isSubflowRole, MIN_SECRET_BYTES, schedulerNames, SUBFLOW_ROLES, type SubflowRole } from '@plait/core';

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

export interface HostPortOptions {
  /** Host for a bare PORT or :PORT (default 127.0.0.1). */
  defaultHost?: string;
  /** An address to connect to: port 0 (any free port) makes no sense there. */
  connect?: boolean;
}

/** HOST:PORT, [IPv6]:PORT, or :PORT / PORT (host defaults to `defaultHost`). */
export function parseHostPort(flag: string, value: string, opts: HostPortOptions = {}): HostPort {
  const defaultHost = opts.defaultHost ?? '127.0.0.1';
  let host: string;
  let portStr: string;
  const bracket = /^\[([^\]]+)\]:([^:]*)$/.exec(value);
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
    if (!/^[A-Za-z0-9.\-_]+$/.test(host)) throw new UsageError(`${flag}: "${host}" is not a host name or address`);
  }
  const min = opts.connect ? 1 : 0;
  const port = /^\d{1,5}$/.test(portStr) ? Number(portStr) : NaN;
  if (!(port >= min && port <= 65535)) throw new UsageError(`${flag}: port must be ${min}-65535, got "${portStr}"`);
  return { host, port };
}

export function parseAddress(flag: string, value: string): string {
  if (isIP(value) === 0) throw new UsageError(`${flag}: "${value}" is not an IP address`);
  return value;
}

/** A positive integer no larger than `max` (digits only: no signs, exponents or hex). */
export function parseCount(flag: string, value: string, max: number): number {
  const n = /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= max)) throw new UsageError(`${flag}: expected a whole number from 1 to ${max}, got "${value}"`);
  return n;
}

/** Longest timer Node can hold: a larger setTimeout overflows and fires after 1 ms. */
const MAX_TIMER_SECONDS = Math.floor((2 ** 31 - 1) / 1000);

/** Whole seconds for a timer (--interval, --duration). */
export function parseSeconds(flag: string, value: string): number {
  const n = /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!(n >= 1 && n <= MAX_TIMER_SECONDS)) throw new UsageError(`${flag}: expected whole seconds from 1 to ${MAX_TIMER_SECONDS}, got "${value}"`);
  return n;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Checked here because pino throws its own internal message on an unknown level. */
export function parseLogLevel(value: string): string {
  if (!(LOG_LEVELS as readonly string[]).includes(value)) {
    throw new UsageError(`--log-level: "${value}" is not a level; use ${LOG_LEVELS.slice(0, -1).join(', ')} or ${LOG_LEVELS.at(-1)}`);
  }
  return value;
}

export function parseScheduler(value: string): string {
  if (!schedulerNames.includes(value)) {
    throw new UsageError(`--scheduler: "${value}" is not a scheduler; use ${schedulerNames.slice(0, -1).join(', ')} or ${schedulerNames.at(-1)}`);
  }
  return value;
}

/** Most ports --latency-ports takes (what one `sched` message carries, PROTOCOL.md 6.6). */
export const LATENCY_PORTS_MAX = 64;

/** --latency-ports: a comma list of TCP ports (1-65535), or `none`. */
export function parseLatencyPorts(value: string): number[] {
  const v = value.trim();
  if (v === 'none' || v === '') return [];
  const ports = v.split(',').map((p) => p.trim());
  if (ports.length > LATENCY_PORTS_MAX) throw new UsageError(`--latency-ports: at most ${LATENCY_PORTS_MAX} ports, got ${ports.length}`);
  return [...new Set(ports.map((p) => {
    const n = /^\d{1,5}$/.test(p) ? Number(p) : NaN;
    if (!(n >= 1 && n <= 65535)) throw new UsageError(`--latency-ports: "${p}" is not a port (1-65535); give a comma list like 22,3389,5060 or none`);
    return n;
  }))];
}

/** Linux's rules for an interface name (dev_valid_name): 1-15 bytes, no '/', ':' or whitespace, not . or .. */
export function parseInterfaceName(flag: string, value: string): string {
  if (value === '' || value === '.' || value === '..' || Buffer.byteLength(value) > 15 || /[/:\s]/.test(value)) {
    throw new UsageError(`${flag}: "${value}" is not an interface name (1-15 characters without "/", ":" or spaces)`);
  }
  return value;
}

/** --backup takes a local address or an interface name. */
export function parseBackup(value: string): string {
  return isIP(value) !== 0 ? value : parseInterfaceName('--backup', value);
}

/** --overflow, like --backup: a local address or an interface name, not also given to --backup. */
export function parseOverflow(value: string, backups: readonly string[]): string {
  const v = isIP(value) !== 0 ? value : parseInterfaceName('--overflow', value);
  if (backups.includes(v)) throw new UsageError(`--overflow: ${v} is also given to --backup; a path has one role`);
  return v;
}

/** A link role, as --overflow/--backup and `plait role` name them. */
export function parseRole(flag: string, value: string): SubflowRole {
  if (!isSubflowRole(value)) throw new UsageError(`${flag}: "${value}" is not a role; use ${SUBFLOW_ROLES.slice(0, -1).join(', ')} or ${SUBFLOW_ROLES.at(-1)}`);
  return value;
}

/** Whether a listen host keeps a socket on this machine (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === 'localhost.') return true;
  if (h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

/**
 * Warnings for subflow sources this machine does not have right now. Not
 * errors: an LTE stick or a DHCP lease may bring them later, and the client
 * keeps trying.
 */
export function sourceWarnings(
  sources: { binds: string[]; vias: string[]; backups: string[]; overflows?: string[] },
  interfaces: NodeJS.Dict<{ address: string }[]>,
): string[] {
  const names = new Set(Object.keys(interfaces));
  const addrs = new Set(
    Object.values(interfaces)
      .flatMap((l) => l ?? [])
      .map((a) => a.address.toLowerCase()),
  );
  const out: string[] = [];
  const checkAddr = (flag: string, a: string): void => {
    // All of 127.0.0.0/8 is local (Linux lists only 127.0.0.1 on lo).
    if (!addrs.has(a.toLowerCase()) && !isLoopbackHost(a)) out.push(`${flag}: ${a} is not an address of this machine now; subflows from it fail until it is`);
  };
  const checkIface = (flag: string, n: string): void => {
    if (!names.has(n)) out.push(`${flag}: there is no interface ${n} now; its subflows start when it appears`);
  };
  for (const b of sources.binds) checkAddr('--bind', b);
  for (const v of sources.vias) checkIface('--via', v);
  for (const b of sources.backups) (isIP(b) ? checkAddr : checkIface)('--backup', b);
  for (const b of sources.overflows ?? []) (isIP(b) ? checkAddr : checkIface)('--overflow', b);
  return out;
}

// ------------------------------------------------------------------ secrets

/** A secret or credentials file bigger than this is a wrong path, not a secret. */
const MAX_SECRET_FILE_BYTES = 64 * 1024;

/**
 * Reads a secret file: surrounding whitespace (the trailing newline editors
 * and `plait keygen > F` leave) is trimmed; everything else is kept. Warns
 * when group or others can read the file.
 */
export function readSecretFile(flag: string, file: string, warnings: string[]): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new UsageError(`${flag}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    // fstat on the opened descriptor: the mode checked is the file read, even if the path is swapped.
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UsageError(`${flag}: ${file} is not a regular file`);
    if (st.size > MAX_SECRET_FILE_BYTES) throw new UsageError(`${flag}: ${file} is too large to be a secret (${st.size} bytes)`);
    if (process.platform !== 'win32' && (st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
      warnings.push(`${flag}: ${file} is readable by other users (mode ${mode}); run: chmod 600 ${file}`);
    }
    return readOpenFile(fd, st.size).toString('utf8').trim();
  } finally {
    closeSync(fd);
  }
}

/**
 * Shannon entropy of the string's own characters times its length, capped
 * by the character classes it uses: a rough "apparent entropy" that is low for
 * repeats and short words. It runs a little low for short random strings
 * (a random 32-digit hex secret scores ~125 of its 128 bits).
 */
export function apparentEntropyBits(s: string): number {
  const chars = [...s];
  const n = chars.length;
  if (n === 0) return 0;
  const counts = new Map<string, number>();
  for (const c of chars) counts.set(c, (counts.get(c) ?? 0) + 1);
  let h = 0;
  for (const k of counts.values()) h -= (k / n) * Math.log2(k / n);
  // Miller-Madow correction: the plug-in estimate undercounts unseen symbols.
  if (counts.size > 1) h += (counts.size - 1) / (2 * n * Math.LN2);
  let pool = 0;
  if (/[a-z]/.test(s)) pool += 26;
  if (/[A-Z]/.test(s)) pool += 26;
  if (/[0-9]/.test(s)) pool += 10;
  if (/[^A-Za-z0-9]/.test(s)) pool += 33;
  if (/^[0-9a-f]+$/i.test(s)) pool = 16;
  return n * Math.min(h, Math.log2(pool));
}

/** Keygen strength: 32 random bytes. Shorter or repetitive secrets get a warning. */
const STRONG_SECRET_BYTES = 32;
/** Below ~128 bits, with room for the estimate running low on random strings. */
const STRONG_SECRET_BITS = 100;

export interface ResolvedSecret {
  secret: string;
  /** One line each, for the log once it exists (never containing the secret). */
  warnings: string[];
}

/** The secret from --secret, --secret-file or PLAIT_SECRET (never logged). */
export function resolveSecret(opts: { secret?: string; secretFile?: string; secretInFile?: string }, env: NodeJS.ProcessEnv = process.env): ResolvedSecret {
  if (opts.secret !== undefined && opts.secretFile !== undefined) throw new UsageError('--secret-file: give either --secret or --secret-file, not both');
  const warnings: string[] = [];
  let secret: string | undefined;
  let flag = '--secret';
  if (opts.secretFile !== undefined) {
    flag = '--secret-file';
    secret = readSecretFile(flag, opts.secretFile, warnings);
  } else if (opts.secret !== undefined) {
    secret = opts.secret;
    // From a config file (`secretInFile`), not argv: that file's mode is checked where it is read.
    if (opts.secretInFile === undefined) warnings.push('--secret is visible to every local user (ps, /proc/PID/cmdline); use --secret-file F (mode 600) or PLAIT_SECRET instead');
  } else if (env.PLAIT_SECRET) {
    secret = env.PLAIT_SECRET;
    flag = 'PLAIT_SECRET';
  }
  if (secret === undefined || secret === '') {
    throw new UsageError('--secret: a secret is required (--secret-file F, PLAIT_SECRET or --secret S); make one with `plait keygen`');
  }
  const bytes = Buffer.byteLength(secret, 'utf8');
  if (bytes < MIN_SECRET_BYTES) {
    throw new UsageError(`${flag}: the secret must be at least ${MIN_SECRET_BYTES} bytes; make one with \`plait keygen\``);
  }
  if (bytes < STRONG_SECRET_BYTES) {
    warnings.push(`${flag}: the secret is only ${bytes} bytes; \`plait keygen\` makes 256-bit secrets (43 characters)`);
  } else {
    const bits = apparentEntropyBits(secret);
    if (bits < STRONG_SECRET_BITS) {
      warnings.push(`${flag}: the secret looks guessable (about ${Math.round(bits)} bits of apparent entropy); \`plait keygen\` makes 256-bit secrets`);
    }
  }
  return { secret, warnings };
}

// -------------------------------------------------------- proxy credentials

export interface ProxyCredentials {
  username: string;
  password: string;
}

export interface ProxyAuthFlags {
  proxyAuth?: string;
  socksAuth?: string;
  proxyAuthFile?: string;
}

/** USER:PASS, split at the first colon (Basic auth cannot carry a colon in the user name). */
function parseCredentials(flag: string, value: string): ProxyCredentials {
  const i = value.indexOf(':');
  if (i < 0) throw new UsageError(`${flag}: expected USER:PASS`);
  const username = value.slice(0, i);
  const password = value.slice(i + 1);
  // RFC 1929 carries each in 1-255 bytes.
  for (const [what, v] of [
    ['user name', username],
    ['password', password],
  ] as const) {
    const n = Buffer.byteLength(v, 'utf8');
    if (n < 1 || n > 255) throw new UsageError(`${flag}: expected USER:PASS with a ${what} of 1-255 bytes`);
  }
  return { username, password };
}

/**
 * Credentials for every local proxy (SOCKS5 and HTTP CONNECT), from
 * --proxy-auth (or its old name --socks-auth), --proxy-auth-file or
 * PLAIT_PROXY_AUTH; undefined when none is given.
 */
export function resolveProxyAuth(flags: ProxyAuthFlags, env: NodeJS.ProcessEnv = process.env): { auth: ProxyCredentials | undefined; warnings: string[] } {
  const given = (['--proxy-auth', '--socks-auth', '--proxy-auth-file'] as const).filter(
    (_, i) => [flags.proxyAuth, flags.socksAuth, flags.proxyAuthFile][i] !== undefined,
  );
  if (given.length > 1) throw new UsageError(`--proxy-auth: give only one of ${given.join(', ')}`);
  const warnings: string[] = [];
  if (flags.proxyAuthFile !== undefined) {
    return { auth: parseCredentials('--proxy-auth-file', readSecretFile('--proxy-auth-file', flags.proxyAuthFile, warnings)), warnings };
  }
  const argv = flags.proxyAuth !== undefined ? (['--proxy-auth', flags.proxyAuth] as const) : flags.socksAuth !== undefined ? (['--socks-auth', flags.socksAuth] as const) : undefined;
  if (argv) {
    const auth = parseCredentials(argv[0], argv[1]);
    warnings.push(`${argv[0]}: the proxy password is visible to every local user (ps); use --proxy-auth-file F (mode 600) or PLAIT_PROXY_AUTH instead`);
    return { auth, warnings };
  }
  if (env.PLAIT_PROXY_AUTH) return { auth: parseCredentials('PLAIT_PROXY_AUTH', env.PLAIT_PROXY_AUTH), warnings };
  return { auth: undefined, warnings };
}

// ---------------------------------------------------------------- listening

/** Turns a listen error into a usage error naming the flag (exit 2). */
export function listenError(flag: string, at: HostPort, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const where = at.host.includes(':') ? `[${at.host}]:${at.port}` : `${at.host}:${at.port}`;
  switch (code) {
    case 'EADDRINUSE':
      return new UsageError(`${flag}: ${where} is already in use`);
    case 'EADDRNOTAVAIL':
      return new UsageError(`${flag}: ${at.host} is not an address of this machine`);
    case 'EACCES':
      return new UsageError(`${flag}: no permission to listen on ${where} (ports below 1024 need root or CAP_NET_BIND_SERVICE)`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new UsageError(`${flag}: cannot resolve "${at.host}"`);
    default:
      return e;
  }
}

/** Runs `listen`, reporting a busy or foreign address as a usage error naming `flag`. */
export async function listenFor<T>(flag: string, at: HostPort, listen: () => Promise<T>): Promise<T> {
  try {
    return await listen();
  } catch (e) {
    throw listenError(flag, at, e);
  }
}

/** Commander's collector for repeatable options. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
