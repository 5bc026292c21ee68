import type * as net from 'node:net';
import { networkInterfaces } from 'node:os';
import { deriveSecretKeys } from '@plait/core';
import { listenForward, listenHttpConnect, listenSocks5, parseForwardSpec, PlaitClient } from '@plait/client';
import {
  isLoopbackHost,
  listenFor,
  parseAddress,
  parseBackup,
  parseHostPort,
  parseInterfaceName,
  parseLogLevel,
  parseScheduler,
  resolveProxyAuth,
  resolveSecret,
  sourceWarnings,
  UsageError,
} from './args.js';
import { parseClientCipher } from './cipher-flag.js';
import { makeLogger } from './log.js';
import { startStatsServer } from './stats.js';

export interface ClientFlags {
  server: string[];
  secret?: string;
  secretFile?: string;
  bind: string[];
  via: string[];
  backup: string[];
  socks?: string;
  proxyAuth?: string;
  socksAuth?: string;
  proxyAuthFile?: string;
  http?: string;
  forward: string[];
  stats?: string;
  scheduler: string;
  cipher: string;
  logLevel: string;
}

const addrText = (a: net.AddressInfo): string => (a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);

export async function runClient(flags: ClientFlags): Promise<PlaitClient> {
  // Every flag is checked before anything listens or logs, so a mistake costs one line and exit 2.
  const logLevel = parseLogLevel(flags.logLevel);
  if (flags.server.length === 0) throw new UsageError('--server: at least one plait server address is required');
  const servers = flags.server.map((s) => parseHostPort('--server', s, { connect: true }));
  const { secret, warnings } = resolveSecret(flags);
  const binds = flags.bind.map((b) => parseAddress('--bind', b));
  const vias = flags.via.map((v) => parseInterfaceName('--via', v));
  const backups = flags.backup.map(parseBackup);
  const scheduler = parseScheduler(flags.scheduler);
  const cipher = parseClientCipher(flags.cipher);
  const socks = flags.socks ? parseHostPort('--socks', flags.socks) : undefined;
  const http = flags.http ? parseHostPort('--http', flags.http) : undefined;
  const stats = flags.stats ? parseHostPort('--stats', flags.stats) : undefined;
  const proxyAuth = resolveProxyAuth(flags);
  warnings.push(...proxyAuth.warnings);
  const auth = proxyAuth.auth;
  const forwards = flags.forward.map((f) => {
    try {
      return parseForwardSpec(f);
    } catch (e) {
      throw new UsageError(`--forward: ${e instanceof Error ? e.message : String(e)}`);
    }
  });
  if (!socks && !http && forwards.length === 0) throw new UsageError('--socks: give at least one of --socks, --http or --forward');
  warnings.push(...sourceWarnings({ binds, vias, backups }, networkInterfaces()));
  // Anyone who can reach a non-loopback proxy or forward can use the session (and the server's egress).
  for (const [flag, at] of [
    ['--socks', socks],
    ['--http', http],
  ] as const) {
    if (at && !auth && !isLoopbackHost(at.host)) {
      warnings.push(`${flag}: listening on ${at.host} without credentials lets anyone who can reach it use the proxy; set --proxy-auth-file or PLAIT_PROXY_AUTH`);
    }
  }
  for (const f of forwards) {
    if (!isLoopbackHost(f.listenHost)) {
      warnings.push(`--forward: ${f.listenHost}:${f.listenPort} is not a loopback address, and forwards have no authentication: anyone who can reach it gets to ${f.target.host}:${f.target.port}`);
    }
  }

  const log = makeLogger(logLevel);
  for (const w of warnings) log.warn({}, w);
  const client = new PlaitClient({
    servers,
    secretKeys: deriveSecretKeys(secret),
    sources: { binds, vias, backups },
    scheduler,
    cipher: cipher.cipher,
    log,
  });
  // Bind everything first and announce after, so a busy port fails with its one line only.
  const listeners: net.Server[] = [];
  const announce: (() => void)[] = [];
  announce.push(() => log.info({ cipher: cipher.cipher }, `record cipher ${cipher.cipher}: ${cipher.reason}`));
  if (socks) {
    const l = await listenFor('--socks', socks, () => listenSocks5(socks.host, socks.port, auth ? { auth } : {}, client.dial));
    listeners.push(l);
    announce.push(() => log.info({ socks: addrText(l.address() as net.AddressInfo), auth: auth !== undefined }, 'SOCKS5 proxy listening'));
  }
  if (http) {
    const l = await listenFor('--http', http, () => listenHttpConnect(http.host, http.port, client.dial, auth ? { auth } : {}));
    listeners.push(l);
    announce.push(() => log.info({ http: addrText(l.address() as net.AddressInfo), auth: auth !== undefined }, 'HTTP CONNECT proxy listening'));
  }
  for (const f of forwards) {
    const l = await listenFor('--forward', { host: f.listenHost, port: f.listenPort }, () => listenForward(f, client.dial));
    listeners.push(l);
    announce.push(() => log.info({ listen: addrText(l.address() as net.AddressInfo), target: `${f.target.host}:${f.target.port}` }, 'port forward listening'));
  }
  const started = Date.now();
  if (stats) {
    const l = await listenFor('--stats', stats, () =>
      startStatsServer(stats.host, stats.port, () => {
        const st = client.stats();
        return {
          role: 'client',
          uptimeSeconds: Math.round((Date.now() - started) / 1000),
          sessions: st.session ? [st.session] : [],
          counters: { ...client.counters },
          paths: st.paths,
        };
      }),
    );
    listeners.push(l);
    announce.push(() => log.info({ stats: addrText(l.address() as net.AddressInfo) }, 'stats at /stats and /metrics'));
  }
  for (const a of announce) a();
  try {
    await client.start();
  } catch (e) {
    log.fatal({}, e instanceof Error ? e.message : String(e));
    process.stderr.write(`plait: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
  const stop = (): void => {
    client.close();
    for (const l of listeners) l.close();
    setTimeout(() => process.exit(0), 300).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return client;
}
