import type * as net from 'node:net';
import { deriveSecretKeys } from '@plait/core';
import { loadSockOpts } from '@plait/node';
import { isIP } from 'node:net';
import { EgressPolicy, parseCidr, PlaitServer, resolvConfNameserver, UserDirectory, type ServerUser } from '@plait/server';
import { listenFor, parseCount, parseSeconds, parseHostPort, parseLogLevel, resolveSecret, UsageError } from './args.js';
import { chooseRecordCrypto, parseServerCiphers } from './cipher-flag.js';
import { checkStateDir } from './state-dir-flag.js';
import type { CommandConfig } from './config-file.js';
import { makeLogger } from './log.js';
import { parseAllowPublish, parsePublishBind, parsePublishMaxConns } from './publish-flags.js';
import { loadUsersFile, usersToRevoke, type UsersTable } from './users-file.js';
import { startStatsServer } from './stats.js';
import { listenForAll, listenText, parseListenFlag } from './transport-flags.js';

export interface ServerFlags {
  /** Required (one or more), from the command line or the config file. */
  listen: string[];
  secret?: string;
  secretFile?: string;
  /** Named users (README "Serving several households"). */
  users?: string;
  /** Per-user cap usage kept here across restarts. */
  stateDir?: string;
  stats?: string;
  allowPrivate: boolean;
  allow: string[];
  advertise: string[];
  maxSessions: string;
  maxPending: string;
  maxPendingPerSource: string;
  cipher: string;
  dnsUpstream?: string;
  udpIdleTimeout: string;
  udpDuplicate?: boolean;
  /** Published ports: the anonymous user's ports, where they listen, connections per port. */
  allowPublish: string[];
  publishBind: string;
  publishMaxConns: string;
  instanceId?: string;
  drainGrace: string;
  logLevel: string;
  /** The config file that gave `secret` (then it is not in argv). */
  secretInFile?: string;
}

/** More sessions than this is a typo, not a plan (each holds buffers and subflows). */
const MAX_SESSIONS = 100_000;

