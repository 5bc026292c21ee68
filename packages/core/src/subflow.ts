import type { ByteChannel, KernelPathInfo } from './channel.js';
import { WIRE } from './config.js';
import { ErrorCode, PlaitError, ProtocolError } from './errors.js';
import type { Frame } from './frames.js';
import { PathMetrics, WindowedExtreme } from './path-metrics.js';
import { acknowledgedByKernel, CA_LOSS, kernelFeedCap, kernelWindowBytes, pathState, recoveryDelay } from './path-state.js';
import type { RecordOpener, RecordSealer } from './record.js';
import type { SubflowRole } from './roles.js';
import type { SubflowView } from './scheduler.js';
import { StagedRecord } from './staged-record.js';
import type { Stream } from './stream.js';

/** A reliable frame that must reach the peer even if this subflow dies. */
export type ReliableItem =
  | { kind: 'data'; stream: Stream; offset: number; len: number; fin: boolean }
  | { kind: 'frame'; frame: Frame };

export interface SentRecord {
  seq: number;
  sentAt: number;
  bytes: number;
  items: ReliableItem[];
  /** Subflow's delivered-bytes counter and its timestamp when sent (rate samples). */
  delivered: number;
  deliveredAt: number;
  reinjected: boolean;
}

const GAIN_CYCLE = [1.25, 0.85, 1, 1, 1, 1, 1, 1];
const STARTUP_GAIN = 2;
const MIN_RECORD_TARGET = 4096;
const INITIAL_RECORD_TARGET = 16 * 1024 + 64;
const RECORD_TIME_MS = 2;
/**
 * TCP_INFO is read at most this often per subflow (a syscall per read,
 * about 1.5 us): the caps follow the kernel's queues (kernelFeedCap,
 * acknowledgedByKernel), and a stale look makes them late.
 */
const KERNEL_SAMPLE_MS = 5;
/** A path whose kernel retransmitted within this long is lossy (the rate window). */
const LOSSY_MS = 2000;
/** Opportunistic reinjection halves a subflow's share down to this fraction. */
const MIN_SHARE = 1 / 16;

/** PROTOCOL.md section 8, client and server subflow states after the handshake. */
export type SubflowState = 'pending-ok' | 'active' | 'suspect' | 'closed';


/** What the health check says the session should do with a subflow now. */
export type HealthVerdict =
  | { action: 'none' }
  | { action: 'close'; reason: string }
  | { action: 'suspect'; reason: string }
  | { action: 'probe' };

/** The limits the health check and pacing read. */
export interface SubflowTimers {
  deadAfterMs: number;
  minRtoMs: number;
  maxRtoMs: number;
  probeMs: number;
  keepaliveMs: number;
}
export interface PacingConfig {
  initialInflight: number;
  minInflight: number;
  ackSlackMs: number;
  inflightGain: number;
  recordTarget: number;
}

/**
 * One subflow: its channel and record keys, what it has in flight, its
 * measurements, and its own transitions (PROTOCOL.md section 8: pending-ok,
 * active, suspect, closed). Everything that changes this state is a method
 * here, as net/mptcp's subflow.c owns a subflow; the session only decides
 * across subflows (which carries what, what to resend where) and reads the
 * rest.
 */
export class Subflow implements SubflowView {
  private _id: number;
  private _role: SubflowRole;
  /** The role the peer knows of: from the handshake's backup bit, then from `prio` either way. */
  private peerRole: SubflowRole;
  /** Last `seq` of a `prio` we sent, and the last one we applied from the peer (0: none). */
  private prioSent = 0;
  private prioApplied = 0;
  readonly addrId: number;
  private _state: SubflowState;
  readonly metrics = new PathMetrics();

  private readonly inflightRecords: SentRecord[] = [];
  private inflightHead = 0;
  private _inflightBytes = 0;
  private _sentRecords = 0;
  private _recvRecords = 0;
  /** Ack-eliciting records received and not yet acknowledged, since when, and whether one was a PING. */
  private unacked = 0;
  private unackedSince = 0;
  private ackUrgent = false;
  private _writable = true;
  private staged: StagedRecord | undefined;
  /** When the record being filled was started (clock ms). */
  private stagedSince = 0;
  private spareBuf: Uint8Array | undefined;

