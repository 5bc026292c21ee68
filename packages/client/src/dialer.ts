import { pipeBoth } from '@plait/node';
import type { Duplex } from 'node:stream';
import { realClock, ResetCode, type Clock } from '@plait/core';

/** Where a proxied connection should go. `host` is IPv4, IPv6 (no brackets) or a domain name. */
export interface Target {
  host: string;
  port: number;
}

/**
 * Opens a connection to `target` (in plait: a stream over the session; the
 * server connects). Resolves once the remote side is connected; rejects with
 * a `DialError` when it could not be, so frontends can report why.
 */
export type Dialer = (target: Target) => Promise<Duplex>;

/** A dial that failed for a reason the remote side told us (a stream RESET code). */
export class DialError extends Error {
  constructor(
    readonly code: ResetCode,
    message: string,
  ) {
    super(message);
    this.name = 'DialError';
  }
}

/** SOCKS5 reply byte for a stream RESET code (PROTOCOL.md section 9). */
export function socksReplyFor(code: ResetCode): number {
  switch (code) {
    case ResetCode.REFUSED:
      return 0x05;
    case ResetCode.HOST_UNREACHABLE:
    case ResetCode.DNS_FAILED:
      return 0x04;
    case ResetCode.NETWORK_UNREACHABLE:
      return 0x03;
    case ResetCode.TIMEOUT:
      return 0x06;
    case ResetCode.NOT_ALLOWED:
      return 0x02;
    default:
      return 0x01;
  }
}

/**
 * Ends a socket after a final message (an error reply) and makes sure it goes
 * away even if the client never closes its side. Incoming bytes are drained:
 * closing a socket with unread data makes the kernel send RST, which could
 * discard the reply before the client reads it.
 */
export function endGracefully(socket: Duplex, data?: Uint8Array | string, lingerMs = 2_000, clock: Clock = realClock): void {
  if (socket.destroyed) return;
  socket.on('error', () => {});
  const timer = clock.setTimeout(() => socket.destroy(), lingerMs);
  socket.once('close', () => timer.cancel());
  socket.resume();
  if (data === undefined) socket.end();
  else socket.end(data);
}

/** Re-exported so frontends and tests import it from one place. */
export { pipeBoth };

/**
 * Runs a frontend on an accepted socket and resolves once the socket has
 * closed; never rejects. Errors are followed by 'close'; the listener keeps
 * them from crashing the process.
 */
export function servingUntilClosed(socket: Duplex, serve: () => void): Promise<void> {
  return new Promise<void>((resolve) => {
    if (socket.destroyed) {
      resolve();
      return;
    }
    socket.once('close', () => resolve());
    socket.on('error', () => {});
    serve();
  });
}
