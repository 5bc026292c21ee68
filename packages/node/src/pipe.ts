import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Joins two duplexes: each one's readable side is piped into the other's
 * writable side with backpressure. The end of one direction is passed on as
 * `end()` (half-close), not as a teardown; an error, or a close before both
 * directions finished, destroys both.
 *
 * Sockets must allow half-open connections for half-close to work
 * (otherwise Node ends their writable side as soon as the peer's FIN
 * arrives); this sets `allowHalfOpen`, but listeners should also be created
 * with `allowHalfOpen: true` so a FIN during a handshake does not already
 * close the socket.
 */
export function pipeBoth(a: Duplex, b: Duplex): void {
  a.allowHalfOpen = true;
  b.allowHalfOpen = true;
  let tornDown = false;
  const teardown = (): void => {
    if (tornDown) return;
    tornDown = true;
    // An abnormal end must not look like a clean one to the application:
    // a socket is reset (RST), not closed with a FIN.
    abort(a);
    abort(b);
  };
  const watch = (self: Duplex): void => {
    self.on('error', teardown);
    self.once('close', () => {
      // Closed after both directions completed: the other side has been (or
      // is being) ended by the pipe and must be left to flush what it holds.
      if (self.readableEnded && self.writableFinished) return;
      teardown();
    });
  };
  watch(a);
  watch(b);
  if (a.destroyed || b.destroyed) {
    teardown();
    return;
  }
  a.pipe(b);
  b.pipe(a);
}

function abort(d: Duplex): void {
  if (d instanceof Socket && !d.destroyed && d.readyState !== 'opening') d.resetAndDestroy();
  else d.destroy();
}