  private _lastRecvAt: number;
  private _lastSendAt: number;
  private lastProbeAt = 0;
  /** Last time an ack freed records on this subflow. */
  private lastAckAt = 0;

  private _bytesSent = 0;
  private _bytesReceived = 0;
  private _bytesReinjected = 0;
  private _suspectCount = 0;

  // Pacing (BBR-style gain cycle) and the scheduler's view, refreshed before each scheduling round.
  private _recordTarget = INITIAL_RECORD_TARGET;
  private _cap = 0;
  private _srtt = 0;
  private _minRtt = 0;
  private _rate = 0;
  private _extraDelayMs = 0;
  /** Kernel view (TCP_INFO) as last sampled, and when. */
  private _kernel: KernelPathInfo | undefined;
  private kernelAt = -Infinity;
  /** Bytes in flight at the app level when the kernel was last sampled. */
  private inflightAtKernel = 0;
  /** Windowed max of the kernel's delivery-rate samples (bytes/ms), over the app rate's window. */
  private readonly kernelRateMax = new WindowedExtreme(2_000, (a, b) => a > b);
  /** The kernel's retransmission count as last seen, and when it last grew. */
  private kernelRetrans = 0;
  private retransAt = -Infinity;
  /** The path's rate collapsed / its oldest record is overdue (path-state.ts), as of refreshView. */
  private _collapsed = false;
  private _overdue = false;
  /** The fraction of its cap this subflow may fill: halved when its data had to be sent again elsewhere. */
  private share = 1;
  private shareAt = 0;
  /** Set when the session wanted to send here and the cap said no (this round). */
  private capHit = false;
  private startup = true;
  private fullRate = 0;
  private flatRounds = 0;
  private roundStart = 0;

  private readyResolve: (() => void) | undefined;
  private readyReject: ((e: Error) => void) | undefined;
  /** Resolves once the subflow may carry frames (client: after `ok`). */
  readonly ready: Promise<void>;

  constructor(
    readonly channel: ByteChannel,
    readonly sealer: RecordSealer,
    readonly opener: RecordOpener,
    opts: { id: number; backup: boolean; role?: SubflowRole; addrId: number; awaitOk: boolean; now: number },
  ) {
    this._id = opts.id;
    this.peerRole = opts.backup ? 'backup' : 'regular';
    this._role = opts.role ?? this.peerRole;
    this.addrId = opts.addrId;
    this._state = opts.awaitOk ? 'pending-ok' : 'active';
    this._lastRecvAt = opts.now;
    this._lastSendAt = opts.now;
    this.ready = new Promise<void>((resolve, reject) => {
      this.readyResolve = resolve;
      this.readyReject = reject;
    });
    // Callers that never await `ready` must not see an unhandled rejection.
    this.ready.catch(() => undefined);
    if (!opts.awaitOk) this.markReady();
  }

  // ---------------------------------------------------------------- reading

