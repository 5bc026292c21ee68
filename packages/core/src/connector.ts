import type { ByteChannel } from './channel.js';
import { DEFAULT_CIPHER, type CipherName } from './cipher.js';
import type { Clock, Timer } from './clock.js';
import type { Config } from './config.js';
import { ErrorCode, PlaitError, RemoteError } from './errors.js';
import { MsgType } from './handshake-messages.js';
import { HandshakeChannel } from './handshake-channel.js';
import { startHello, startJoin, type ClientUser } from './handshake.js';
import type { SecretKeys } from './keys.js';
import { RecordOpener, RecordSealer } from './record.js';
import type { RecordAeadFactory } from './record-aead.js';
import { roleBackupBit, type SubflowRole } from './roles.js';
import type { Scheduler } from './scheduler.js';
import { Session, type SessionEvents } from './session.js';
import type { Subflow } from './subflow.js';

export interface ConnectOptions {
  secretKeys: SecretKeys;
  /** Name ourselves to a server with several users (plait client --user; PROTOCOL.md 3.2). */
  user?: ClientUser;
  config: Config;
  clock: Clock;
  backup?: boolean;
  /** The subflow's role (wins over `backup`); one the handshake bit cannot say goes out in `prio` after `ok`. */
  role?: SubflowRole;
  addrId?: number;
  /** Give up if the handshake (including the server's `ok`) takes longer (ms). */
  timeoutMs?: number;
  scheduler?: Scheduler;
  /** Target ports whose streams are latency class; sent to the server with the scheduler (`sched`). */
  latencyPorts?: readonly number[];
  events?: SessionEvents;
  /** Added to our wall clock for the HELLO timestamp (skew learned from a verified refusal). */
  clockOffsetMs?: number;
  /** Record cipher for the session (default AES-256-GCM); its JOINs use the same. */
  cipher?: CipherName;
  /** How records reach OpenSSL (default node:crypto); its JOINs use the same. */
  recordAead?: RecordAeadFactory;
}

/** Each client session's cipher, so joinSession repeats it without the caller (or Session) keeping it. */
const sessionCiphers = new WeakMap<Session, CipherName>();

/** Each client session's record AEAD, for its JOINs likewise. */
const sessionAeads = new WeakMap<Session, RecordAeadFactory>();

/** The record cipher a client session negotiated in its HELLO. */
export function sessionCipher(session: Session): CipherName {
  return sessionCiphers.get(session) ?? DEFAULT_CIPHER;
}

/** Client: create a session with HELLO over `channel`; resolves once the server's `ok` arrived. */
export async function connectSession(channel: ByteChannel, opts: ConnectOptions): Promise<{ session: Session; subflow: Subflow }> {
  const backup = opts.role ? roleBackupBit(opts.role) : (opts.backup ?? false);
  const addrId = opts.addrId ?? 0;
  const deadline = opts.clock.now() + (opts.timeoutMs ?? opts.config.handshakeTimeoutMs);
  const hc = new HandshakeChannel(channel, opts.clock);
  try {
    const hello = startHello(opts.secretKeys, { backup, addrId, cipher: opts.cipher ?? DEFAULT_CIPHER }, opts.clock, opts.clockOffsetMs ?? 0, opts.user);
    hc.send(hello.message);
    const result = hello.finish(await hc.next(deadline));
    const session = new Session({
      role: 'client',
      keys: result.keys,
      config: opts.config,
      clock: opts.clock,
      ...(opts.scheduler ? { scheduler: opts.scheduler } : {}),
      ...(opts.latencyPorts ? { latencyPorts: opts.latencyPorts } : {}),
      // The client's choice governs both directions (PROTOCOL.md 6.6 `sched`).
      announceScheduler: true,
      ...(opts.events ? { events: opts.events } : {}),
    });
    sessionCiphers.set(session, result.cipher);
    if (opts.recordAead) sessionAeads.set(session, opts.recordAead);
    const subflow = session.addSubflow({
      channel,
      sealer: new RecordSealer(result.subflowKeys.send, result.cipher, opts.recordAead),
      opener: new RecordOpener(result.subflowKeys.recv, undefined, result.cipher, opts.recordAead),
      backup,
      ...(opts.role ? { role: opts.role } : {}),
      addrId,
      leftover: hc.detach(),
    });
    await withDeadline(subflow.ready, opts.clock, deadline);
    return { session, subflow };
  } catch (e) {
    channel.destroy();
    throw withCipherHint(e, opts.cipher ?? DEFAULT_CIPHER);
  }
}

