import * as http from 'node:http';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import { counterHelp, type Clock, type SessionStats } from '@plait/core';
import type { CapStats, ClientPublicationStats } from '@plait/client';
import type { PublicationStats, UserFigures } from '@plait/server';
import { LIVE_PAGE_HEADERS, LIVE_PAGE_HTML } from './live-page.js';
import { isAllowedLiveOrigin, LivePush } from './live-push.js';
import { handleRolePost, SUBFLOW_PATH, type SetRole } from './role-endpoint.js';

export interface StatsSnapshot {
  role: 'client' | 'server';
  uptimeSeconds: number;
  sessions: SessionStats[];
  /** Extra top-level counters (connections refused, dials, ...). */
  counters: Record<string, number>;
  /** Client only: the paths the subflow manager maintains. */
  paths?: unknown[];
  /** Server with --users: per-user figures. */
  users?: UserFigures[];
  /** Client with --fallback-server only: each site, which one is active, its health. */
  sites?: unknown[];
  /** Client only: data caps and their usage this period. */
  caps?: CapStats[];
  /** Published ports (--publish): the server's per session and user, or the client's with the server's answer. */
  publications?: (PublicationStats | ClientPublicationStats)[];
}

/** Hex digits of a session token shown in stats, as in the logs. */
const TOKEN_PREFIX_HEX = 8;

/**
 * The snapshot as served: each session token cut to its 8-hex prefix. The
 * full token names a session for JOIN; a prefix is enough to tell sessions
 * apart and to match a client's stats with the server's.
 */
export function publicSnapshot(s: StatsSnapshot): StatsSnapshot {
  return { ...s, sessions: s.sessions.map((st) => ({ ...st, token: st.token.slice(0, TOKEN_PREFIX_HEX) })) };
}

/**
 * DNS rebinding defense: a web page that rebinds its own name to 127.0.0.1
 * reaches this port with its own name in Host, so only an IP literal
 * (v4, or [v6]) or localhost, with an optional port, is served. A request
 * without Host (HTTP/1.0) is served: browsers always send one, so it is no
 * rebinding vector, and Node already answers 400 to HTTP/1.1 without Host.
 */
export function isAllowedStatsHost(host: string | undefined): boolean {
  if (host === undefined) return true;
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+))(?::(\d{1,5}))?$/.exec(host);
  if (!m) return false;
  if (m[3] !== undefined && Number(m[3]) > 65535) return false;
  if (m[1] !== undefined) return isIP(m[1]) === 6;
  const name = m[2]!.toLowerCase();
  return isIP(name) === 4 || name === 'localhost' || name === 'localhost.';
}

/**
 * Serve GET / (the live link page), GET /stats (JSON), GET /metrics
 * (Prometheus text) and the /live WebSocket (the /stats JSON pushed every
 * second) for `snapshot()`; with `setRole` (the client), also
 * POST /subflows/<id> to change a path's role (role-endpoint.ts).
 */