  /** Id assigned by the server (the client learns it from `ok`). */
  get id(): number {
    return this._id;
  }
  get role(): SubflowRole {
    return this._role;
  }
  /** Role `backup` (an overflow subflow is not a backup). */
  get backup(): boolean {
    return this._role === 'backup';
  }
  get state(): SubflowState {
    return this._state;
  }
  get usable(): boolean {
    return this._state === 'active';
  }
  get isClosed(): boolean {
    return this._state === 'closed';
  }
  /** The cap held a frame back in the current pacing round (cleared when the round ends). */
  get capLimitedThisRound(): boolean {
    return this.capHit;
  }
  get writable(): boolean {
    return this._writable;
  }
  /** Bytes sealed and not yet acknowledged, plus the record being filled. */
  get inflight(): number {
    return this._inflightBytes + (this.staged ? this.staged.size : 0);
  }
  get inflightBytes(): number {
    return this._inflightBytes;
  }
  /** Records sealed and sent on this subflow. */
  get sentRecords(): number {
    return this._sentRecords;
  }
  /** Records received and processed from the peer on this subflow. */
  get recvRecords(): number {
    return this._recvRecords;
  }
  get lastRecvAt(): number {
    return this._lastRecvAt;
  }
  get lastSendAt(): number {
    return this._lastSendAt;
  }
  get bytesSent(): number {
    return this._bytesSent;
  }
  get bytesReceived(): number {
    return this._bytesReceived;
  }
  get bytesReinjected(): number {
    return this._bytesReinjected;
  }
  get suspectCount(): number {
    return this._suspectCount;
  }
  /** Plaintext bytes per record on this subflow (adapts to its rate). */
  get recordTarget(): number {
    return this._recordTarget;
  }
  /** Cap on unacknowledged bytes, as last computed by refreshView. */
  get cap(): number {
    return this._cap;
  }
  get srtt(): number {
    return this._srtt;
  }
  get minRtt(): number {
    return this._minRtt;
  }
  get rate(): number {
    return this._rate;
  }
  get extraDelayMs(): number {
    return this._extraDelayMs;
  }
  /** The rate collapsed (kernel delivery rate, or nothing delivered for too long), as of refreshView. */
  get collapsed(): boolean {
    return this._collapsed;
  }
  /** The oldest unacknowledged record waits longer than this path should take, as of refreshView. */
  get overdue(): boolean {
    return this._overdue;
  }
  /** The kernel's view as last sampled (undefined where TCP_INFO is not available). */
  get kernel(): KernelPathInfo | undefined {
    return this._kernel;
  }
  /**
   * Whether the partly filled record may wait for more data (Nagle's rule,
   * bounded): it is under half full, records are in flight (their ACK will
   * run the pump again), and it has waited less than `holdMs`.
   */
  mayHold(now: number, holdMs: number): boolean {
    const rec = this.staged;
    if (!rec || rec.size === 0) return false;
    return rec.size * 2 < this._recordTarget && this._inflightBytes > 0 && now - this.stagedSince < holdMs;
  }

  /**
   * The partly filled record waits for more data (mayHold said so): its
   * payloads are copied in, as the send buffer may release their chunks
   * before it is sealed.
   */
  holdStaged(): void {
    this.staged?.materialize();
  }

  /** When a held record must go out (clock ms). */
  get holdDeadline(): number {
    return this.stagedSince;
  }

  /** Payload room left in the record being filled (0 if none is open). */
  get stagedRoom(): number {
    return this.staged ? this._recordTarget - this.staged.size : 0;
  }
  oldestInflight(): SentRecord | undefined {
    return this.inflightRecords[this.inflightHead];
  }

  // ------------------------------------------------------------- transitions

  private markReady(): void {
    this.readyResolve?.();
    this.readyResolve = this.readyReject = undefined;
  }

  /** Client: the server's `ok` arrived; the subflow gets its id and may carry frames. */
  onOk(id: number): void {
    if (this._state !== 'pending-ok') throw new ProtocolError(ErrorCode.PROTOCOL, 'unexpected ok message');
    this._id = id;
    this._state = 'active';
    this.markReady();
  }

  /** This side changes the role; the session tells the peer (takeRoleAnnouncement). */
  setRole(role: SubflowRole): void {
    this._role = role;
  }

  /** A `prio` to send when the peer does not know the current role yet (after `ok` on a client). */
  takeRoleAnnouncement(): { role: SubflowRole; seq: number } | undefined {
    if (this._state === 'pending-ok' || this._state === 'closed' || this.peerRole === this._role) return undefined;
    this.peerRole = this._role;
    return { role: this._role, seq: ++this.prioSent };
  }

  /**
   * MP_PRIO: the peer changed the role. A `prio` may overtake an older one
   * (they ride on any subflow, and are resent elsewhere when one fails), so
   * one whose `seq` is not above the last applied is stale and ignored.
   */
  onPeerRole(role: SubflowRole, seq: number | undefined): boolean {
    if (seq !== undefined) {
      if (seq <= this.prioApplied) return false;
      this.prioApplied = seq;
    }
    this._role = role;
    this.peerRole = role;
    return true;
  }

  /** The channel can take writes again. */
  onDrain(): void {
    this._writable = true;
  }

