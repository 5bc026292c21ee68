import { ErrorCode, PlaitError, RemoteError } from '@plait/core';
import { WebSocketDialError } from '@plait/node';
import type { PathSpec } from './path-manager.js';

/** Why a path is down, in words a user can act on (logged once per change, shown in /stats). */
export type PathProblemKind =
  | 'refused'
  | 'unresolvable'
  | 'unreachable'
  | 'timeout'
  | 'address-not-local'
  | 'interface-missing'
  | 'permission'
  | 'auth-failed'
  | 'cipher-refused'
  | 'clock-skew'
  | 'unverified-refusal'
  | 'server-busy'
  | 'handshake-failed'
  | 'connection-lost'
  | 'tls-untrusted'
  | 'tls-failed'
  | 'not-upgraded';

export interface PathProblem {
  kind: PathProblemKind;
  /** One line for logs and /stats `lastError`. */
  message: string;
}

function errnoOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

const describeSkew = (ms: number): string => `${(Math.abs(ms) / 1000).toFixed(1)} s ${ms > 0 ? 'behind' : 'ahead of'}`;

/**
 * Classify a failed subflow attempt on `spec`. `skewMs` is our clock's
 * measured offset from the server's (server minus ours), when a verified
 * refusal revealed it.
 */
export function classifyPathError(e: unknown, spec: PathSpec, skewMs?: number): PathProblem {
  const server = spec.remote.url ?? `${spec.remote.host}:${spec.remote.port}`;
  const local = spec.local.address;
  const text = e instanceof Error ? e.message : String(e);
  const errno = errnoOf(e);
  if (e instanceof PlaitError) {
    const verified = e instanceof RemoteError && e.verified;
    switch (e.code) {
      case ErrorCode.AUTH_FAILED:
        return {
          kind: 'auth-failed',
          message: `authentication failed at ${server}: client and server must use the same secret (${text})`,
        };
      case ErrorCode.STALE_TIMESTAMP:
        if (verified && skewMs !== undefined) {
          return { kind: 'clock-skew', message: `clock skew: this machine's clock is ${describeSkew(skewMs)} the server's; retrying with the server's time (set up NTP)` };
        }
        return { kind: 'unverified-refusal', message: `${server} refused the clock, but the refusal did not prove the secret (ignored; a hostile network on this path?)` };
      case ErrorCode.UNKNOWN_TOKEN:
        if (verified) return { kind: 'handshake-failed', message: `${server} no longer knows the session (it restarted or expired it)` };
        return { kind: 'unverified-refusal', message: `a refusal on this path ("unknown session") did not prove the secret: ignored, retrying later (a hostile network on this path?)` };
      case ErrorCode.CIPHER:
        // Proven or not, it names the fix (the server's reason says which ciphers it takes).
        return { kind: 'cipher-refused', message: `${server} refused the record cipher: ${text}` };
      case ErrorCode.DRAINING:
        return { kind: 'server-busy', message: `${server} is shutting down (draining): ${verified ? 'retrying at once, a load balancer sends the retry to another instance' : 'the refusal did not prove the secret; retrying later'}` };
      case ErrorCode.BUSY:
      case ErrorCode.SESSION_FULL:
        return { kind: 'server-busy', message: `${server} is busy: ${text}` };
      case ErrorCode.TIMEOUT:
        return { kind: 'timeout', message: `no handshake answer from ${server} in time (the path drops packets, or it is not a plait server)` };
      case ErrorCode.CLOSED:
        return { kind: 'connection-lost', message: `${server} closed the connection during the handshake` };
      default:
        return { kind: 'handshake-failed', message: `handshake with ${server} failed: ${text}` };
    }
  }
  if (e instanceof WebSocketDialError) {
    switch (e.code) {
      case 'WS_TLS':
        return { kind: e.tlsCode && /CERT|SELF_SIGNED|UNABLE_TO|ALTNAME/.test(e.tlsCode) ? 'tls-untrusted' : 'tls-failed', message: text };
      case 'WS_HTTP_STATUS':
      case 'WS_NOT_PLAIT':
        return { kind: 'not-upgraded', message: text };
      default:
        return { kind: 'handshake-failed', message: text };
    }
  }
  switch (errno) {
    case 'ECONNREFUSED':
      return { kind: 'refused', message: `${server} refused the connection (is plait server running there, on that port?)` };
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
    case 'EAI_FAIL':
      return { kind: 'unresolvable', message: `cannot resolve ${spec.remote.host} (DNS: ${errno})` };
    case 'EADDRNOTAVAIL':
      return {
        kind: 'address-not-local',
        message: local ? `${local} is not an address of this machine (check --bind)` : `no local address can reach ${server}`,
      };
    case 'ENODEV':
      return { kind: 'interface-missing', message: `interface ${spec.local.device ?? '?'} does not exist (any more)` };
    case 'EPERM':
    case 'EACCES':
      return {
        kind: 'permission',
        message: `not permitted to bind to ${spec.local.device ? `interface ${spec.local.device}` : 'this address'} (--via needs root or CAP_NET_RAW)`,
      };
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ENETDOWN':
      return { kind: 'unreachable', message: `${server} is unreachable from ${local ?? 'the default route'} (${errno})` };
    case 'ETIMEDOUT':
      return { kind: 'timeout', message: `connecting to ${server} from ${local ?? 'the default route'} timed out` };
    case 'ECONNRESET':
    case 'EPIPE':
      return { kind: 'connection-lost', message: `connection to ${server} reset during the handshake` };
    default:
      break;
  }
  return { kind: 'handshake-failed', message: text };
}