/**
 * A server older than the cipher flags refuses any non-zero cipher id as
 * "reserved flag bits set" (BAD_MESSAGE): say what that most likely means.
 */
function withCipherHint(e: unknown, cipher: CipherName): unknown {
  if (cipher === DEFAULT_CIPHER || !(e instanceof RemoteError) || e.code !== ErrorCode.BAD_MESSAGE || !/flag/.test(e.message)) return e;
  const reason = e.message.replace(/^peer refused: [A-Z_]+: /, '');
  return new RemoteError(
    e.code,
    `${reason} (a server too old for --cipher ${cipher}? upgrade it, or use --cipher ${DEFAULT_CIPHER})`,
    { verified: e.verified, ...(e.serverTime !== undefined ? { serverTime: e.serverTime } : {}) },
  );
}

/** Client: add a subflow to `session` with JOIN over `channel`; resolves after JOIN_OK. */
export async function joinSession(
  session: Session,
  channel: ByteChannel,
  opts: {
    clock: Clock;
    backup?: boolean;
    /** As in ConnectOptions. */
    role?: SubflowRole;
    addrId: number;
    timeoutMs?: number;
    /** The secret's keys: lets us verify the server's refusals (an unverified one only fails this path). */
    secretKeys?: SecretKeys;
    /** Record cipher to ask for; default: the one the session's HELLO chose. Another is refused (CIPHER). */
    cipher?: CipherName;
  },
): Promise<Subflow> {
  const backup = opts.role ? roleBackupBit(opts.role) : (opts.backup ?? false);
  const deadline = opts.clock.now() + (opts.timeoutMs ?? session.config.handshakeTimeoutMs);
  const hc = new HandshakeChannel(channel, opts.clock);
  try {
    const cipher = opts.cipher ?? sessionCipher(session);
    const instance = session.peerInstance;
    const join = startJoin(session.keys, { backup, addrId: opts.addrId, cipher, ...(instance !== undefined ? { instance } : {}) }, opts.secretKeys?.authKey);
    hc.send(join.message);
    const ack = join.onJoinAck(await hc.next(deadline));
    hc.send(ack.confirm);
    // The answer is the `ok` record, or a cleartext REJECT (e.g. the session filled up meanwhile).
    await hc.waitForBytes(deadline);
    if (hc.peekByte() === MsgType.REJECT) {
      const msg = await hc.next(deadline);
      if (msg.type === MsgType.REJECT) throw join.refusal(msg);
      throw new PlaitError(ErrorCode.PROTOCOL, 'unexpected handshake message after JOIN_CONFIRM');
    }
    if (session.isClosed) throw new PlaitError(ErrorCode.CLOSED, 'session closed during the join');
    const subflow = session.addSubflow({
      channel,
      sealer: new RecordSealer(ack.subflowKeys.send, ack.cipher, sessionAeads.get(session)),
      opener: new RecordOpener(ack.subflowKeys.recv, undefined, ack.cipher, sessionAeads.get(session)),
      backup,
      ...(opts.role ? { role: opts.role } : {}),
      addrId: opts.addrId,
      leftover: hc.detach(),
    });
    // No data goes out before JOIN_OK: the session keeps the subflow pending until `ok`.
    await withDeadline(subflow.ready, opts.clock, deadline);
    return subflow;
  } catch (e) {
    channel.destroy();
    throw e;
  }
}

function withDeadline<T>(p: Promise<T>, clock: Clock, deadline: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer: Timer = clock.setTimeout(
      () => reject(new PlaitError(ErrorCode.TIMEOUT, 'timed out waiting for the server to confirm the subflow')),
      Math.max(0, deadline - clock.now()),
    );
    p.then(
      (v) => {
        timer.cancel();
        resolve(v);
      },
      (e: unknown) => {
        timer.cancel();
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