  /** Bytes arrived from the peer (authenticated or not yet). */
  onBytesIn(n: number, now: number): void {
    this._lastRecvAt = now;
    this._bytesReceived += n;
  }

  /** A record from the peer was authenticated (it asked for an ACK; a PING asks for one at once). */
  onRecordIn(ackEliciting: boolean, now: number, urgent = false): void {
    this._recvRecords++;
    if (!ackEliciting) return;
    if (this.unacked === 0) this.unackedSince = now;
    this.unacked++;
    if (urgent) this.ackUrgent = true;
  }

  /** Some received record still waits for its ACK. */
  get ackPending(): boolean {
    return this.unacked > 0 && this._state !== 'pending-ok' && this._state !== 'closed';
  }

  /**
   * Whether the pending ACK must go out now on its own: two records or more
   * (as TCP acks every second segment, so the sender's cap never waits on a
   * timer), a PING, or one record that has waited ackDelayMs. Otherwise it
   * rides on the next record this subflow sends, or waits for its time.
   */
  ackDueAt(now: number, delayMs: number): 'now' | 'later' | 'none' {
    if (!this.ackPending) return 'none';
    if (this.ackUrgent || this.unacked >= 2 || now - this.unackedSince >= delayMs) return 'now';
    return 'later';
  }

  /** When the pending ACK falls due by time (clock ms). */
  get ackDeadline(): number {
    return this.unackedSince;
  }

  /** Records to acknowledge; clears the pending ACK. */
  takeAck(): number {
    this.unacked = 0;
    this.ackUrgent = false;
    return this._recvRecords;
  }

  /**
   * The peer acknowledged `records` records of ours: free them, sample RTT
   * and delivery rate, and recover from suspect. An ACK for records never
   * sent is a protocol error (scope: subflow).
   */
  onAck(records: number, now: number): { progressed: boolean; recovered: boolean } {
    if (records > this._sentRecords) throw new ProtocolError(ErrorCode.PROTOCOL, `ack for ${records} records, only ${this._sentRecords} sent`);
    let last: SentRecord | undefined;
    while (this.inflightHead < this.inflightRecords.length) {
      const r = this.inflightRecords[this.inflightHead]!;
      if (r.seq >= records) break;
      this._inflightBytes -= r.bytes;
      this.metrics.delivered += r.bytes;
      this.inflightHead++;
      last = r;
    }
    if (this.inflightHead > 256 && this.inflightHead * 2 > this.inflightRecords.length) {
      this.inflightRecords.splice(0, this.inflightHead);
      this.inflightHead = 0;
    }
    if (!last) return { progressed: false, recovered: false };
    const m = this.metrics;
    m.onRttSample(now, now - last.sentAt);
    // Delivery rate as BBR takes it: bytes acknowledged since this record
    // was sent, over the time since the ack that preceded its sending.
    m.onRateSample(now, m.delivered - last.delivered, now - last.deliveredAt);
    m.deliveredAt = now;
    this.lastAckAt = now;
    if (this._state !== 'suspect') return { progressed: true, recovered: false };
    this._state = 'active';
    this.restartProbe();
    return { progressed: true, recovered: true };
  }

