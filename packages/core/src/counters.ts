/**
 * Every counter plait keeps, declared once with what it counts, as
 * net/mptcp's mib.h does. The text is the help line /metrics shows; /stats
 * and /metrics render whatever a component's counters hold, so a new event
 * is one line here and one increment where it happens. Reading counters
 * never changes behaviour.
 */
import { ErrorCode, errorName } from './errors.js';

export type CounterDefs = Readonly<Record<string, string>>;
export type Counters<D extends CounterDefs> = { -readonly [K in keyof D]: number };

/** A zeroed counter set for `defs`. */
export function makeCounters<D extends CounterDefs>(defs: D): Counters<D> {
  return Object.fromEntries(Object.keys(defs).map((k) => [k, 0])) as Counters<D>;
}

/** One session (either side). */
export const SESSION_COUNTERS = {
  recordsSent: 'Records sealed and sent.',
  recordsReceived: 'Records received and authenticated.',
  framesReinjected: 'Reliable frames sent again on another subflow after theirs failed or went silent.',
  bytesReinjected: 'Payload bytes sent again on another subflow.',
  duplicateBytes: 'Payload bytes received twice (reinjection overlap) and dropped.',
  subflowsSuspected: 'Subflows marked suspect (no ack progress within the retransmission timeout).',
  subflowsRecovered: 'Suspect subflows whose acks resumed.',
  subflowsClosed: 'Subflows closed, for any reason.',
  decryptFailures: 'Records that failed authentication (the subflow was closed).',
  streamsRefusedLimit: 'Peer streams refused (RESET LIMIT): the session was at maxStreams.',
  recvPauses: 'Times reading paused: the streams together held more than the session receive budget.',
  streamsRefusedProcessLimit: 'Peer streams refused (RESET LIMIT): the process was at processMaxStreams.',
  sendBlockedSession: 'write() pushed back: the session send budget was full (the stream was over streamSendMin).',
  sendBlockedProcess: 'write() pushed back: the process byte budget was under pressure.',
  recvPausesProcess: 'Times reading paused under process byte pressure (this session held a window or more).',
  streamsResetProtocol: 'Streams reset with PROTOCOL: bad header, data past the final size, or a bad WINDOW (stream scope).',
  streamsResetFlowControl: 'Streams reset with FLOW_CONTROL: the peer sent beyond the credit granted (stream scope).',
  subflowsClosedProtocol: 'Subflows closed for a malformed frame, a bad ACK or an unexpected ok (subflow scope).',
  framesUnknownStream: 'Frames for stream 0, an id of ours never opened, or an id far beyond any the peer opened: dropped.',
  acksUnknownSubflow: 'ACKs naming a subflow id we do not have (closed, or never existed): ignored.',
  resetsAfterData: 'Streams aborted after their data: the RESET waited for the acknowledgement.',
  rolesChangedLocally: 'Subflow roles changed on this side (and announced to the peer with prio).',
  rolesChangedByPeer: "Subflow roles changed by the peer's prio message.",
  // Datagrams (PROTOCOL.md 6.7): unreliable, so every loss we cause is counted here.
  datagramsSent: 'Datagrams sent (once each, whatever the copies).',
  datagramsReceived: 'Datagrams received and handed on.',
  datagramsDuplicate: 'Duplicated datagrams received again (second copy) and dropped.',
  datagramsDroppedQueueFull: 'Datagrams dropped from a full send queue (oldest first).',
  datagramsDroppedStale: 'Datagrams dropped after waiting datagramMaxAgeMs for a subflow with room.',
  datagramsDroppedTooLarge: 'Datagrams not sent: payload above 16384 bytes.',
  datagramsDroppedUnsupported: 'Datagrams dropped: the peer does not support them, no handler, or the session is closed.',
  datagramsDroppedRate: "Datagrams dropped for exceeding the session's rate (users file rate), sent or received.",
  schedulerChosenByPeer: "Scheduler choices (sched) received from the client; they govern this side's sending.",
  latencyFrames: 'Data frames sent in the latency class (copied to the two subflows where they arrive first).',
  bytesDuplicated: 'Payload bytes sent as extra copies on purpose (redundant scheduler, latency class); the peer drops all but the first.',
  opportunisticReinjections: "Times a stream's full peer window was waiting on data stuck on a slow subflow, and that subflow's unacknowledged data went out again on the others.",
} as const;

