import type { ByteChannel } from './channel.js';
import type { CipherName } from './cipher.js';
import type { Clock, Timer } from './clock.js';
import type { Config } from './config.js';
import { ACCEPTOR_COUNTERS, makeCounters, rejectCounter } from './counters.js';
import { ErrorCode, PlaitError, RemoteError } from './errors.js';
import { HandshakeChannel } from './handshake-channel.js';
import {
  DEFAULT_HANDSHAKE_SLOTS,
  HandshakeProgress,
  HandshakeSlots,
  sourceKey,
  type EvictionReason,
  type HandshakeSlotLimits,
} from './handshake-slots.js';
import { rejectForError, ServerHandshake, type HelloUsers, type JoinableSession, type UserRefusal } from './handshake.js';
import type { SecretKeys, SessionKeys } from './keys.js';
import { RecordOpener, RecordSealer } from './record.js';
import type { RecordAeadFactory } from './record-aead.js';
import { NonceLog, ReplayCache } from './replay-cache.js';
import type { MemoryBudget } from './memory-budget.js';
import { Session, type SessionEvents } from './session.js';

export interface AcceptorOptions {
  /** The anonymous secret (plait server --secret); optional when `users` is given. */
  secretKeys?: SecretKeys;
  /** Named users (plait server --users, PROTOCOL.md 3.2). */
  users?: HelloUsers;
  /** A HELLO naming a user was refused (counted per user by the owner; `user` is undefined for a bad hint). */
  onUserRefusal?(info: { cause: UserRefusal; user?: string }): void;
  config: Config;
  clock: Clock;
  /** Sessions the server holds at once. */
  maxSessions: number;
  /** Keep a session with no subflow this long for its client to come back (ms). */
  graceMs: number;
  /** Extra server addresses to advertise to clients (ADD_ADDR). */
  advertise?: { id: number; host: string; port: number }[];
  /** A new session, and the user its HELLO proved (undefined: anonymous); set its events (at least `stream`) here. */
  onSession(session: Session, user?: string): SessionEvents;
  /** A session's stream rate in bytes per second, each direction (users file `rate`; user undefined: anonymous); undefined: unlimited. */
  sessionRate?(user: string | undefined): number | undefined;
  /** Sessions one user may hold at once (users file max-sessions); default: no limit but maxSessions. */
  maxUserSessions?(user: string): number | undefined;
  /** Why a named user may not start a session now (e.g. its data cap is used up), or undefined. */
  userBlocked?(user: string): string | undefined;
  /** Pending (unauthenticated) handshakes held at once, overall and per source; see handshake-slots.ts. */
  handshakeSlots?: Partial<HandshakeSlotLimits>;
  /** A connection was refused during the handshake (for logs and counters). */
  onReject?(info: { code: ErrorCode; reason: string; remote: string }): void;
  /** Process-wide stream and byte budget, shared by every session (memory-budget.ts). */
  budget?: MemoryBudget;
  /** Record ciphers a client may choose (plait server --cipher); default both. */
  ciphers?: readonly CipherName[];
  /** How records reach OpenSSL (default node:crypto). */
  recordAead?: RecordAeadFactory;
  /**
   * This instance's id behind a load balancer (plait server --instance-id):
   * sent in every `ok`, so the client's JOINs name it (PROTOCOL.md 4.2).
   */
  instanceId?: number;
}

/**
 * Pre-auth refusals with a cause of their own; every other refusal is
 * counted as `reject<Code>` (e.g. rejectAuthFailed). Each refusal bumps
 * `rejected` and exactly one of these.
 */
/** The one counter a handshake that failed with `code` bumps (besides `rejected`). */
function refusalCounter(code: ErrorCode, evictedBy: EvictionReason | undefined, beforeFirstMessage: boolean): string {
  if (evictedBy === 'source') return 'preauthEvictedSource';
  if (evictedBy === 'global') return 'preauthEvictedGlobal';
  if (code === ErrorCode.TIMEOUT) return beforeFirstMessage ? 'preauthTimeoutFirst' : 'preauthTimeout';
  if (code === ErrorCode.LIMIT) return 'preauthOverflow';
  return rejectCounter(code);
}