export function startStatsServer(
  host: string,
  port: number,
  snapshot: () => StatsSnapshot,
  opts: { setRole?: SetRole; /** times /live's pushes (default: the real clock) */ clock?: Clock } = {},
): Promise<http.Server> {
  const live = new LivePush({ snapshot: () => JSON.stringify(publicSnapshot(snapshot())), isOpen: () => server.listening, ...(opts.clock ? { clock: opts.clock } : {}) });
  const server: http.Server = http.createServer((req, res) => {
    if (!isAllowedStatsHost(req.headers.host)) {
      res
        .writeHead(403, { 'content-type': 'text/plain' })
        .end('plait stats: the Host header must be an IP address or localhost (DNS rebinding protection)\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const subflow = SUBFLOW_PATH.exec(path);
    if (subflow) {
      if (req.method !== 'POST') res.writeHead(405, { allow: 'POST' }).end();
      else handleRolePost(req, res, Number(subflow[1]), opts.setRole);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    if (path === '/') {
      res.writeHead(200, LIVE_PAGE_HEADERS).end(LIVE_PAGE_HTML);
    } else if (path === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(publicSnapshot(snapshot()), null, 2) + '\n');
    } else if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(toPrometheus(snapshot()));
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('try / (live page), /stats, /metrics or the /live WebSocket\n');
    }
  });
  server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => undefined);
    const path = (req.url ?? '/').split('?')[0];
    // The same Host rule as every other path, and for a WebSocket also the page's own Origin (see isAllowedLiveOrigin).
    const refusal = !isAllowedStatsHost(req.headers.host)
      ? '403 Forbidden'
      : !isAllowedLiveOrigin(req.headers.origin, req.headers.host)
        ? '403 Forbidden'
        : path !== '/live'
          ? '404 Not Found'
          : undefined;
    if (refusal) {
      socket.end(`HTTP/1.1 ${refusal}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    live.handleUpgrade(req, socket, head);
  });
  server.on('close', () => live.close());
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

const esc = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
const labels = (l: Record<string, string | number | boolean>): string =>
  '{' +
  Object.entries(l)
    .map(([k, v]) => `${k}="${esc(String(v))}"`)
    .join(',') +
  '}';

/** The same numbers as /stats, in the Prometheus text exposition format. */
export function toPrometheus(full: StatsSnapshot): string {
  const s = publicSnapshot(full);
  const out: string[] = [];
  const family = (name: string, type: 'gauge' | 'counter', help: string, rows: [Record<string, string | number | boolean>, number][]): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v] of rows) out.push(`${name}${Object.keys(l).length ? labels(l) : ''} ${Number.isFinite(v) ? v : 0}`);
  };
  family('plait_uptime_seconds', 'gauge', 'Seconds since start.', [[{ role: s.role }, s.uptimeSeconds]]);
  family('plait_sessions', 'gauge', 'Open sessions.', [[{ role: s.role }, s.sessions.length]]);
  for (const [k, v] of Object.entries(s.counters)) family(`plait_${snake(k)}_total`, 'counter', counterHelp(k) ?? `Counter ${k}.`, [[{ role: s.role }, v]]);
  const sess = (st: SessionStats) => ({ session: st.token });
  family('plait_open_streams', 'gauge', 'Open streams per session.', s.sessions.map((st) => [sess(st), st.openStreams]));
  family('plait_streams_opened_total', 'counter', 'Streams opened per session.', s.sessions.map((st) => [sess(st), st.streamsOpened]));
  const sub = (st: SessionStats, field: (x: SessionStats['subflows'][number]) => number): [Record<string, string | number | boolean>, number][] =>
    st.subflows.map((x) => [{ ...sess(st), subflow: x.id, local: x.local, remote: x.remote, backup: x.backup, role: x.role, state: x.state }, field(x)]);
  const all = (field: (x: SessionStats['subflows'][number]) => number) => s.sessions.flatMap((st) => sub(st, field));
  family('plait_subflow_up', 'gauge', '1 if the subflow is active, 0 if suspect or pending.', all((x) => (x.state === 'active' ? 1 : 0)));
  family('plait_subflow_rtt_seconds', 'gauge', 'Smoothed RTT from data-level acks.', all((x) => x.rttMs / 1000));
  family('plait_subflow_rate_bytes_per_second', 'gauge', 'Delivery rate estimate.', all((x) => x.rateBytesPerSec));
  family('plait_subflow_inflight_bytes', 'gauge', 'Unacknowledged bytes.', all((x) => x.inflightBytes));
  family('plait_subflow_sent_bytes_total', 'counter', 'Bytes sent on the subflow.', all((x) => x.bytesSent));
  family('plait_subflow_received_bytes_total', 'counter', 'Bytes received on the subflow.', all((x) => x.bytesReceived));
  family('plait_subflow_reinjected_bytes_total', 'counter', 'Payload bytes resent elsewhere after this subflow failed.', all((x) => x.bytesReinjected));
  const kern = (field: (k: NonNullable<SessionStats['subflows'][number]['kernel']>) => number) =>
    s.sessions.flatMap((st) => sub(st, (x) => (x.kernel ? field(x.kernel) : NaN)).filter(([, v]) => !Number.isNaN(v)));
  family('plait_subflow_kernel_rtt_seconds', 'gauge', "The kernel's smoothed RTT (TCP_INFO).", kern((k) => k.rttMs / 1000));
  family('plait_subflow_kernel_cwnd_segments', 'gauge', "The kernel's congestion window (TCP_INFO).", kern((k) => k.cwnd));
  family('plait_subflow_kernel_notsent_bytes', 'gauge', 'Bytes queued in the kernel, not yet sent (TCP_INFO).', kern((k) => k.notsentBytes));
  family('plait_subflow_kernel_retransmits_total', 'counter', 'TCP retransmissions (TCP_INFO).', kern((k) => k.totalRetrans));
  const caps = s.caps ?? [];
  const cap = (field: (c: CapStats) => number): [Record<string, string | number | boolean>, number][] =>
    caps.map((c) => [{ path: c.path, period: c.period, action: c.action }, field(c)]);
  family('plait_cap_used_bytes', 'gauge', 'Bytes both ways on the capped path this period (TCP payload: records, their overhead and handshakes).', cap((c) => c.usedBytes));
  family('plait_cap_limit_bytes', 'gauge', 'The data cap of the path per period.', cap((c) => c.capBytes));
  family('plait_cap_period_start_seconds', 'gauge', 'Unix time the current cap period started (local midnight).', cap((c) => c.periodStart / 1000));
  family('plait_cap_period_end_seconds', 'gauge', 'Unix time the next cap period starts.', cap((c) => c.periodEnd / 1000));
  family('plait_cap_reached', 'gauge', '1 while the cap holds the path at its action (backup or off) until the period ends.', cap((c) => (c.state === 'reached' ? 1 : 0)));
  const paths = (s.paths ?? []) as { key?: unknown; bytesSent?: unknown; bytesReceived?: unknown }[];
  const pathRows = (field: 'bytesSent' | 'bytesReceived'): [Record<string, string | number | boolean>, number][] =>
    paths.filter((p) => typeof p.key === 'string' && typeof p[field] === 'number').map((p) => [{ path: p.key as string }, p[field] as number]);
  family('plait_path_sent_bytes_total', 'counter', 'Bytes sent on all subflows of the path since start (not reset when a subflow is replaced).', pathRows('bytesSent'));
  family('plait_path_received_bytes_total', 'counter', 'Bytes received on all subflows of the path since start (not reset when a subflow is replaced).', pathRows('bytesReceived'));
  // ---- published ports (--publish) ----
  const pubs = (s.publications ?? []).map(publicationRow);
  const pub = (field: (r: PublicationRow) => number): [Record<string, string | number | boolean>, number][] => pubs.map((r) => [r.labels, field(r)]);
  family('plait_publication_open', 'gauge', '1 while the published port listens for this session (0: binding, refused, taken over, withdrawn).', pub((r) => (r.state === 'open' ? 1 : 0)));
  family('plait_publication_connections', 'gauge', 'Connections to the published port carried now.', pub((r) => r.connections));
  family('plait_publication_connections_total', 'counter', 'Connections to the published port carried since the publication began.', pub((r) => r.total));
  family('plait_publication_connections_refused_total', 'counter', 'Connections to the published port reset: over the limit, no stream (server); target failed or refused here (client).', pub((r) => r.refused));
  family('plait_publication_bytes_total', 'counter', 'Bytes of published-port connections: in (from the connecting peer toward the target) and out.', pubs.flatMap((r) => [[{ ...r.labels, direction: 'in' }, r.bytesIn], [{ ...r.labels, direction: 'out' }, r.bytesOut]] as [Record<string, string | number | boolean>, number][]));
  // ---- end published ports ----
  // ---- per-user figures (--users) ----
  if (s.users) {
    const u = s.users;
    family('plait_user_sessions', 'gauge', 'Open sessions per user.', u.map((x) => [{ user: x.user }, x.sessions]));
    family('plait_user_bytes_total', 'counter', 'Stream payload bytes per user: up (to targets) and down.', u.flatMap((x) => [[{ user: x.user, direction: 'up' }, x.bytesUp], [{ user: x.user, direction: 'down' }, x.bytesDown]] as [Record<string, string>, number][]));
    family('plait_user_rate_bytes_per_second', 'gauge', 'Per-user stream bytes per second (both directions), averaged since the previous scrape.', u.map((x) => [{ user: x.user }, x.rateBytesPerSec]));
    family('plait_user_cap_used_bytes', 'gauge', 'Stream bytes used in the current cap period (users with a cap).', u.filter((x) => x.cap).map((x) => [{ user: x.user, period: x.cap!.period }, x.cap!.used]));
    family('plait_user_cap_bytes', 'gauge', 'The cap of the period.', u.filter((x) => x.cap).map((x) => [{ user: x.user, period: x.cap!.period }, x.cap!.bytes]));
    family('plait_user_refusals_total', 'counter', 'HELLOs naming this user refused (all sent as AUTH_FAILED), by cause.', u.flatMap((x) => Object.entries(x.refusals).map(([cause, n]) => [{ user: x.user, cause }, n] as [Record<string, string>, number])));
  }
  // ---- end per-user figures ----
  const counterNames = new Set(s.sessions.flatMap((st) => Object.keys(st.counters)));
  for (const c of counterNames) {
    family(`plait_session_${snake(c)}_total`, 'counter', counterHelp(c) ?? `Session counter ${c}.`, s.sessions.map((st) => [sess(st), st.counters[c] ?? 0]));
  }
  return out.join('\n') + '\n';
}

function snake(s: string): string {
  return s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`).replace(/[^a-z0-9_]/g, '_');
}

interface PublicationRow {
  labels: Record<string, string | number>;
  state: string;
  connections: number;
  total: number;
  refused: number;
  bytesIn: number;
  bytesOut: number;
}

/** The server's and the client's publication figures, as one kind of row (labels: port, and user/session or target). */
function publicationRow(p: PublicationStats | ClientPublicationStats): PublicationRow {
  const common = { state: p.state, connections: p.connections, total: p.connectionsTotal, bytesIn: p.bytesIn, bytesOut: p.bytesOut };
  if ('serverPort' in p) return { ...common, labels: { port: p.serverPort, target: p.target }, refused: p.connectionsFailed };
  return { ...common, labels: { port: p.port, ...(p.user !== undefined ? { user: p.user } : {}), session: p.session.slice(0, TOKEN_PREFIX_HEX) }, refused: p.connectionsRefused };
}
