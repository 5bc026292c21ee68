import type { ByteChannel } from './channel.js';
import type { Clock, Timer } from './clock.js';
import type { Config } from './config.js';
import { ErrorCode, PlaitError, RemoteError } from './errors.js';
import { HandshakeChannel } from './handshake-channel.js';
import { rejectForError, ServerHandshake, type JoinableSession } from './handshake.js';
import type { SecretKeys, SessionKeys } from './keys.js';
import { RecordOpener, RecordSealer } from './record.js';
import { NonceLog, ReplayCache } from './replay-cache.js';
import { Session, type SessionEvents } from './session.js';

export interface AcceptorOptions {
  secretKeys: SecretKeys;
  config: Config;
  clock: Clock;
  /** Sessions the server holds at once. */
  maxSessions: number;
  /** Keep a session with no subflow this long for its client to come back (ms). */
  graceMs: number;
  /** Extra server addresses to advertise to clients (ADD_ADDR). */
  advertise?: { id: number; host: string; port: number }[];
  /** A new session; set its events (at least `stream`) here. */
  onSession(session: Session): SessionEvents;
  /** A connection was refused during the handshake (for logs and counters). */
  onReject?(info: { code: ErrorCode; reason: string; remote: string }): void;
}

class Entry implements JoinableSession {
  readonly nonces: NonceLog;
  graceTimer: Timer | undefined;
  constructor(
    readonly session: Session,
    joinNonces: number,
  ) {
    this.nonces = new NonceLog(joinNonces);
  }
  get keys(): SessionKeys {
    return this.session.keys;
  }
  canAddSubflow(): boolean {
    return this.session.canAddSubflow();
  }
  rememberJoinNonce(rA: Uint8Array): boolean {
    return this.nonces.checkAndAdd(rA);
  }
}

/**
 * The server side of plait without sockets: runs the handshake on each
 * accepted channel, creates sessions, joins subflows to them by token, and
 * expires sessions whose subflows are all gone for longer than the grace.
 */
export class Acceptor {
  private readonly sessions = new Map<string, Entry>();
  private readonly replay: ReplayCache;
  private pendingHandshakes = 0;
  readonly counters = { helloOk: 0, joinOk: 0, rejected: 0, expired: 0 } as Record<string, number>;

  constructor(private readonly opts: AcceptorOptions) {
    this.replay = new ReplayCache(opts.config.replayCacheEntries, opts.config.timestampWindowMs * 2, opts.clock);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  get handshakesInProgress(): number {
    return this.pendingHandshakes;
  }

  allSessions(): Session[] {
    return [...this.sessions.values()].map((e) => e.session);
  }

  /** Run the handshake on a freshly accepted connection. Never throws. */
  async accept(channel: ByteChannel): Promise<void> {
    const { clock, config } = this.opts;
    const hc = new HandshakeChannel(channel, clock);
    const hs = new ServerHandshake<Entry>({
      secretKeys: this.opts.secretKeys,
      clock,
      config,
      replayCache: this.replay,
      lookupSession: (token) => this.sessions.get(hex(token)),
      canCreateSession: () => this.sessions.size < this.opts.maxSessions,
    });
    const deadline = clock.now() + config.handshakeTimeoutMs;
    this.pendingHandshakes++;
    try {
      for (;;) {
        let msg;
        try {
          msg = await hc.next(deadline);
        } catch (e) {
          const step = rejectForError(e);
          if (step.code !== ErrorCode.CLOSED) hc.send(step.message);
          this.refuse(channel, step.code, e instanceof Error ? e.message : String(e));
          return;
        }
        let step;
        try {
          step = hs.onMessage(msg);
        } catch (e) {
          // The client sent REJECT (e.g. our JOIN_ACK failed its check).
          const code = e instanceof RemoteError ? e.code : ErrorCode.PROTOCOL;
          this.refuse(channel, code, `client aborted: ${e instanceof Error ? e.message : String(e)}`);
          return;
        }
        switch (step.kind) {
          case 'reply':
            hc.send(step.message);
            continue;
          case 'reject':
            hc.send(step.message);
            this.refuse(channel, step.code, step.reason);
            return;
          case 'session': {
            hc.send(step.reply);
            const session = new Session({ role: 'server', keys: step.keys, config, clock });
            const entry = new Entry(session, config.joinNonces);
            const key = hex(step.keys.token);
            this.sessions.set(key, entry);
            session.setEvents(this.wrapEvents(entry, key, this.opts.onSession(session)));
            session.addSubflow({
              channel,
              sealer: new RecordSealer(step.subflowKeys.send),
              opener: new RecordOpener(step.subflowKeys.recv),
              backup: step.backup,
              addrId: step.addrId,
              leftover: hc.detach(),
              ...(this.opts.advertise ? { advertise: this.opts.advertise } : {}),
            });
            this.counters.helloOk!++;
            return;
          }
          case 'joined': {
            const entry = step.session;
            entry.graceTimer?.cancel();
            entry.graceTimer = undefined;
            entry.session.addSubflow({
              channel,
              sealer: new RecordSealer(step.subflowKeys.send),
              opener: new RecordOpener(step.subflowKeys.recv),
              backup: step.backup,
              addrId: step.addrId,
              leftover: hc.detach(),
            });
            this.counters.joinOk!++;
            return;
          }
        }
      }
    } finally {
      this.pendingHandshakes--;
    }
  }

  /** Close every session (server shutdown). */
  closeAll(): void {
    for (const e of [...this.sessions.values()]) e.session.close(new PlaitError(ErrorCode.CLOSED, 'server shutting down'));
  }

  private refuse(channel: ByteChannel, code: ErrorCode, reason: string): void {
    this.counters.rejected!++;
    this.opts.onReject?.({ code, reason, remote: channel.remoteLabel });
    channel.end();
  }

  private wrapEvents(entry: Entry, key: string, ev: SessionEvents): SessionEvents {
    return {
      ...ev,
      idle: () => {
        ev.idle?.();
        entry.graceTimer?.cancel();
        // Keep the streams for the client to come back on another path.
        entry.graceTimer = this.opts.clock.setTimeout(() => {
          if (entry.session.subflowCount > 0) return;
          this.counters.expired!++;
          entry.session.close(new PlaitError(ErrorCode.TIMEOUT, `no subflow for ${this.opts.graceMs / 1000} s`), false);
        }, this.opts.graceMs);
      },
      closed: (err) => {
        entry.graceTimer?.cancel();
        this.sessions.delete(key);
        ev.closed?.(err);
      },
    };
  }
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
