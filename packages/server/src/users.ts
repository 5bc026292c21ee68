/**
 * The server's named users (plait server --users): the table the handshake
 * looks names up in, swapped whole on reload, and each user's figures for
 * /stats and /metrics. Per-user state is keyed by names from the users file
 * only (never by a name a stranger sent), so it is bounded by the file.
 */
import type { HelloUsers, SecretKeys, ServerIdentity, UserRefusal } from '@plait/core';
import { SocketBytes, type CountedSocket } from '@plait/node';
import type { CapPeriod } from './user-caps.js';

export interface ServerUser {
  keys: SecretKeys;
  revoked: boolean;
  maxSessions?: number;
  /** Stream bytes per second, each direction, per session. */
  rateBytesPerSec?: number;
  /** Bytes both ways (streams and datagrams) per UTC day or month (persisted with --state-dir). */
  cap?: { bytes: number; period: CapPeriod };
  /** Server ports this user's clients may publish (plait client --publish, PROTOCOL.md 7.1). */
  publish?: readonly number[];
}

/** The current users table; `find` is one Map lookup (PROTOCOL.md 3.2). */
export class UserDirectory implements HelloUsers {
  constructor(
    public identity: ServerIdentity,
    private users: ReadonlyMap<string, ServerUser>,
  ) {}

  find(name: string): ServerUser | undefined {
    return this.users.get(name);
  }

  names(): string[] {
    return [...this.users.keys()];
  }

  /** A new table (SIGHUP); handshakes from now on see it. */
  replace(identity: ServerIdentity, users: ReadonlyMap<string, ServerUser>): void {
    this.identity = identity;
    this.users = users;
  }
}

export interface UserFigures {
  user: string;
  sessions: number;
  /** Payload bytes from the user's clients to targets (upload) and back (download): streams closed and open, and UDP datagrams. */
  bytesUp: number;
  bytesDown: number;
  /** Both directions, averaged since the previous snapshot (at least 1 s apart). */
  rateBytesPerSec: number;
  refusals: Partial<Record<UserRefusal, number>>;
  /** With a cap: bytes used in the current period, and the cap. */
  cap?: { used: number; bytes: number; period: CapPeriod };
}

interface Tally {
  /** Target sockets of the user's streams: written = up (to targets), read = down. */
  sockets: SocketBytes;
  /** Datagram payload bytes each way. */
  datagramUp: number;
  datagramDown: number;
  refusals: Partial<Record<UserRefusal, number>>;
  lastAt: number;
  lastBytes: number;
  rate: number;
}

export class UserStats {
  private readonly tallies = new Map<string, Tally>();

  constructor(
    private readonly known: (name: string) => boolean,
    private readonly now: () => number = Date.now,
  ) {}

  private tally(user: string): Tally | undefined {
    let t = this.tallies.get(user);
    if (!t) {
      if (!this.known(user)) return undefined;
      t = { sockets: new SocketBytes(), datagramUp: 0, datagramDown: 0, refusals: {}, lastAt: this.now(), lastBytes: 0, rate: 0 };
      this.tallies.set(user, t);
    }
    return t;
  }

  refused(user: string | undefined, cause: UserRefusal): void {
    const t = user === undefined ? undefined : this.tally(user);
    if (t) t.refusals[cause] = (t.refusals[cause] ?? 0) + 1;
  }

  /** UDP payload bytes of the user's datagrams: `up` relayed to targets, `down` queued back to the client. */
  datagramBytes(user: string, up: number, down: number): void {
    const t = this.tally(user);
    if (!t) return;
    t.datagramUp += up;
    t.datagramDown += down;
  }

  /** A stream's target socket: `bytesWritten` went up (to the target), `bytesRead` came down. */
  streamOpened(user: string, socket: CountedSocket): void {
    this.tally(user)?.sockets.add(socket);
  }

  private static up(t: Tally): number {
    return t.sockets.bytesWritten + t.datagramUp;
  }

  private static down(t: Tally): number {
    return t.sockets.bytesRead + t.datagramDown;
  }

  /** Bytes of `user` so far, both ways: closed and open streams, and datagrams (this process). */
  totalBytes(user: string): number {
    const t = this.tallies.get(user);
    if (!t) return 0;
    return UserStats.up(t) + UserStats.down(t);
  }

  /** Users of the current table, and any with open streams from before a reload; sessions counted by the acceptor. */
  snapshot(current: string[], sessionsOf: (user: string) => number): UserFigures[] {
    const names = new Set([...current, ...[...this.tallies].filter(([, t]) => t.sockets.open > 0).map(([n]) => n)]);
    const now = this.now();
    const out: UserFigures[] = [];
    for (const user of [...names].sort()) {
      const t = this.tally(user) ?? this.tallies.get(user);
      if (!t) continue;
      const up = UserStats.up(t);
      const down = UserStats.down(t);
      if (now - t.lastAt >= 1000) {
        t.rate = ((up + down - t.lastBytes) * 1000) / (now - t.lastAt);
        t.lastAt = now;
        t.lastBytes = up + down;
      }
      out.push({ user, sessions: sessionsOf(user), bytesUp: up, bytesDown: down, rateBytesPerSec: Math.round(t.rate), refusals: { ...t.refusals } });
    }
    return out;
  }
}
