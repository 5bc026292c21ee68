import { Acceptor, type AcceptorOptions } from '../src/acceptor.js';
import { VirtualClock } from '../src/clock.js';
import { makeConfig, type Config } from '../src/config.js';
import { connectSession, joinSession } from '../src/connector.js';
import { deriveSecretKeys } from '../src/keys.js';
import { MemoryLink, type LinkOptions } from '@plait/testkit';
import type { SubflowRole } from '../src/roles.js';
import type { Scheduler } from '../src/scheduler.js';
import type { Session, SessionEvents } from '../src/session.js';
import type { Stream } from '../src/stream.js';

export const SECRET = 'test-secret-0123456789abcdef';

/** A server acceptor for tests: the shared secret, 16 sessions, a 30 s grace; `extra` adds or overrides. */
export function testAcceptor(clock: VirtualClock, config: Config, extra: Partial<AcceptorOptions> & Pick<AcceptorOptions, 'onSession'>): Acceptor {
  return new Acceptor({ secretKeys: deriveSecretKeys(SECRET), config, clock, maxSessions: 16, graceMs: 30_000, ...extra });
}

export interface Pair {
  clock: VirtualClock;
  client: Session;
  server: () => Session;
  acceptor: Acceptor;
  links: MemoryLink[];
  config: Config;
}

/** Wire a client and a server session over `links.length` in-memory subflows. */
export async function makePair(opts: {
  links: (LinkOptions & { backup?: boolean; role?: SubflowRole })[];
  config?: Partial<Config>;
  onServerStream?: (s: Stream, target: { host: string; port: number }) => void;
  serverEvents?: SessionEvents;
  scheduler?: Scheduler;
  /** More acceptor options (e.g. sessionRate). */
  acceptor?: Partial<AcceptorOptions>;
}): Promise<Pair> {
  const clock = new VirtualClock();
  const config = makeConfig(opts.config);
  const secretKeys = deriveSecretKeys(SECRET);
  let serverSession: Session | undefined;
  const acceptor = testAcceptor(clock, config, {
    ...opts.acceptor,
    onSession: (s) => {
      serverSession = s;
      return { ...opts.serverEvents, stream: (st, t) => opts.onServerStream?.(st, t) };
    },
  });
  const links = opts.links.map((l, i) => new MemoryLink(clock, l, `l${i}`));
  const first = links[0]!;
  void acceptor.accept(first.b);
  const connecting = connectSession(first.a, { secretKeys, config: { ...config }, clock, backup: opts.links[0]?.backup ?? false, ...roleOf(opts.links[0]), ...(opts.scheduler ? { scheduler: opts.scheduler } : {}) });
  const { session } = await settle(clock, connecting);
  for (let i = 1; i < links.length; i++) {
    const link = links[i]!;
    void acceptor.accept(link.b);
    await settle(clock, joinSession(session, link.a, { clock, addrId: i, backup: opts.links[i]?.backup ?? false, ...roleOf(opts.links[i]) }));
  }
  return {
    clock,
    client: session,
    server: () => {
      if (!serverSession) throw new Error('no server session');
      return serverSession;
    },
    acceptor,
    links,
    config,
  };
}

const roleOf = (l: { role?: SubflowRole } | undefined): { role?: SubflowRole } => (l?.role ? { role: l.role } : {});

/** Advance virtual time until the promise settles (or fail after `limitMs`). */
export async function settle<T>(clock: VirtualClock, p: Promise<T>, limitMs = 60_000): Promise<T> {
  let done = false;
  let value: T | undefined;
  let error: unknown;
  let failed = false;
  p.then(
    (v) => {
      done = true;
      value = v;
    },
    (e: unknown) => {
      done = true;
      failed = true;
      error = e;
    },
  );
  const start = clock.now();
  while (!done) {
    if (clock.now() - start > limitMs) throw new Error(`did not settle within ${limitMs} virtual ms`);
    await clock.advance(1);
  }
  if (failed) throw error;
  return value as T;
}

/** Collect a stream's incoming bytes, releasing credit as a fast reader would. */
export function collect(s: Stream): { chunks: Uint8Array[]; ended: boolean; reset?: number; total: () => Buffer } {
  const out: { chunks: Uint8Array[]; ended: boolean; reset?: number; total: () => Buffer } = {
    chunks: [],
    ended: false,
    total: () => Buffer.concat(out.chunks),
  };
  s.setHandlers({
    data: (c) => {
      out.chunks.push(c.slice());
      s.release(c.length);
    },
    end: () => void (out.ended = true),
    reset: (code) => void (out.reset = code),
  });
  return out;
}

/** Write all of `data` in pieces, honouring backpressure. */
export function writeAll(s: Stream, data: Uint8Array, piece = 65536, thenEnd = true): void {
  let off = 0;
  const pump = (): void => {
    while (off < data.length) {
      const n = Math.min(piece, data.length - off);
      const ok = s.write(data.subarray(off, off + n));
      off += n;
      if (!ok) return;
    }
    if (thenEnd) s.end();
  };
  s.setHandlers({ drain: pump });
  pump();
}

/** Accept a peer stream and echo it back, releasing credit as it goes. */
export function echoServer(s: Stream): void {
  s.accept();
  s.setHandlers({
    data: (c) => {
      s.write(c.slice());
      s.release(c.length);
    },
    end: () => s.end(),
  });
}
