import type * as net from 'node:net';
import { networkInterfaces } from 'node:os';
import { DEFAULT_LATENCY_PORTS, deriveSecretKeys, realClock, userNameProblem, type ClientUser } from '@plait/core';
import { BypassDomains, CapLedger, CapStateFile, DnsForwarder, listenForward, listenHttpConnect, listenSocks5, parseForwardSpec, PlaitClient, SiteFailover, type SiteShared } from '@plait/client';
import { checkStateDir } from './state-dir-flag.js';
import {
  isLoopbackHost,
  listenFor,
  parseAddress,
  parseBackup,
  parseHostPort,
  parseInterfaceName,
  parseLogLevel,
  parseOverflow,
  parseLatencyPorts,
  parseScheduler,
  parseSeconds,
  resolveProxyAuth,
  resolveSecret,
  sourceWarnings,
  UsageError,
} from './args.js';
import { chooseRecordCrypto, parseClientCipher } from './cipher-flag.js';
import { parseCaps } from './cap-flag.js';
import { parsePublishFlags } from './publish-flags.js';
import type { CommandConfig } from './config-file.js';
import { makeLogger } from './log.js';
import { startStatsServer } from './stats.js';
import { parseBypassDomains, parseTransparentFlags, startTransparent, type TransparentFlags } from './transparent-flags.js';
import { parseServerFlag, readCaFile, type ServerFlag } from './transport-flags.js';

export interface ClientFlags extends TransparentFlags {
  server: string[];
  fallbackServer: string[];
  failoverAfter: string;
  failbackAfter: string;
  ca?: string;
  secret?: string;
  secretFile?: string;
  /** --user / --server-key: a named user of a server with several (PROTOCOL.md 3.2). */
  user?: string;
  serverKey?: string;
  bind: string[];
  via: string[];
  backup: string[];
  overflow: string[];
  cap: string[];
  capAction: string;
  stateDir?: string;
  socks?: string;
  proxyAuth?: string;
  socksAuth?: string;
  proxyAuthFile?: string;
  http?: string;
  forward: string[];
  /** --publish SERVERPORT:HOST:PORT (README "Serving several households"). */
  publish: string[];
  dns?: string;
  udpDuplicate?: boolean;
  stats?: string;
  scheduler: string;
  latencyPorts?: string;
  cipher: string;
  logLevel: string;
  /** The config file that gave `secret` (then it is not in argv). */
  secretInFile?: string;
}

