import type { ByteChannel } from './channel.js';
import type { Clock, Timer } from './clock.js';
import type { Config } from './config.js';
import { ErrorCode, PlaitError } from './errors.js';
import { MsgType } from './handshake-messages.js';
import { HandshakeChannel } from './handshake-channel.js';
import { startHello, startJoin } from './handshake.js';
import type { SecretKeys } from './keys.js';
import { RecordOpener, RecordSealer } from './record.js';
import type { Scheduler } from './scheduler.js';
import { Session, type SessionEvents } from './session.js';
import type { Subflow } from './subflow.js';

export interface ConnectOptions {
  secretKeys: SecretKeys;
  config: Config;
  clock: Clock;
  backup?: boolean;
  addrId?: number;
  /** Give up if the handshake (including the server's `ok`) takes longer (ms). */
  timeoutMs?: number;
  scheduler?: Scheduler;
  events?: SessionEvents;
  /** Added to our wall clock for the HELLO timestamp (skew learned from a verified refusal). */
  clockOffsetMs?: number;
}

/** Client: create a session with HELLO over `channel`; resolves once the server's `ok` arrived. */
export async function connectSession(channel: ByteChannel, opts: ConnectOptions): Promise<{ session: Session; subflow: Subflow }> {
  const backup = opts.backup ?? false;
  const addrId = opts.addrId ?? 0;
  const deadline = opts.clock.now() + (opts.timeoutMs ?? opts.config.handshakeTimeoutMs);
  const hc = new HandshakeChannel(channel, opts.clock);
  try {
    const hello = startHello(opts.secretKeys, { backup, addrId }, opts.clock, opts.clockOffsetMs ?? 0);
    hc.send(hello.message);
    const result = hello.finish(await hc.next(deadline));
    const session = new Session({
      role: 'client',
      keys: result.keys,
      config: opts.config,
      clock: opts.clock,
      ...(opts.scheduler ? { scheduler: opts.scheduler } : {}),
      ...(opts.events ? { events: opts.events } : {}),
    });
    const subflow = session.addSubflow({
      channel,
      sealer: new RecordSealer(result.subflowKeys.send),
      opener: new RecordOpener(result.subflowKeys.recv),
      backup,
      addrId,
      leftover: hc.detach(),
    });
    await withDeadline(subflow.ready, opts.clock, deadline);
    return { session, subflow };
  } catch (e) {
    channel.destroy();
    throw e;
  }
}

/** Client: add a subflow to `session` with JOIN over `channel`; resolves after JOIN_OK. */
export async function joinSession(
  session: Session,
  channel: ByteChannel,
  opts: {
    clock: Clock;
    backup?: boolean;
    addrId: number;
    timeoutMs?: number;
    /** The secret's keys: lets us verify the server's refusals (an unverified one only fails this path). */
    secretKeys?: SecretKeys;
  },
): Promise<Subflow> {
  const backup = opts.backup ?? false;
  const deadline = opts.clock.now() + (opts.timeoutMs ?? session.config.handshakeTimeoutMs);
  const hc = new HandshakeChannel(channel, opts.clock);
  try {
    const join = startJoin(session.keys, { backup, addrId: opts.addrId }, opts.secretKeys?.authKey);
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
      sealer: new RecordSealer(ack.subflowKeys.send),
      opener: new RecordOpener(ack.subflowKeys.recv),
      backup,
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