class Entry implements JoinableSession {
  readonly nonces: NonceLog;
  graceTimer: Timer | undefined;
  constructor(
    readonly session: Session,
    joinNonces: number,
    /** Chosen by the HELLO; its JOINs must repeat it. */
    readonly cipher: CipherName,
    /** The user its HELLO proved (undefined: the anonymous secret), and that secret's K_auth. */
    readonly user: string | undefined,
    readonly authKey: Uint8Array,
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
  private readonly slots: HandshakeSlots;
  /** Pending handshakes by slot id, to drop the ones evicted. */
  private readonly pending = new Map<number, (reason: EvictionReason) => void>();
  /** Live sessions per named user (for max-sessions); an entry exists only while its count is above 0. */
  private readonly userSessions = new Map<string, number>();
  /** Declared, with what each counts, in counters.ts (ACCEPTOR_COUNTERS). */
  readonly counters: Record<string, number> = makeCounters(ACCEPTOR_COUNTERS);
  /** When drain() was called (clock ms); undefined while taking new sessions. */
  private drainingSince: number | undefined;

  constructor(private readonly opts: AcceptorOptions) {
    this.replay = new ReplayCache(opts.config.replayCacheEntries, opts.config.timestampWindowMs * 2, opts.clock);
    this.slots = new HandshakeSlots({ ...DEFAULT_HANDSHAKE_SLOTS, ...opts.handshakeSlots }, opts.clock);
  }

  get sessionCount(): number {
    return this.sessions.size;
  }

  get handshakesInProgress(): number {
    return this.slots.pending;
  }

  /** Age of the oldest pending handshake (ms). */
  get oldestHandshakeMs(): number {
    return this.slots.oldestAgeMs();
  }

  allSessions(): Session[] {
    return [...this.sessions.values()].map((e) => e.session);
  }

  /**
   * Run the handshake on a freshly accepted connection; `from` is the peer's
   * address (default: from the channel's label), what the per-source limit
   * counts. Resolves true if the channel became a subflow. Never throws.
   */
  async accept(channel: ByteChannel, from?: string): Promise<boolean> {
    const { clock, config } = this.opts;
    const { id, evicted } = this.slots.admit(sourceKey(from ?? hostOfLabel(channel.remoteLabel)));
    for (const e of evicted) this.pending.get(e.id)?.(e.reason);
    let sentBytes = false;
    const hc = new HandshakeChannel(channel, clock, {
      maxBuffered: config.preauthBufferBytes,
      onBytes: () => {
        if (sentBytes) return;
        sentBytes = true;
        this.slots.progress(id, HandshakeProgress.BYTES);
      },
    });
    let evictedBy: EvictionReason | undefined;
    this.pending.set(id, (reason) => {
      const why = reason === 'source' ? 'too many pending handshakes from your address' : 'too many pending handshakes';
      // Count it as an eviction only if nothing else (a close, bad input) ended it first.
      if (hc.abort(new PlaitError(ErrorCode.BUSY, `server busy: ${why}, try again`))) evictedBy = reason;
    });
    const hs = new ServerHandshake<Entry>({
      ...(this.opts.secretKeys ? { secretKeys: this.opts.secretKeys } : {}),
      ...(this.opts.users ? { users: this.opts.users } : {}),
      clock,
      config,
      replayCache: this.replay,
      lookupSession: (token) => this.sessions.get(hex(token)),
      canCreateSession: (user) => {
        const blocked = user === undefined ? undefined : this.opts.userBlocked?.(user);
        if (blocked !== undefined) return blocked;
        return (
          this.sessions.size < this.opts.maxSessions &&
          (user === undefined || (this.userSessions.get(user) ?? 0) < (this.opts.maxUserSessions?.(user) ?? Number.POSITIVE_INFINITY))
        );
      },
      ...(this.opts.ciphers ? { ciphers: this.opts.ciphers } : {}),
      ...(this.opts.instanceId !== undefined ? { instanceId: this.opts.instanceId } : {}),
      draining: () => this.drainingSince !== undefined,
    });
    const start = clock.now();
    const deadline = start + config.handshakeTimeoutMs;
    // Real clients send HELLO/JOIN at once; an idle stranger is dropped sooner.
    const firstDeadline = Math.min(deadline, start + config.handshakeFirstMessageMs);
    const firstReason = `no complete handshake message within ${(firstDeadline - start) / 1000} s`;
    let messages = 0;
    try {
      for (;;) {
        let msg;
        try {
          msg = messages === 0 ? await hc.next(firstDeadline, firstReason) : await hc.next(deadline);
        } catch (e) {
          const step = rejectForError(e);
          if (step.code !== ErrorCode.CLOSED) hc.send(step.message);
          const cause = refusalCounter(step.code, evictedBy, messages === 0);
          this.refuse(channel, step.code, e instanceof Error ? e.message : String(e), cause);
          return false;
        }
        messages++;
        let step;
        try {
          step = hs.onMessage(msg);
        } catch (e) {
          // The client sent REJECT (e.g. our JOIN_ACK failed its check).
          const code = e instanceof RemoteError ? e.code : ErrorCode.PROTOCOL;
          this.refuse(channel, code, `client aborted: ${e instanceof Error ? e.message : String(e)}`, rejectCounter(code));
          return false;
        }
        switch (step.kind) {
          case 'reply':
            hc.send(step.message);
            // Answered a valid message (a JOIN with a live token): evicted last.
            this.slots.progress(id, HandshakeProgress.MESSAGE);
            continue;
          case 'reject':
            hc.send(step.message);
            if (step.userRefusal) this.opts.onUserRefusal?.(step.userRefusal);
            this.refuse(channel, step.code, step.reason, step.userRefusal?.cause ?? rejectCounter(step.code));
            return false;
          case 'session': {
            hc.send(step.reply);
            const rate = this.opts.sessionRate?.(step.user);
            const session = new Session({
              role: 'server',
              keys: step.keys,
              config,
              clock,
              ...(this.opts.budget ? { budget: this.opts.budget } : {}),
              ...(rate !== undefined ? { rateLimit: rate } : {}),
            });
            const entry = new Entry(session, config.joinNonces, step.cipher, step.user, step.secretKeys.authKey);
            const key = hex(step.keys.token);
            this.sessions.set(key, entry);
            if (step.user !== undefined) this.userSessions.set(step.user, (this.userSessions.get(step.user) ?? 0) + 1);
            session.setEvents(this.wrapEvents(entry, key, this.opts.onSession(session, step.user)));
            session.addSubflow({
              channel,
              sealer: new RecordSealer(step.subflowKeys.send, step.cipher, this.opts.recordAead),
              opener: new RecordOpener(step.subflowKeys.recv, undefined, step.cipher, this.opts.recordAead),
              backup: step.backup,
              addrId: step.addrId,
              leftover: hc.detach(),
              ...(this.opts.advertise ? { advertise: this.opts.advertise } : {}),
              ...(this.opts.instanceId !== undefined ? { instance: this.opts.instanceId } : {}),
            });
            this.counters.helloOk!++;
            return true;
          }
          case 'joined': {
            const entry = step.session;
            entry.graceTimer?.cancel();
            entry.graceTimer = undefined;
            entry.session.addSubflow({
              channel,
              sealer: new RecordSealer(step.subflowKeys.send, step.cipher, this.opts.recordAead),
              opener: new RecordOpener(step.subflowKeys.recv, undefined, step.cipher, this.opts.recordAead),
              backup: step.backup,
              addrId: step.addrId,
              leftover: hc.detach(),
              ...(this.opts.instanceId !== undefined ? { instance: this.opts.instanceId } : {}),
            });
            this.counters.joinOk!++;
            return true;
          }
        }
      }
    } finally {
      this.pending.delete(id);
      this.slots.release(id);
    }
  }

  /** Live sessions of one named user. */
  userSessionCount(user: string): number {
    return this.userSessions.get(user) ?? 0;
  }

  /** The user each live session's HELLO proved (undefined: anonymous). */
  sessionUsers(): { session: Session; user: string | undefined }[] {
    return [...this.sessions.values()].map((e) => ({ session: e.session, user: e.user }));
  }

  /**
   * End the sessions of users `revoked` says no longer get in (removed or
   * re-keyed), telling each client why. Their tokens leave the table with
   * them, so their JOINs are refused from now on. Returns how many ended.
   */
  revokeSessions(revoked: (user: string) => boolean, reason = 'access revoked'): number {
    let n = 0;
    for (const e of [...this.sessions.values()]) {
      if (e.user === undefined || !revoked(e.user)) continue;
      n++;
      if (reason === 'access revoked') this.counters.revoked!++;
      e.session.close(new PlaitError(reason === 'access revoked' ? ErrorCode.AUTH_FAILED : ErrorCode.LIMIT, reason));
    }
    return n;
  }

  /** Close every session (server shutdown). */
  closeAll(): void {
    for (const e of [...this.sessions.values()]) e.session.close(new PlaitError(ErrorCode.CLOSED, 'server shutting down'));
  }

  get draining(): boolean {
    return this.drainingSince !== undefined;
  }

  /**
   * Stop taking new sessions: from now on a HELLO is refused (proven) with
   * DRAINING, so its client tries again at once and a balancer sends it to
   * another instance; JOINs of live sessions are still served. Call
   * endDrained() after the grace.
   */
  drain(): void {
    this.drainingSince ??= this.opts.clock.now();
  }

  /**
   * End every session with DRAINING: the client starts a new session at
   * once (on another instance, through the balancer).
   */
  endDrained(): void {
    for (const e of [...this.sessions.values()]) {
      e.session.close(new PlaitError(ErrorCode.DRAINING, 'server instance shutting down: start a new session'));
    }
  }

  private refuse(channel: ByteChannel, code: ErrorCode, reason: string, cause: string): void {
    this.counters.rejected!++;
    this.counters[cause] = (this.counters[cause] ?? 0) + 1;
    this.opts.onReject?.({ code, reason, remote: channel.remoteLabel });
    // Never read a refused stranger again: stop now, and close once the REJECT is out.
    channel.pause();
    channel.end();
  }

  private wrapEvents(entry: Entry, key: string, ev: SessionEvents): SessionEvents {
    return {
      ...ev,
      idle: () => {
        ev.idle?.();
        entry.graceTimer?.cancel();
        // Keep the streams for the client to come back on another path, for
        // the grace counted from the client's last authenticated record (as
        // the client counts it), not from when the last subflow was dropped.
        const expire = (): void => {
          entry.graceTimer = undefined;
          if (entry.session.subflowCount > 0 || entry.session.isClosed) return;
          const left = entry.session.lastHeardAt + this.opts.graceMs - this.opts.clock.now();
          if (left > 0) {
            entry.graceTimer = this.opts.clock.setTimeout(expire, left);
            return;
          }
          this.counters.expired!++;
          entry.session.close(new PlaitError(ErrorCode.TIMEOUT, `no subflow for ${this.opts.graceMs / 1000} s`), false);
        };
        entry.graceTimer = this.opts.clock.setTimeout(expire, Math.max(0, entry.session.lastHeardAt + this.opts.graceMs - this.opts.clock.now()));
      },
      closed: (err) => {
        entry.graceTimer?.cancel();
        this.sessions.delete(key);
        if (entry.user !== undefined) {
          const n = (this.userSessions.get(entry.user) ?? 1) - 1;
          if (n > 0) this.userSessions.set(entry.user, n);
          else this.userSessions.delete(entry.user);
        }
        ev.closed?.(err);
      },
    };
  }
}

/** The host part of a "host:port" / "[v6]:port" label; the label itself if it has no port. */
function hostOfLabel(label: string): string {
  if (label.startsWith('[')) return label.slice(1, Math.max(1, label.indexOf(']')));
  const colon = label.lastIndexOf(':');
  return colon > 0 && label.indexOf(':') === colon ? label.slice(0, colon) : label;
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