const addrText = (a: net.AddressInfo): string => (a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`);

/** --user NAME with --server-key KEY (both or neither). */
export function parseClientUser(flags: { user?: string; serverKey?: string }): ClientUser | undefined {
  if (flags.user === undefined && flags.serverKey === undefined) return undefined;
  if (flags.user === undefined) throw new UsageError('--server-key: only with --user NAME');
  const problem = userNameProblem(flags.user);
  if (problem) throw new UsageError(`--user: ${problem}`);
  if (flags.serverKey === undefined) throw new UsageError("--user: needs --server-key KEY (the server-key line of the server's `plait keygen --identity`)");
  const key = Buffer.from(flags.serverKey, 'base64url');
  if (key.length !== 32 || key.toString('base64url') !== flags.serverKey.replace(/=+$/, '')) {
    throw new UsageError("--server-key: not a 32-byte base64url key; use the server-key line of the server's `plait keygen --identity`");
  }
  return { name: flags.user, serverKey: new Uint8Array(key) };
}

/** Every flag checked, nothing started: what runClient needs, and all `plait check-config` does. */
export function checkClientFlags(flags: ClientFlags) {
  const logLevel = parseLogLevel(flags.logLevel);
  if (flags.server.length === 0) throw new UsageError('--server: at least one plait server address is required');
  const servers = flags.server.map(parseServerFlag);
  const ca = flags.ca !== undefined ? readCaFile(flags.ca, servers) : undefined;
  const fallbacks = parseFallbacks(flags.fallbackServer, servers);
  const failoverAfterMs = parseSeconds('--failover-after', flags.failoverAfter) * 1000;
  const returnAfterMs = parseSeconds('--failback-after', flags.failbackAfter) * 1000;
  const { secret, warnings } = resolveSecret(flags);
  const user = parseClientUser(flags);
  const binds = flags.bind.map((b) => parseAddress('--bind', b));
  const vias = flags.via.map((v) => parseInterfaceName('--via', v));
  const backups = flags.backup.map(parseBackup);
  const overflows = flags.overflow.map((o) => parseOverflow(o, backups));
  const caps = parseCaps(flags.cap ?? [], flags.capAction ?? 'backup');
  const stateDir = flags.stateDir === '' ? undefined : flags.stateDir;
  const scheduler = parseScheduler(flags.scheduler);
  const latencyPorts = flags.latencyPorts === undefined ? [...DEFAULT_LATENCY_PORTS] : parseLatencyPorts(flags.latencyPorts);
  const cipher = parseClientCipher(flags.cipher);
  const socks = flags.socks ? parseHostPort('--socks', flags.socks) : undefined;
  const http = flags.http ? parseHostPort('--http', flags.http) : undefined;
  const stats = flags.stats ? parseHostPort('--stats', flags.stats) : undefined;
  const dns = flags.dns ? parseHostPort('--dns', flags.dns) : undefined;
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
  const publish = parsePublishFlags(flags.publish ?? []);
  const transparent = parseTransparentFlags(flags);
  if (!socks && !http && !dns && forwards.length === 0 && publish.length === 0 && !transparent.redirect && !transparent.tproxy) {
    throw new UsageError('--socks: give at least one of --socks, --http, --forward, --publish, --dns, --redirect or --tproxy');
  }
  const bypassDomains = parseBypassDomains(flags, dns);
  if (dns && !isLoopbackHost(dns.host)) warnings.push(`--dns: anyone who can reach ${dns.host}:${dns.port} can resolve names through the plait server; keep it on the LAN side`);
  warnings.push(...sourceWarnings({ binds, vias, backups, overflows }, networkInterfaces()));
  warnings.push(...capWarnings(caps, { binds, vias, backups, overflows }, stateDir));
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
  return { logLevel, servers, ca, fallbacks, failoverAfterMs, returnAfterMs, secret, user, warnings, sources: { binds, vias, backups, overflows }, caps, stateDir, scheduler, latencyPorts, cipher, socks, http, stats, auth, forwards, publish, dns, transparent, bypassDomains };
}

/** A cap naming no source counts nothing; caps without --state-dir start at 0 on every restart. */
function capWarnings(caps: { path: string }[], sources: { binds: string[]; vias: string[]; backups: string[]; overflows: string[] }, stateDir: string | undefined): string[] {
  const out: string[] = [];
  const named = [...sources.binds, ...sources.vias, ...sources.backups, ...sources.overflows].map((x) => x.toLowerCase());
  const ifaces = networkInterfaces();
  const viaAddrs = [...sources.vias, ...sources.backups, ...sources.overflows].flatMap((n) => (ifaces[n] ?? []).map((a) => a.address.toLowerCase()));
  for (const c of caps) {
    const p = c.path.toLowerCase();
    const bindOnIface = (ifaces[c.path] ?? []).some((a) => named.includes(a.address.toLowerCase()));
    if (!named.includes(p) && !viaAddrs.includes(p) && !bindOnIface) {
      out.push(`--cap: ${c.path} is not given to --bind, --via, --backup or --overflow (nor an address of one); the cap counts nothing until it is`);
    }
  }
  if (caps.length > 0 && stateDir === undefined) out.push('--cap: without --state-dir, cap usage is not saved and starts at 0 on every restart');
  return out;
}

export async function runClient(flags: ClientFlags, config?: { file: CommandConfig<ClientFlags>; warnings: string[] }): Promise<PlaitClient | SiteFailover> {
  // Every flag is checked before anything listens or logs, so a mistake costs one line and exit 2.
  const { logLevel, servers, ca, fallbacks, failoverAfterMs, returnAfterMs, secret, user, warnings, sources, caps, stateDir, scheduler, latencyPorts, cipher, socks, http, stats, auth, forwards, publish, dns, transparent, bypassDomains } = checkClientFlags(flags);
  const stateDirWarning = checkStateDir(stateDir);
  if (stateDirWarning) warnings.push(stateDirWarning);
  const log = makeLogger(logLevel);
  // SIGHUP's default action ends the process: take it over before anything
  // listens, so a reload that arrives during start-up is not fatal either.
  const onHangup = { handle: (): void => log.warn('SIGHUP during start-up: ignored') };
  process.on('SIGHUP', () => onHangup.handle());
  for (const w of [...(config?.warnings ?? []), ...warnings]) log.warn({}, w);
  const secretKeys = deriveSecretKeys(secret);
  const recordCrypto = chooseRecordCrypto();
  // One ledger for every site's client: a cap counts the link, whichever server its bytes go to.
  const capLedger = caps.length > 0 ? new CapLedger(caps, { clock: realClock, log, ...(stateDir !== undefined ? { store: new CapStateFile(stateDir, (m) => log.warn({ stateDir }, m)) } : {}) }) : undefined;
  const siteClient = (siteServers: ServerFlag[], shared?: SiteShared): PlaitClient =>
    new PlaitClient({
      ...(shared ? { shared } : {}),
      servers: siteServers,
      ...(ca !== undefined ? { ca } : {}),
      secretKeys,
      ...(user ? { user } : {}),
      sources,
      ...(capLedger ? { caps: capLedger } : {}),
      scheduler,
      latencyPorts,
      cipher: cipher.cipher,
      ...(recordCrypto.factory ? { recordAead: recordCrypto.factory } : {}),
      ...(flags.udpDuplicate ? { config: { datagramCopies: 2 } } : {}),
      ...(publish.length > 0 ? { publish } : {}),
      log,
    });
  // With --fallback-server: one client per site, the primary always on (README "Scaling out").
  const siteName = (what: string, ss: ServerFlag[]): string => `${what} ${ss.map((x) => x.url ?? `${x.host}:${x.port}`).join(',')}`;
  const client =
    fallbacks.length === 0
      ? siteClient(servers)
      : new SiteFailover({
          sites: [
            { name: siteName('primary', servers), make: (shared) => siteClient(servers, shared) },
            ...fallbacks.map((f, i) => ({ name: siteName(`fallback ${i + 1}`, f), make: (shared: SiteShared) => siteClient(f, shared) })),
          ],
          failoverAfterMs,
          returnAfterMs,
          log,
        });
  // Bind everything first and announce after, so a busy port fails with its one line only.
  const listeners: net.Server[] = [];
  const announce: (() => void)[] = [];
  announce.push(() => log.info({ cipher: cipher.cipher }, `record cipher ${cipher.cipher}: ${cipher.reason}`));
  announce.push(() => log.info({}, recordCrypto.text));
  if (socks) {
    const udp = { flows: client.datagrams, counters: client.counters };
    const l = await listenFor('--socks', socks, () => listenSocks5(socks.host, socks.port, auth ? { auth, udp } : { udp }, client.dial));
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
  let dnsForwarder: DnsForwarder | undefined;
  let bypass: BypassDomains | undefined;
  if (dns) {
    // --bypass-domain: answers for those names wait until router-setup's nftables sets have their addresses.
    bypass = bypassDomains.length > 0 ? new BypassDomains({ domains: bypassDomains, log }) : undefined;
    const onAnswer = bypass ? { onAnswer: bypass.observe.bind(bypass) } : {};
    const fwd = new DnsForwarder({ flows: client.datagrams, counters: client.counters, ...onAnswer });
    const at = await listenFor('--dns', dns, () => fwd.listen(dns.host, dns.port));
    dnsForwarder = fwd;
    announce.push(() => log.info({ dns: `${at.address.includes(':') ? `[${at.address}]` : at.address}:${at.port}` }, 'DNS (UDP and TCP) listening'));
  }
  // Transparent listeners (--redirect / --tproxy): router mode, see `plait router-setup`.
  const transparentListeners = await startTransparent(transparent, client.dial, log);
  for (const t of transparentListeners.listeners) {
    listeners.push(t.server);
    announce.push(() => log.info({ [t.mode]: addrText(t.server.address() as net.AddressInfo) }, `transparent listener (${t.mode === 'redirect' ? 'REDIRECT' : 'TPROXY'}) listening`));
  }
  const started = Date.now();
  if (stats) {
    const l = await listenFor('--stats', stats, () =>
      startStatsServer(
        stats.host,
        stats.port,
        () => {
          const st = client.stats();
          return {
            role: 'client',
            uptimeSeconds: Math.round((Date.now() - started) / 1000),
            sessions: st.session ? [st.session] : [],
            counters: {
              ...client.counters,
              ...(transparentListeners.listeners.length > 0 ? transparentListeners.counters : {}),
              ...(bypass ? bypass.counters : {}),
            },
            paths: st.paths,
            ...(client instanceof SiteFailover ? { sites: client.stats().sites } : {}),
            caps: capLedger?.stats() ?? [],
            ...(st.publications ? { publications: st.publications } : {}),
          };
        },
        { setRole: (id, role) => client.setSubflowRole(id, role) },
      ),
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
    capLedger?.close(); // saves the usage
    dnsForwarder?.close();
    for (const l of listeners) l.close();
    setTimeout(() => process.exit(0), 300).unref();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  if (config?.file.file !== undefined) {
    const file = config.file;
    onHangup.handle = () => reloadClientConfig(file, flags, client, log);
  } else {
    // A stray `systemctl reload` must not end the session.
    onHangup.handle = () => log.warn('SIGHUP: nothing to reload (started without --config); still running');
  }
  return client;
}

/** Keys whose change a reload applies at once; the others need a restart. */
const LIVE_KEYS = new Set(['bind', 'via', 'backup', 'overflow']);

/**
 * SIGHUP: read the config file again and apply its paths and roles without
 * touching the session (added paths start subflows, removed ones close
 * theirs, changed roles go to the server in `prio`). A file that no longer
 * parses or checks is logged, and the running config kept.
 */
export function reloadClientConfig(
  file: CommandConfig<ClientFlags>,
  /** What the process started with: a changed key that needs a restart is named on every reload until then. */
  running: ClientFlags,
  client: PlaitClient | SiteFailover,
  log: { info(o: object, m: string): void; warn(o: object, m: string): void; error(o: object, m: string): void },
): boolean {
  let loaded: ReturnType<CommandConfig<ClientFlags>['load']> | undefined;
  let checked: ReturnType<typeof checkClientFlags>;
  try {
    loaded = file.load();
    checked = checkClientFlags(loaded.flags);
  } catch (e) {
    const why = loaded ? loaded.explain(e) : e;
    log.error({ config: file.file }, `config reload failed, keeping the running config: ${why instanceof Error ? why.message : String(why)}`);
    return false;
  }
  for (const w of loaded.warnings) log.warn({}, w);
  client.reconfigure(checked.sources);
  const was = running as unknown as Record<string, unknown>;
  const now = loaded.flags as unknown as Record<string, unknown>;
  const keyOf = (attr: string): string => attr.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  for (const attr of new Set([...Object.keys(was), ...Object.keys(now)])) {
    if (attr === 'secretInFile' || LIVE_KEYS.has(keyOf(attr))) continue;
    if (JSON.stringify(was[attr]) !== JSON.stringify(now[attr])) log.warn({ config: file.file, key: keyOf(attr) }, `${file.file}: ${keyOf(attr)} changed; restart plait to apply it (a reload applies paths and roles)`);
  }
  log.info({ config: file.file, paths: client.stats().paths.map((p) => `${p.key} ${p.role}`) }, 'config reloaded: paths and roles applied');
  return true;
}

/**
 * --fallback-server HOST:PORT[,HOST:PORT...]: one fallback site per flag (its
 * addresses comma-separated, like repeated --server for the primary), tried
 * in the order given.
 */
export function parseFallbacks(raw: string[], primary: { host: string; port: number }[]): { host: string; port: number }[][] {
  const seen = new Set(primary.map((p) => `${p.host}:${p.port}`));
  return raw.map((site) =>
    site.split(',').map((one) => {
      const a = parseHostPort('--fallback-server', one.trim(), { connect: true });
      const key = `${a.host}:${a.port}`;
      if (seen.has(key)) throw new UsageError(`--fallback-server: ${key} is already a server of another site`);
      seen.add(key);
      return a;
    }),
  );
}
