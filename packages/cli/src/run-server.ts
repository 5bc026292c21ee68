import { deriveSecretKeys } from '@plait/core';
import { EgressPolicy, parseCidr, PlaitServer } from '@plait/server';
import { parseHostPort, parsePositiveInt, resolveSecret, UsageError } from './args.js';
import { makeLogger } from './log.js';
import { startStatsServer } from './stats.js';

export interface ServerFlags {
  listen: string;
  secret?: string;
  secretFile?: string;
  stats?: string;
  allowPrivate: boolean;
  allow: string[];
  advertise: string[];
  maxSessions: string;
  logLevel: string;
}

export async function runServer(flags: ServerFlags): Promise<PlaitServer> {
  const listen = parseHostPort('--listen', flags.listen, '0.0.0.0');
  const secret = resolveSecret(flags);
  const stats = flags.stats ? parseHostPort('--stats', flags.stats) : undefined;
  for (const c of flags.allow) {
    try {
      parseCidr(c);
    } catch (e) {
      throw new UsageError(`--allow: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const advertise = flags.advertise.map((a) => parseHostPort('--advertise', a));
  const maxSessions = parsePositiveInt('--max-sessions', flags.maxSessions);
  const log = makeLogger(flags.logLevel);
  const server = new PlaitServer({
    listen,
    secretKeys: deriveSecretKeys(secret),
    policy: new EgressPolicy({ allowPrivate: flags.allowPrivate, allow: flags.allow }),
    maxSessions,
    advertise,
    log,
  });
  const addr = await server.listen();
  log.info({ listen: `${addr.address}:${addr.port}`, allowPrivate: flags.allowPrivate, allow: flags.allow }, 'plait server listening');
  const started = Date.now();
  if (stats) {
    await startStatsServer(stats.host, stats.port, () => ({
      role: 'server',
      uptimeSeconds: Math.round((Date.now() - started) / 1000),
      sessions: server.sessions().map((s) => s.stats()),
      counters: { ...server.counters, ...server.acceptor.counters },
    }));
    log.info({ stats: `${stats.host}:${stats.port}` }, 'stats at /stats and /metrics');
  }
  const stop = (): void => {
    log.info({}, 'shutting down');
    void server.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return server;
}