/** Handshake codes a server refuses with, each counted as `reject<Name>`. */
export const HANDSHAKE_REJECT_CODES: readonly ErrorCode[] = [
  ErrorCode.BAD_MESSAGE,
  ErrorCode.VERSION,
  ErrorCode.AUTH_FAILED,
  ErrorCode.STALE_TIMESTAMP,
  ErrorCode.REPLAY,
  ErrorCode.UNKNOWN_TOKEN,
  ErrorCode.SESSION_FULL,
  ErrorCode.BUSY,
  ErrorCode.PROTOCOL,
  ErrorCode.CLOSED,
  ErrorCode.CIPHER,
  ErrorCode.DRAINING,
];

/** `AUTH_FAILED` -> `rejectAuthFailed`. */
export function rejectCounter(code: number): string {
  return 'reject' + errorName(code).toLowerCase().replace(/(^|_)([a-z0-9])/g, (_m, _u: string, c: string) => c.toUpperCase());
}

/** The server's handshake driver (one per server). */
export const ACCEPTOR_COUNTERS = {
  helloOk: 'Sessions created (HELLO accepted).',
  joinOk: 'Subflows joined to a live session (JOIN accepted).',
  rejected: 'Connections refused during the handshake, for any cause (each also counts once below).',
  expired: 'Sessions ended because no subflow came back within the grace.',
  preauthEvictedSource: 'Pending handshakes evicted: their source address had too many.',
  preauthEvictedGlobal: 'Pending handshakes evicted: the server had too many.',
  preauthTimeoutFirst: 'Connections with no complete first message within handshakeFirstMessageMs.',
  preauthTimeout: 'Handshakes not complete within handshakeTimeoutMs.',
  preauthOverflow: 'Connections that sent more than preauthBufferBytes before authenticating.',
  // Named users (PROTOCOL.md 3.2): all refused alike on the wire (AUTH_FAILED), counted apart here.
  userUnknown: 'HELLOs naming a user the users file does not have.',
  userBadSecret: 'HELLOs naming a real user but not proving its secret.',
  userRevoked: 'HELLOs from a user marked revoked in the users file.',
  userBadHint: 'HELLOs with a user hint that does not open with our identity key (or with no --users).',
  userMissing: 'HELLOs without a user hint while the server has no anonymous --secret.',
  revoked: 'Sessions ended because their user was removed, re-keyed or revoked (SIGHUP).',
  ...(Object.fromEntries(HANDSHAKE_REJECT_CODES.map((c) => [rejectCounter(c), `Handshakes refused with ${errorName(c)}.`])) as Record<string, string>),
} as const satisfies CounterDefs;

/** The server process around the acceptor (sockets, egress). */
export const SERVER_COUNTERS = {
  connections: 'TCP connections accepted.',
  preauthBytes: 'Bytes read from connections that never authenticated.',
  streamsOpened: 'Streams the clients opened.',
  streamsRefused: 'Streams refused by the egress policy (private, loopback, own addresses).',
  streamsFailed: 'Streams whose target could not be connected (refused, unreachable, DNS, timeout).',
  // UDP associations and DNS (datagram flows, PROTOCOL.md 6.7).
  udpFlowsOpened: 'Datagram flows (UDP associations) opened, one UDP socket each.',
  udpFlowsExpired: 'Datagram flows closed after the idle timeout (--udp-idle-timeout).',
  udpFlowsRefusedLimit: 'Datagrams dropped: their session was at maxDatagramFlows flows.',
  udpDroppedPolicy: 'Datagrams dropped: the destination is denied by the egress policy.',
  udpDroppedUnresolved: 'Datagrams dropped: the destination name did not resolve (or too many lookups at once).',
  udpDroppedForeign: 'UDP replies dropped: from an address the flow never sent to.',
  udpSendErrors: 'UDP sends that failed (unreachable network, socket error).',
  dnsUpstreamQueries: 'DNS queries sent to the resolver (--dns-upstream) for clients.',
  dnsNoUpstream: 'DNS queries dropped: no resolver configured (no --dns-upstream, nothing in /etc/resolv.conf).',
  dnsUpstreamFailures: 'DNS-over-TCP queries to the resolver that failed or timed out (or too many at once).',
  // Published ports (plait client --publish, PROTOCOL.md 7.1).
  publications: 'Published ports opened (a listener bound for a session).',
  publishRefused: 'Publish requests refused (not allowed, in use, over the per-session limit, listen failed).',
  publishRefusalsIgnored: 'Publish requests not answered: the session had already had 64 answers that changed nothing (refusals, repeats).',
  inboundConnections: 'Connections accepted on published ports and carried to their client.',
  inboundRefused: 'Connections to published ports reset at once: over --publish-max-conns, or the session could not open a stream.',
  inboundTimeouts: 'Connections to published ports reset because the client did not connect its side in time.',
} as const;

