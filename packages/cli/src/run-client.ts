import type * as net from 'node:net';
import { deriveSecretKeys } from '@plait/core';
import { listenForward, listenHttpConnect, listenSocks5, parseForwardSpec, PlaitClient } from '@plait/client';
import { parseAddress, parseHostPort, resolveSecret, UsageError } from './args.js';
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
  socksAuth?: string;
  http?: string;
  forward: string[];
  stats?: string;
  scheduler: string;
  logLevel: string;
}

export async function runClient(flags: ClientFlags): Promise<PlaitClient> {
  if (flags.server.length === 0) throw new UsageError('--server: at least one plait server address is required');
  const servers = flags.server.map((s) => parseHostPort('--server', s));
  const secret = resolveSecret(flags);
  const binds = flags.bind.map((b) => parseAddress('--bind', b));
  const socks = flags.socks ? parseHostPort('--socks', flags.socks) : undefined;
  const http = flags.http ? parseHostPort('--http', flags.http) : undefined;
  const stats = flags.stats ? parseHostPort('--stats', flags.stats) : undefined;
  let auth: { username: string; password: string } | undefined;
  if (flags.socksAuth !== undefined) {
    const i = flags.socksAuth.indexOf(':');
    if (i <= 0) throw new UsageError('--socks-auth: expected USER:PASS');
    auth = { username: flags.socksAuth.slice(0, i), password: flags.socksAuth.slice(i + 1) };
  }
  const forwards = flags.forward.map((f) => {
    try {
      return parseForwardSpec(f);
    } catch (e) {
      throw new UsageError(`--forward: ${e instanceof Error ? e.message : String(e)}`);
    }
  });
  if (!socks && !http && forwards.length === 0) throw new UsageError('--socks: give at least one of --socks, --http or --forward');

  const log = makeLogger(flags.logLevel);
  const client = new PlaitClient({
    servers,
    secretKeys: deriveSecretKeys(secret),
    sources: { binds, vias: flags.via, backups: flags.backup },
    scheduler: flags.scheduler,
    log,
  });
  const listeners: net.Server[] = [];
  if (socks) {
    listeners.push(await listenSocks5(socks.host, socks.port, auth ? { auth } : {}, client.dial));
    log.info({ socks: `${socks.host}:${socks.port}` }, 'SOCKS5 proxy listening');
  }
  if (http) {
    listeners.push(await listenHttpConnect(http.host, http.port, client.dial));
    log.info({ http: `${http.host}:${http.port}` }, 'HTTP CONNECT proxy listening');
  }
  for (const f of forwards) {
    listeners.push(await listenForward(f, client.dial));
    log.info({ listen: `${f.listenHost}:${f.listenPort}`, target: `${f.target.host}:${f.target.port}` }, 'port forward listening');
  }
  const started = Date.now();
  if (stats) {
    await startStatsServer(stats.host, stats.port, () => {
      const st = client.stats();
      return {
        role: 'client',
        uptimeSeconds: Math.round((Date.now() - started) / 1000),
        sessions: st.session ? [st.session] : [],
        counters: { ...client.counters },
        paths: st.paths,
      };
    });
  }
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