/** Every flag checked, nothing started: what runServer needs, and all `plait check-config` does. */
export function checkServerFlags(flags: ServerFlags) {
  const logLevel = parseLogLevel(flags.logLevel);
  if (flags.listen.length === 0) throw new UsageError('--listen: give at least one address to accept subflows on (HOST:PORT or ws://HOST:PORT/PATH)');
  const listen = flags.listen.map(parseListenFlag);
  // With --users the anonymous secret is optional: only when one is given.
  const usersTable = flags.users !== undefined ? loadUsersFile(flags.users) : undefined;
  const anonymous = usersTable === undefined || flags.secret !== undefined || flags.secretFile !== undefined || !!process.env.PLAIT_SECRET;
  const { secret, warnings } = anonymous ? resolveSecret(flags) : { secret: undefined, warnings: [] as string[] };
  if (usersTable) warnings.push(...usersTable.warnings);
  const stats = flags.stats ? parseHostPort('--stats', flags.stats) : undefined;
  for (const c of flags.allow) {
    try {
      parseCidr(c);
    } catch (e) {
      throw new UsageError(`--allow: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  const advertise = flags.advertise.map((a) => parseHostPort('--advertise', a, { connect: true }));
  const maxSessions = parseCount('--max-sessions', flags.maxSessions, MAX_SESSIONS);
  const maxPendingHandshakes = parseCount('--max-pending', flags.maxPending, MAX_SESSIONS);
  const maxPendingPerSource = parseCount('--max-pending-per-source', flags.maxPendingPerSource, MAX_SESSIONS);
  if (maxPendingPerSource > maxPendingHandshakes) throw new UsageError('--max-pending-per-source: may not exceed --max-pending');
  const ciphers = parseServerCiphers(flags.cipher);
  const instanceId = flags.instanceId !== undefined ? parseInstanceId(flags.instanceId) : undefined;
  const drainGraceMs = parseDrainGrace(flags.drainGrace);
  const publish = {
    anonymousPorts: parseAllowPublish(flags.allowPublish ?? []),
    bindHost: parsePublishBind(flags.publishBind ?? '0.0.0.0'),
    maxConnections: parsePublishMaxConns(flags.publishMaxConns ?? '64'),
  };
  if (publish.anonymousPorts.length > 0 && secret === undefined) warnings.push('--allow-publish: applies to the anonymous --secret user, and there is none (named users publish the ports of their users-file publish list)');
  const udpIdleMs = parseSeconds('--udp-idle-timeout', flags.udpIdleTimeout) * 1000;
  let dnsUpstream: { host: string; port: number } | undefined;
  if (flags.dnsUpstream !== undefined) {
    dnsUpstream = parseHostPort('--dns-upstream', flags.dnsUpstream, { connect: true });
    if (!isIP(dnsUpstream.host)) throw new UsageError(`--dns-upstream: "${dnsUpstream.host}" is not an IP address (a resolver cannot be found by name)`);
  } else {
    const ns = resolvConfNameserver();
    if (ns) dnsUpstream = { host: ns, port: 53 };
  }
  return { logLevel, listen, secret, usersTable, warnings, stats, advertise, maxSessions, maxPendingHandshakes, maxPendingPerSource, ciphers, udpIdleMs, dnsUpstream, instanceId, drainGraceMs, publish };
}

export async function runServer(flags: ServerFlags, config?: { file: CommandConfig<ServerFlags>; warnings: string[] }): Promise<PlaitServer> {
  // Every flag is checked before anything listens or logs, so a mistake costs one line and exit 2.
  const { logLevel, listen, secret, usersTable, warnings, stats, advertise, maxSessions, maxPendingHandshakes, maxPendingPerSource, ciphers, udpIdleMs, dnsUpstream, instanceId, drainGraceMs, publish } = checkServerFlags(flags);
  const stateDirWarning = checkStateDir(flags.stateDir);
  if (stateDirWarning) warnings.push(stateDirWarning);
  const log = makeLogger(logLevel);
  // SIGHUP's default action ends the process: take it over before anything
  // listens, so a reload that arrives during start-up is not fatal either.
  const onHangup = { handle: (): void => log.warn('SIGHUP during start-up: ignored') };
  process.on('SIGHUP', () => onHangup.handle());
  for (const w of [...(config?.warnings ?? []), ...warnings]) log.warn({}, w);
  const sockopts = loadSockOpts();
  if (!sockopts.available) {
    log.warn({ reason: sockopts.reason }, 'kernel socket options unavailable: no TCP_NOTSENT_LOWAT (more queueing on slow links), no TCP_INFO in /stats');
  }
  const recordCrypto = chooseRecordCrypto();
  const users = usersTable ? new UserDirectory(usersTable.identity, serverUsers(usersTable)) : undefined;
  const server = new PlaitServer({
    listen,
    ...(secret !== undefined ? { secretKeys: deriveSecretKeys(secret) } : {}),
    ...(users ? { users } : {}),
    ...(flags.stateDir !== undefined ? { stateDir: flags.stateDir } : {}),
    policy: new EgressPolicy({ allowPrivate: flags.allowPrivate, allow: flags.allow }),
    maxSessions,
    maxPendingHandshakes,
    maxPendingPerSource,
    advertise,
    ciphers,
    ...(recordCrypto.factory ? { recordAead: recordCrypto.factory } : {}),
    udp: { idleMs: udpIdleMs, dnsUpstream },
    ...(flags.udpDuplicate ? { config: { datagramCopies: 2 } } : {}),
    ...(instanceId !== undefined ? { instanceId } : {}),
    publish,
    log,
  });
  await listenForAll(listen, () => server.listen());
  const started = Date.now();
  let statsServer: net.Server | undefined;
  if (stats) {
    try {
      statsServer = await listenFor('--stats', stats, () =>
        startStatsServer(stats.host, stats.port, () => ({
          role: 'server',
          uptimeSeconds: Math.round((Date.now() - started) / 1000),
          sessions: server.sessions().map((s) => s.stats()),
          ...(users ? { users: server.userFigures() ?? [] } : {}),
          publications: server.publications(),
          counters: { ...server.counters, ...server.acceptor.counters },
          ...(instanceId !== undefined ? { instanceId } : {}),
          draining: server.acceptor.draining,
        })),
      );
    } catch (e) {
      await server.close();
      throw e;
    }
  }
  // `listen` is the first listener (what scripts read); `listeners` has them all.
  log.info({ listen: listenText(server.listeners[0]!), listeners: server.listeners.map(listenText), allowPrivate: flags.allowPrivate, allow: flags.allow, ciphers, ...(instanceId !== undefined ? { instanceId } : {}) }, 'plait server listening');
  log.info({}, recordCrypto.text);
  if (usersTable) {
    log.info({ users: usersTable.users.size, file: usersTable.file, serverKey: Buffer.from(usersTable.identity.publicKey).toString('base64url') }, 'named users: clients need --user NAME and --server-key (this serverKey)');
  }
  if (dnsUpstream) log.info({ dnsUpstream: `${dnsUpstream.host}:${dnsUpstream.port}` }, "clients' DNS goes to this resolver");
  else log.warn({}, "no DNS resolver (no --dns-upstream, no nameserver in /etc/resolv.conf): clients' --dns queries are dropped");
  if (stats && statsServer) {
    const a = statsServer.address() as net.AddressInfo;
    log.info({ stats: `${a.address}:${a.port}` }, 'stats at /stats and /metrics');
  }
  const stop = (): void => {
    log.info({}, 'shutting down');
    statsServer?.close();
    void server.close().then(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  // SIGTERM drains (scale-in, rolling restarts); a second SIGTERM, or SIGINT, stops at once.
  const drain = (): void => {
    log.info({ graceSeconds: drainGraceMs / 1000, sessions: server.acceptor.sessionCount }, 'draining: refusing new sessions, serving live ones for the grace (SIGTERM again or SIGINT to stop now)');
    process.once('SIGTERM', stop);
    void server.drain(drainGraceMs).then(stop);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', drainGraceMs > 0 ? drain : stop);
  // ---- users reload (SIGHUP): a new table at once; sessions of removed, revoked or re-keyed users end ----
  let currentUsers = usersTable;
  const reloadUsers = (): void => {
    if (!currentUsers || !users) return;
    try {
      const next = loadUsersFile(currentUsers.file);
      const gone = usersToRevoke(currentUsers, next);
      users.replace(next.identity, serverUsers(next));
      currentUsers = next;
      const ended = server.acceptor.revokeSessions((name) => gone.has(name));
      // Users who stay but lost a port from their publish list lose its listener now.
      const withdrawn = server.reviewPublications();
      log.info({ file: next.file, users: next.users.size, revoked: [...gone], sessionsEnded: ended, publicationsWithdrawn: withdrawn }, 'users file reloaded');
    } catch (e) {
      log.error({ file: currentUsers.file }, `users reload failed, keeping the current users: ${e instanceof Error ? e.message : String(e)}`);
    }
  };
  // ---- end users reload ----
  if (config?.file.file !== undefined) {
    // Paths and roles are the client's: a server reload only checks the file, so a broken edit shows before a restart.
    const file = config.file;
    onHangup.handle = () => {
      reloadUsers();
      let loaded: ReturnType<CommandConfig<ServerFlags>['load']> | undefined;
      try {
        loaded = file.load();
        checkServerFlags(loaded.flags);
        log.info({ config: file.file }, 'config file checked: the server applies its changes at the next restart (paths and roles are set by clients)');
      } catch (e) {
        const why = loaded ? loaded.explain(e) : e;
        log.error({ config: file.file }, `config reload failed, keeping the running config: ${why instanceof Error ? why.message : String(why)}`);
      }
    };
  } else {
    // A stray `systemctl reload` must not end every session.
    onHangup.handle = () => (users ? reloadUsers() : log.warn('SIGHUP: nothing to reload (started without --config); still running'));
  }
  return server;
}

/** The handshake's view of a users file. */
function serverUsers(t: UsersTable): Map<string, ServerUser> {
  const m = new Map<string, ServerUser>();
  for (const [name, u] of t.users) m.set(name, {
      keys: u.keys,
      revoked: u.revoked,
      ...(u.maxSessions !== undefined ? { maxSessions: u.maxSessions } : {}),
      ...(u.rateBytesPerSec !== undefined ? { rateBytesPerSec: u.rateBytesPerSec } : {}),
      ...(u.cap !== undefined ? { cap: u.cap } : {}),
      publish: u.publish,
    });
  return m;
}

/** --instance-id: 0-65535, the u16 a JOIN carries for the load balancer (PROTOCOL.md 4.2). */
export function parseInstanceId(raw: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) > 65535) throw new UsageError(`--instance-id: expected an integer 0-65535, got "${raw}"`);
  return Number(raw);
}

/** --drain-grace: seconds (0-86400) live sessions are served after SIGTERM; 0 stops at once. */
export function parseDrainGrace(raw: string): number {
  if (!/^\d+(\.\d+)?$/.test(raw) || Number(raw) > 86_400) throw new UsageError(`--drain-grace: expected seconds 0-86400, got "${raw}"`);
  return Math.round(Number(raw) * 1000);
}