  /**
   * The per-tick health check (PROTOCOL.md section 8 / 9): time without ack
   * progress closes (dead-after) or suspects the subflow; suspect and idle
   * ones are probed. The session acts on the verdict.
   */
  checkHealth(now: number, t: SubflowTimers): HealthVerdict {
    if (this._state === 'pending-ok' || this._state === 'closed') return { action: 'none' };
    const oldest = this.oldestInflight();
    if (oldest) {
      // Time without ack progress (as TCP restarts its RTO on every ack): a
      // slow path draining a queue is alive; only a silent one is suspect.
      const age = now - Math.max(oldest.sentAt, this.lastAckAt);
      if (age > t.deadAfterMs) return { action: 'close', reason: `no acknowledgement for ${Math.round(age / 1000)} s` };
      const rto = this.metrics.rto(t.minRtoMs, t.maxRtoMs);
      // A path that still delivers the peer's bytes is alive, its acks just
      // queue behind data; a silent one (both ways) is suspect after one
      // RTO. One-way failures are caught after four.
      const silentFor = now - this._lastRecvAt;
      // The kernel's view, where there is one: a connection in RTO recovery
      // is failing now, even if the peer's bytes still arrive. (Its acks say
      // nothing the other way: a TCP-terminating middlebox acknowledges
      // bytes the peer never gets.)
      const inRto = this._kernel?.caState === CA_LOSS;
      if (this._state === 'active' && ((age > rto && (silentFor > rto || inRto)) || age > 4 * rto)) {
        return { action: 'suspect', reason: `no acknowledgement for ${Math.round(age)} ms (timeout ${Math.round(rto)} ms)` };
      }
    }
    if (this._state === 'suspect' && now - this.lastProbeAt >= t.probeMs) return { action: 'probe' };
    if (this._state === 'active' && !oldest && now - this._lastSendAt >= t.keepaliveMs) return { action: 'probe' };
    return { action: 'none' };
  }

  /** active -> suspect. Returns false if it was not active. */
  markSuspect(): boolean {
    if (this._state !== 'active') return false;
    this._state = 'suspect';
    this._suspectCount++;
    return true;
  }

  /** A PING goes out now (probe or keepalive). */
  noteProbe(now: number): void {
    this.lastProbeAt = now;
  }

  /**
   * -> closed. Drops the record being filled and fails `ready`. Returns
   * whether it was still waiting for `ok` (then nobody had seen it up), or
   * undefined if it was already closed.
   */
  close(reason: string, error?: Error): { wasPending: boolean } | undefined {
    if (this._state === 'closed') return undefined;
    const wasPending = this._state === 'pending-ok';
    this._state = 'closed';
    // The record being filled stays for takeStaged(): its frames were never
    // sent, and the session resends them elsewhere.
    this.readyReject?.(error ?? new PlaitError(ErrorCode.CLOSED, `subflow closed before it was ready: ${reason}`));
    this.readyResolve = this.readyReject = undefined;
    return { wasPending };
  }

  /** Unacknowledged records not yet reinjected (marks them reinjected). */
  *takeForReinjection(): Generator<SentRecord> {
    for (let i = this.inflightHead; i < this.inflightRecords.length; i++) {
      const r = this.inflightRecords[i]!;
      if (r.reinjected) continue;
      r.reinjected = true;
      yield r;
    }
  }

  /**
   * The reliable frames of the record being filled, which was never sent:
   * taken (and the record dropped) when the subflow closes or turns suspect,
   * so a held record's data goes out on another subflow.
   */
  takeStaged(): ReliableItem[] {
    const rec = this.staged;
    this.staged = undefined;
    return rec ? rec.items : [];
  }

  /** Payload bytes of this subflow's records that went out again elsewhere. */
  noteReinjected(bytes: number): void {
    this._bytesReinjected += bytes;
  }

  // ----------------------------------------------------------------- sending

  /**
   * The record being filled, with room for `size` more bytes: the current
   * one if it fits, else (after sealing it) a fresh one. `defaultSize` is
   * the buffer size for a new record.
   */
  stage(size: number, defaultSize: number, now: number): StagedRecord {
    if (this.staged && size > this.staged.room) this.sealStaged(now);
    if (!this.staged) {
      // Reuse the last record's buffer: sealing copied it into the ciphertext.
      const spare = this.spareBuf && this.spareBuf.length >= size ? this.spareBuf : undefined;
      this.spareBuf = undefined;
      this.staged = new StagedRecord(spare ?? new Uint8Array(Math.max(defaultSize, size)));
      this.stagedSince = now;
    }
    return this.staged;
  }

  /** The cap refused a frame of `bytes` here (a cap-limited round says the path is full). */
  noteCapLimited(bytes: number): void {
    if (this.inflight > 0 && this.inflight + bytes > this._cap) this.capHit = true;
  }

  /** The session wanted to send here and the cap said no (tests drive pacing with this). */
  markCapLimited(): void {
    this.capHit = true;
  }