/** The client's subflow manager. */
export const CLIENT_COUNTERS = {
  sessions: 'Sessions established (a new one after the server forgot the last, or after the grace).',
  subflowsOpened: 'Subflows that completed their handshake.',
  subflowFailures: 'Subflow attempts that failed (each path problem is logged once).',
  subflowsReplaced: 'Stuck subflows replaced by a fresh connection on the same path.',
  dials: 'Streams the local proxies asked for.',
  dialFailures: 'Streams that could not be opened (refused, timed out, no session).',
  unverifiedRefusals: 'Refusals on a path that did not prove the secret (forged, or a middlebox): that path only.',
  clockCorrections: 'Clock offsets adopted from proven STALE_TIMESTAMP refusals.',
  helloRaceLosers: 'HELLOs that completed after another path had made the session (closed, then joined).',
  outagesExpired: 'Sessions ended because no path worked for the whole grace.',
  // SOCKS5 UDP ASSOCIATE and --dns (datagram flows, PROTOCOL.md 6.7).
  udpAssociations: 'SOCKS5 UDP associations started.',
  udpAssociationsRefused: 'SOCKS5 UDP associations refused: the server has no UDP support or is at its flow limit.',
  socksUdpDroppedFrag: 'SOCKS5 UDP datagrams dropped: fragments (FRAG != 0) are not supported.',
  socksUdpDroppedForeign: 'SOCKS5 UDP datagrams dropped: not from the address (and port) of the client that asked.',
  socksUdpDroppedMalformed: 'SOCKS5 UDP datagrams dropped: malformed header (address type, length, port 0).',
  dnsQueries: 'DNS queries from the LAN (--dns) sent through the session.',
  dnsAnswers: 'DNS answers returned to LAN clients.',
  dnsTimeouts: 'DNS queries with no answer in time (their slot is freed).',
  dnsDroppedMalformed: 'DNS messages dropped: too short, too long, not a query, or a bad TCP length prefix.',
  dnsDroppedBusy: 'DNS queries dropped: too many in flight.',
  // Published ports (--publish, PROTOCOL.md 7.1).
  inboundAccepted: 'Connections the server carried in for a published port and this client connected to its target.',
  inboundFailed: 'Connections for a published port whose target could not be connected (refused, unreachable, timeout).',
  inboundRejected: 'Server-opened streams refused: a port this client did not publish (or the server refused), or over the per-publication limit.',
} as const;

/** The client's transparent listeners (`--redirect`, `--tproxy`). */
export const TRANSPARENT_COUNTERS = {
  transparentAccepted: 'Connections the firewall redirected to --redirect / --tproxy and plait carried to their original destination.',
  transparentNoDestination: 'Redirected connections dropped: no original destination (not redirected, or koffi missing).',
  transparentLoops: 'Redirected connections dropped: the original destination was the plait listener itself (a loop).',
} as const;

/** The client's domain bypass (`--bypass-domain`): addresses learned from DNS answers, added to nftables sets. */
export const BYPASS_COUNTERS = {
  bypassAddressesAdded: 'Addresses of bypassed domains added to (or refreshed in) the router\'s nftables sets.',
  bypassAddressesDropped: 'Addresses of bypassed domains not added: too many were waiting for nft.',
  bypassCommandFailures: 'nft commands that failed to add addresses of bypassed domains.',
} as const;

const ALL: Readonly<Record<string, string>> = {
  ...SESSION_COUNTERS,
  ...ACCEPTOR_COUNTERS,
  ...SERVER_COUNTERS,
  ...CLIENT_COUNTERS,
  ...TRANSPARENT_COUNTERS,
  ...BYPASS_COUNTERS,
};

/** What a counter counts, for /metrics HELP lines (any component's counter name). */
export function counterHelp(name: string): string | undefined {
  return Object.prototype.hasOwnProperty.call(ALL, name) ? ALL[name] : undefined;
}