  /**
   * Seal the record being filled and write it. Returns the wire size, or 0
   * if there was nothing to seal. Ack-eliciting records stay in flight until
   * acknowledged.
   */
  sealStaged(now: number): number {
    const rec = this.staged;
    if (!rec || rec.size === 0 || this._state === 'closed') return 0;
    this.staged = undefined;
    const wire = this.sealer.sealParts(rec.plaintext());
    this.spareBuf = rec.buf;
    const seq = this._sentRecords++;
    if (rec.eliciting) {
      if (this._inflightBytes === 0) this.metrics.deliveredAt = now; // idle restart: don't count idle time in the rate
      this.inflightRecords.push({ seq, sentAt: now, bytes: rec.size, items: rec.items, delivered: this.metrics.delivered, deliveredAt: this.metrics.deliveredAt, reinjected: false });
      this._inflightBytes += rec.size;
    }
    this._lastSendAt = now;
    this._bytesSent += wire.length;
    if (!this.channel.write(wire)) this._writable = false;
    return wire.length;
  }

  /** The record counter is about to run out (PROTOCOL.md section 5): the subflow must be replaced. */
  get counterExhausted(): boolean {
    return this._sentRecords >= WIRE.RECORD_COUNTER_LIMIT;
  }

  /**
   * Seal `plaintext` as one record outside the staging path, untracked (not
   * reinjected if lost). For tests that play a broken peer.
   */
  sendRecord(plaintext: Uint8Array, now: number): void {
    const wire = this.sealer.seal(plaintext);
    this._sentRecords++;
    this._lastSendAt = now;
    this._bytesSent += wire.length;
    if (!this.channel.write(wire)) this._writable = false;
  }

  // ------------------------------------------------------------------ pacing

  /**
   * The cap's multiple of the BDP, BBR-style: during startup 2x until the
   * rate stops growing (three round trips under +25%), then a cycle of one
   * round trip probing above the estimate, one draining below, six at it, so
   * the queue kept in the path stays near the slack, not a fraction of a BDP.
   */
  private gainAt(now: number, base: number): number {
    const round = Math.max(this._minRtt, 10);
    if (now - this.roundStart >= round) {
      this.roundStart = now;
      if (this.startup) {
        if (this._rate >= this.fullRate * 1.25) {
          this.fullRate = this._rate;
          this.flatRounds = 0;
        } else if (this.capHit && ++this.flatRounds >= 3) {
          // Only a round in which the subflow was held back by its cap says
          // the path is full; an idle or scheduler-starved one says nothing.
          this.startup = false;
        }
      }
      this.capHit = false;
    }
    if (this.startup) return STARTUP_GAIN;
    return GAIN_CYCLE[Math.floor(now / round) % GAIN_CYCLE.length]! * base;
  }

  /**
   * Its data had to be sent again on a faster subflow (opportunistic
   * reinjection): halve its share, at most once per round trip, as Linux
   * MPTCP halves the slow subflow's window.
   */
  penalize(now: number): void {
    if (now - this.shareAt < Math.max(this._srtt, 10) && this.share < 1) return;
    this.share = Math.max(MIN_SHARE, this.share / 2);
    this.shareAt = now;
  }

  /** The fraction of its cap this subflow may fill (1 unless penalized). */
  get shareOfCap(): number {
    return this.share;
  }

  /** Unacknowledged records not yet sent again elsewhere (oldest first). */
  *unreinjected(): Generator<SentRecord> {
    for (let i = this.inflightHead; i < this.inflightRecords.length; i++) {
      const r = this.inflightRecords[i]!;
      if (!r.reinjected) yield r;
    }
  }

  /** Measure the path afresh (new subflow, or back from suspect). */
  restartProbe(): void {
    this.startup = true;
    this.fullRate = 0;
    this.flatRounds = 0;
  }

  /**
   * Refresh the scheduler's view and the cap before a scheduling round.
   * This advances the pacing cycle: only the sender calls it (stats read
   * `metrics` and `cap` instead).
   */
  refreshView(now: number, c: PacingConfig, calm = false): void {
    if (now - this.kernelAt >= KERNEL_SAMPLE_MS) {
      this.kernelAt = now;
      this._kernel = this.channel.kernelInfo?.();
      this.inflightAtKernel = this._inflightBytes;
      const dr = this._kernel?.deliveryRateBytesPerSec ?? 0;
      if (dr > 0) this.kernelRateMax.update(now, dr / 1000);
      const r = this._kernel?.totalRetrans ?? 0;
      if (r > this.kernelRetrans) this.retransAt = now;
      this.kernelRetrans = r;
    }
    const lossy = now - this.retransAt < LOSSY_MS;
    const k = this._kernel;
    // App-level measurements first (they include the peer's processing);
    // the kernel's until the app has its own.
    this._srtt = this.metrics.srtt || (k?.rttMs ?? 0);
    this._minRtt = this.metrics.minRtt(now) || (k?.minRttMs ?? 0);
    const oldest = this.oldestInflight();
    const st = pathState({
      now,
      appRate: this.metrics.rate(now),
      srtt: this._srtt,
      inflight: this._inflightBytes,
      cap: this._cap,
      delivered: this.metrics.delivered,
      ...(oldest ? { oldest: { sentAt: oldest.sentAt, delivered: oldest.delivered, deliveredAt: oldest.deliveredAt } } : {}),
      ...(k ? { kernel: k, kernelRateMax: this.kernelRateMax.get(now) } : {}),
      lossy,
    });
    this._rate = st.rate;
    this._collapsed = st.collapsed;
    this._overdue = st.overdue;
    this._extraDelayMs = recoveryDelay(k, this._srtt);
    // The share halved by opportunistic reinjection doubles back each round trip the path behaves.
    if (this.share < 1 && !st.collapsed && now - this.shareAt >= Math.max(this._srtt, 10)) {
      this.share = Math.min(1, this.share * 2);
      this.shareAt = now;
    }
    // A little over the measured bandwidth-delay product: enough to fill the
    // path and let the rate estimate grow (by the gain each round trip), not
    // enough to queue deep in its buffers, where every byte is latency for
    // the frames behind it. The slack covers acks that arrive in bursts
    // (receiver busy, batching), which on fast paths would starve the pipe.
    // Calm (latency-class traffic in the session): no probing above the
    // estimate, so the queue ahead of latency frames stays at the slack.
    const gain = calm ? Math.min(this.gainAt(now, c.inflightGain), c.inflightGain) : this.gainAt(now, c.inflightGain);
    // A collapsed path loses the floor: on a trickle, the floor is what strands data.
    const floor = st.collapsed ? MIN_RECORD_TARGET : c.minInflight;
    let cap = this._rate > 0 && this._minRtt > 0 ? Math.max(floor, this._rate * (gain * this._minRtt + c.ackSlackMs)) : c.initialInflight;
    // On a lossy path the kernel's congestion control, which sees losses
    // the app-level rate misreads as a slower path, sets the pace: the path
    // may hold at least the kernel's window, and whatever keeps the
    // kernel's unsent queue from running dry before the next look at it
    // (kernelFeedCap). (Lossy paths only: on a clean one the app's cap is
    // the tighter, and the kernel's window would only queue more ahead of
    // every frame.)
    // Bytes the peer's kernel already has are off the path: the cap, which
    // sizes the path's queue, need not count them while the peer's app is
    // late to acknowledge (a busy receiver), up to one cap more.
    if (!st.collapsed) cap += Math.min(cap, acknowledgedByKernel(k, this.inflightAtKernel));
    if (!st.collapsed && lossy) {
      const horizon = KERNEL_SAMPLE_MS + c.ackSlackMs;
      cap = Math.max(cap, kernelWindowBytes(k), kernelFeedCap(k, this.inflightAtKernel, this._rate, horizon));
    }
    this._cap = Math.max(MIN_RECORD_TARGET, cap * this.share);
    // A record is usable only once it has wholly arrived: keep one record's
    // serialisation time near a couple of milliseconds on slow links.
    this._recordTarget =
      this._rate > 0 ? Math.min(c.recordTarget, Math.max(MIN_RECORD_TARGET, Math.round(this._rate * RECORD_TIME_MS))) : INITIAL_RECORD_TARGET;
  }
}
