import type { ByteChannel, KernelPathInfo } from './channel.js';
import type { Clock, Timer } from './clock.js';
import type { Config } from './config.js';
import { makeCounters, SESSION_COUNTERS } from './counters.js';
import { WIRE } from './config.js';
import { parseInboundHeader, parseOpenHeader, type ControlMessage, type InboundHeader, type OpenHeader, type StreamOpen } from './control.js';
import { ErrorCode, errorName, PlaitError, ProtocolError, ResetCode } from './errors.js';
import { DatagramOutbox, DedupWindow, type Datagram } from './datagrams.js';
import { DATA_HEADER_SIZE, DatagramFlag, decodeFrames, FrameType, frameSize, writeDataHeader, writeFrame, type DatagramFrame, type Frame } from './frames.js';
import { PeerStreamIds } from './peer-stream-ids.js';
import { SendBudget } from './send-budget.js';
import type { SessionKeys } from './keys.js';
import type { MemoryBudget } from './memory-budget.js';
import type { RecordOpener, RecordSealer } from './record.js';
import { dataTiers, roleBackupBit, type SubflowRole } from './roles.js';
import { createScheduler, EarliestArrivalScheduler, pickLatency, schedulerNames, type Scheduler } from './scheduler.js';
import { DEFAULT_LATENCY_PORTS, StreamClassifier } from './stream-class.js';
import { rateBurst, TokenBucket } from './rate-limit.js';
import { Stream, type StreamHost } from './stream.js';
import { Subflow, type ReliableItem } from './subflow.js';

export type Role = 'client' | 'server';

/** Bulk probes no deeper than its estimate for this long after a latency-class frame (subflow.ts refreshView). */
const LATENCY_CALM_MS = 1000;
/**
 * DATA payloads this large are sealed by reference to the send buffer;
 * smaller ones are copied into the record, where one copy is cheaper than
 * one more cipher call per part.
 */
const BY_REFERENCE_MIN = 4096;

export interface SubflowSetup {
  channel: ByteChannel;
  sealer: RecordSealer;
  opener: RecordOpener;
  backup: boolean;
  /** Client: the role when the handshake's backup bit cannot say it (overflow); announced after `ok`. */
  role?: SubflowRole;
  addrId: number;
  /** Bytes read past the handshake (the first records may ride along). */
  leftover?: Uint8Array;
  /** Server: extra addresses to advertise in the `ok` message (ADD_ADDR). */
  advertise?: { id: number; host: string; port: number }[];
  /** Server: its instance id, sent in the `ok` message for the client's JOINs to name (PROTOCOL.md 4.2). */
  instance?: number;
}

export interface SubflowStats {
  id: number;
  addrId: number;
  local: string;
  remote: string;
  state: string;
  /** True for role `backup` only. */
  backup: boolean;
  role: SubflowRole;
  rttMs: number;
  minRttMs: number;
  rateBytesPerSec: number;
  inflightBytes: number;
  capBytes: number;
  bytesSent: number;
  bytesReceived: number;
  bytesReinjected: number;
  suspectCount: number;
  /** The kernel's own view (Linux TCP_INFO), when available. */
  kernel?: KernelPathInfo;
}

export interface SessionStats {
  role: Role;
  token: string;
  openStreams: number;
  streamsOpened: number;
  subflows: SubflowStats[];
  recvBufferedBytes: number;
  /** Receive credit the streams have outstanding: the most the peer may still send before we read. */
  recvCreditBytes: number;
  /** Unsent + unacknowledged bytes of all streams (the session send budget's measure). */
  sendBufferedBytes: number;
  /** The scheduler for what this side sends (the client's choice on both sides). */
  scheduler: string;
  /** Target ports whose streams are sent in the latency class. */
  latencyPorts: number[];
  counters: Record<string, number>;
}

export interface SessionEvents {
  /** The peer opened a stream to `target`; call `accept()` or `reset()`. */
  stream?(stream: Stream, target: OpenHeader): void;
  subflowUp?(subflow: Subflow): void;
  /** A subflow closed (`closed`) or stopped answering (`suspect`). */
  subflowDown?(subflow: Subflow, reason: string, closed: boolean): void;
  /** A subflow's role changed, here (`local`, setSubflowRole) or by the peer's `prio`. */
  roleChanged?(subflow: Subflow, role: SubflowRole, by: 'local' | 'peer'): void;
  /** The client's scheduler choice arrived (server side); `applied` false for a name this side does not know. */
  schedulerChosen?(name: string, applied: boolean): void;
  /** Server advertised extra addresses (client side). */
  addresses?(addrs: { id: number; host: string; port: number }[]): void;
  /** No subflow left; streams wait for a new one (the owner decides how long). */
  idle?(): void;
  /**
   * A datagram arrived (PROTOCOL.md 6.7; its buffers are the receiver's to
   * keep). A server that sets this handler advertises datagram support in `ok`.
   */
  datagram?(d: Datagram): void;
  /** The client ended a datagram flow (`uclose`); the server frees what it holds for it. */
  datagramFlowClosed?(flow: number): void;
  /** Server: the client asks to publish server port `port` (`pub`, PROTOCOL.md 7.1); answer with `publishState`. */
  publish?(port: number): void;
  /** Client: the server's state for a publication (`pubst`). */
  publishState?(port: number, code: number, reason: string): void;
  /**
   * Client: the server opened a stream for a publication (PROTOCOL.md 7.1);
   * call `accept()` or `reset()`. Without this handler such streams are
   * refused (NOT_ALLOWED).
   */
  inbound?(stream: Stream, header: InboundHeader): void;
  closed?(error: PlaitError | undefined): void;
}


/**
 * One multipath session: many streams over many subflows. It owns framing,
 * acks, reinjection, flow control and scheduling; it never opens sockets and
 * takes time only from the injected clock.
 */
export class Session implements StreamHost {
  readonly role: Role;
  readonly config: Config;
  readonly keys: SessionKeys;
  private readonly clock: Clock;
  private scheduler: Scheduler;
  private events: SessionEvents;

  private readonly streams = new Map<number, Stream>();
  private readonly peerIds: PeerStreamIds;
  private nextLocalId: number;
  private streamsOpened = 0;

  private readonly subflows: Subflow[] = [];
  private nextSubflowId = 1;

  private readonly readyStreams = new Set<Stream>();
  private readonly dirtyWindows = new Set<Stream>();
  private readonly controlQueue: Frame[] = [];
  private readonly reinjectQueue: ReliableItem[] = [];
  /** Datagrams waiting for a subflow with room (they go out ahead of stream data). */
  private readonly outbox: DatagramOutbox;
  /** Sequence numbers of duplicated datagrams seen recently. */
  private readonly dedup = new DedupWindow();
  /** Client: datagram flows the server accepts (from `ok`; 0 = it does not support datagrams). */
  private peerDatagramFlows = 0;
  /** Latency class of streams (stream-class.ts); its ports are the client's choice. */
  private readonly classifier: StreamClassifier;
  /** Client: send the scheduler choice (`sched`) once the first subflow is active. */
  private announceScheduler: boolean;
  /** Streams that cannot send (peer window or own send buffer full): candidates for opportunistic reinjection. */
  private readonly stalled = new Set<Stream>();
  /** Per blocked stream, the acknowledged offset at which its blocking data was already sent again. */
  private readonly reinjectedHead = new WeakMap<Stream, number>();
  /** Until when bulk subflows keep their queue short for latency-class traffic (clock ms). */
  private latencyActiveUntil = -Infinity;

  /** Extra addresses the server advertised (client side; ADD_ADDR). */
  peerAddresses: readonly { id: number; host: string; port: number }[] = [];
  /** The server instance holding the session, from its `ok` (client side); JOINs name it. */
  peerInstance: number | undefined;
  private recvBuffered = 0;
  /** Receive credit all streams have outstanding (Σ granted - released): what the peer may send us. */
  private recvCredit = 0;
  private recvPaused = false;
  /** What the streams hold to send, and the writers it pushed back. */
  private readonly sendBudget: SendBudget;
  private readonly budget: MemoryBudget | undefined;
  private readonly unsubscribeBudget: (() => void) | undefined;
  private pumpScheduled = false;
  // ---- rate limit (users file `rate`): new stream data sent, and stream data received ----
  private sendRate: TokenBucket | undefined;
  private recvRate: TokenBucket | undefined;
  /** Reading paused until the receive bucket refills. */
  private ratePaused = false;
  private rateTimer: Timer | undefined;
  private rateRecvTimer: Timer | undefined;
  // ---- end rate limit ----
  private tickTimer: Timer | undefined;
  /** Held records and delayed ACKs go out when this fires. */
  private flushTimer: Timer | undefined;
  private closedState = false;
  /** Clock time of the last bytes from the peer on any subflow (or of the last handshake). */
  private lastHeard: number;
  /** One per event worth seeing in stats; declared, with what each counts, in counters.ts. */
  readonly counters = makeCounters(SESSION_COUNTERS);

  constructor(opts: {
    role: Role;
    keys: SessionKeys;
    config: Config;
    clock: Clock;
    scheduler?: Scheduler;
    /** Target ports whose streams are latency class (default DEFAULT_LATENCY_PORTS). */
    latencyPorts?: readonly number[];
    /** Client: tell the server the scheduler and latency ports (PROTOCOL.md 6.6 `sched`) so downloads follow them. */
    announceScheduler?: boolean;
    events?: SessionEvents;
    /** Process-wide stream and byte budget shared with other sessions (server). */
    budget?: MemoryBudget;
    /** Stream bytes per second, each direction (a user's `rate`, server side). */
    rateLimit?: number;
  }) {
    this.role = opts.role;
    this.keys = opts.keys;
    this.config = opts.config;
    this.clock = opts.clock;
    this.scheduler = opts.scheduler ?? new EarliestArrivalScheduler();
    this.classifier = new StreamClassifier(opts.latencyPorts ?? DEFAULT_LATENCY_PORTS);
    this.announceScheduler = opts.announceScheduler === true;
    this.events = opts.events ?? {};
    this.nextLocalId = this.role === 'client' ? 1 : 2;
    this.peerIds = new PeerStreamIds(this.role === 'client' ? 0 : 1, this.config.maxStreams);
    this.lastHeard = this.clock.now();
    this.budget = opts.budget;
    this.sendBudget = new SendBudget(this.config, opts.budget);
    this.outbox = new DatagramOutbox(this.config, this.counters);
    if (opts.rateLimit !== undefined) {
      const burst = rateBurst(opts.rateLimit);
      this.sendRate = new TokenBucket(opts.rateLimit, burst, this.clock);
      this.recvRate = new TokenBucket(opts.rateLimit, burst, this.clock);
    }
    this.unsubscribeBudget = opts.budget?.onRelief(() => {
      if (!this.closedState) this.sendBudget.wake();
      if (this.recvPaused) this.checkRecvBudget();
    });
  }

  /** Unsent + unacknowledged bytes of all streams. */
  get sendBufferedBytes(): number {
    return this.sendBudget.buffered;
  }

  /**
   * When the peer last showed a sign of life (bytes on any subflow, or a
   * completed handshake): the outage grace is counted from here, not from
   * when the last subflow was finally declared dead.
   */
  get lastHeardAt(): number {
    return this.lastHeard;
  }

  /** True while at least one subflow can carry data (active, not suspect). */
  get hasUsableSubflow(): boolean {
    return this.subflows.some((sf) => sf.usable);
  }

  setEvents(events: SessionEvents): void {
    this.events = events;
  }

  setScheduler(s: Scheduler): void {
    this.scheduler = s;
  }

  get isClosed(): boolean {
    return this.closedState;
  }

  get subflowCount(): number {
    return this.subflows.length;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Subflows that carry (or could carry) data. */
  get liveSubflows(): readonly Subflow[] {
    return this.subflows;
  }

  canAddSubflow(): boolean {
    return !this.closedState && this.subflows.length < this.config.maxSubflows;
  }

  /**
   * Change a subflow's role on this side and tell the peer with `prio`, so
   * both directions follow it. A client subflow still waiting for `ok` takes
   * the role now and announces it when `ok` comes (the peer cannot name it
   * before). False for a subflow not (or no longer) in this session.
   */
  setSubflowRole(sf: Subflow, role: SubflowRole): boolean {
    if (this.closedState || !this.subflows.includes(sf)) return false;
    if (sf.role !== role) {
      sf.setRole(role);
      this.counters.rolesChangedLocally++;
      this.events.roleChanged?.(sf, role, 'local');
    }
    this.announceRole(sf);
    this.schedulePump();
    return true;
  }

  private announceRole(sf: Subflow): void {
    const a = sf.takeRoleAnnouncement();
    if (!a) return;
    this.queueControl({ type: FrameType.CONTROL, message: { t: 'prio', subflow: sf.id, backup: roleBackupBit(a.role), role: a.role, seq: a.seq } });
  }

  // ------------------------------------------------------------ subflows

  /**
   * Attach an authenticated subflow. The server sends `ok` (JOIN_OK) as its
   * first record; the client waits for it before sending anything.
   */
  addSubflow(setup: SubflowSetup): Subflow {
    if (this.closedState) throw new PlaitError(ErrorCode.CLOSED, 'session is closed');
    const now = this.clock.now();
    this.lastHeard = now;
    const isServer = this.role === 'server';
    const sf = new Subflow(setup.channel, setup.sealer, setup.opener, {
      id: isServer ? this.nextSubflowId++ : 0,
      backup: setup.backup,
      ...(setup.role ? { role: setup.role } : {}),
      addrId: setup.addrId,
      awaitOk: !isServer,
      now,
    });
    this.subflows.push(sf);
    setup.channel.setHandlers({
      data: (chunk) => this.onChannelData(sf, chunk),
      drain: () => {
        sf.onDrain();
        this.schedulePump();
      },
      close: (err) => this.closeSubflow(sf, err ? `connection lost: ${err.message}` : 'connection closed', false),
    });
    if (this.recvPaused || this.ratePaused) setup.channel.pause();
    if (isServer) {
      const ok: ControlMessage = { t: 'ok', subflow: sf.id };
      if (setup.advertise && setup.advertise.length > 0) ok.addrs = setup.advertise;
      if (this.events.datagram) ok.dgram = this.config.maxDatagramFlows;
      if (setup.instance !== undefined) ok.instance = setup.instance;
      this.stageFrame(sf, { type: FrameType.CONTROL, message: ok }, undefined);
      this.sealStaged(sf);
      this.events.subflowUp?.(sf);
    }
    if (setup.leftover && setup.leftover.length > 0) this.onChannelData(sf, setup.leftover);
    this.ensureTick();
    this.schedulePump();
    return sf;
  }

  private onChannelData(sf: Subflow, chunk: Uint8Array): void {
    if (sf.isClosed || this.closedState) return;
    sf.onBytesIn(chunk.length, this.clock.now());
    let plaintext: Uint8Array | undefined;
    try {
      sf.opener.push(chunk);
    } catch (e) {
      this.subflowError(sf, e);
      return;
    }
    for (;;) {
      try {
        plaintext = sf.opener.next();
      } catch (e) {
        this.subflowError(sf, e);
        return;
      }
      if (!plaintext) break;
      // Only an authenticated record is a sign of life: garbage proves nothing.
      this.lastHeard = sf.lastRecvAt;
      this.counters.recordsReceived++;
      // Decode the whole record before acting on any of it: a malformed
      // frame means this subflow's framing can no longer be trusted, and the
      // record is then dropped as a whole (the peer resends it elsewhere).
      const frames: Frame[] = [];
      try {
        decodeFrames(plaintext, (f) => frames.push(f));
      } catch (e) {
        this.subflowProtocolError(sf, e);
        return;
      }
      // A record counts as processed once it decoded (PROTOCOL.md 6.2).
      let eliciting = false;
      let ping = false;
      for (const f of frames) {
        if (f.type !== FrameType.ACK) eliciting = true;
        if (f.type === FrameType.PING) ping = true;
      }
      sf.onRecordIn(eliciting, sf.lastRecvAt, ping);
      for (const f of frames) {
        try {
          this.handleFrame(sf, f);
        } catch (e) {
          // Stream-scope errors became RESETs in the handlers; a protocol
          // error reaching here is subflow scope (PROTOCOL.md "Error scope").
          // Anything else is a bug: end the session rather than loop on it.
          if (e instanceof ProtocolError) this.subflowProtocolError(sf, e);
          else this.close(e instanceof PlaitError ? e : new PlaitError(ErrorCode.INTERNAL, String(e)));
          return;
        }
        if (sf.isClosed || this.closedState) return;
      }
    }
    // The opener keeps views of only its unopened bytes (a record is copied
    // out as it is deciphered): the channel may reuse the memory of the rest.
    sf.channel.holding?.(sf.opener.buffered);
    if (sf.ackPending) this.schedulePump();
    this.checkRecvBudget();
  }

  /** A protocol violation scoped to one subflow: close it, reinject its data, keep the session. */
  private subflowProtocolError(sf: Subflow, e: unknown): void {
    this.counters.subflowsClosedProtocol++;
    this.subflowError(sf, e);
  }

  private subflowError(sf: Subflow, e: unknown): void {
    if (e instanceof PlaitError && e.code === ErrorCode.DECRYPT_FAILED) this.counters.decryptFailures++;
    const reason = e instanceof PlaitError ? `${e.codeName}: ${e.message}` : String(e);
    this.closeSubflow(sf, reason, true);
  }

  private handleFrame(sf: Subflow, f: Frame): void {
    switch (f.type) {
      case FrameType.DATA:
        this.onDataFrame(f.stream, f.offset, f.payload, f.fin);
        return;
      case FrameType.ACK: {
        // `subflow` is the id from `ok`; the ACK may ride on any subflow.
        const target = this.subflows.find((s) => s.id === f.subflow && s.state !== 'pending-ok');
        if (target) this.onAck(target, f.records);
        else this.counters.acksUnknownSubflow++; // a subflow that just closed: harmless
        return;
      }
      case FrameType.WINDOW: {
        if (f.stream === 0) {
          this.counters.framesUnknownStream++;
          return;
        }
        const s = this.streams.get(f.stream);
        if (s) {
          const before = s.send.bufferedBytes;
          try {
            s.onWindow(f.ackOffset, f.maxOffset, f.finReceived);
          } catch (e) {
            if (!(e instanceof ProtocolError)) throw e;
            this.streamProtocolError(s, e);
            return;
          }
          if (s.send.bufferedBytes !== before || s.finAcked) this.schedulePump();
        }
        return;
      }
      case FrameType.RESET: {
        if (f.stream === 0) {
          this.counters.framesUnknownStream++;
          return;
        }
        const s = this.streams.get(f.stream);
        if (s) {
          this.forgetStream(s);
          s.onRemoteReset(f.code, f.reason);
        } else if (this.peerIds.isPeer(f.stream) && this.peerIds.mayBeInFlight(f.stream)) {
          // The reset may overtake the stream's first data: remember the id.
          this.rememberFinishedPeerId(f.stream);
        } else {
          this.counters.framesUnknownStream++;
        }
        return;
      }
      case FrameType.PING:
        return;
      case FrameType.CONTROL:
        this.onControl(sf, f.message);
        return;
      case FrameType.DATAGRAM:
        this.onDatagramFrame(f);
        return;
    }
  }

  private onControl(sf: Subflow, m: ControlMessage): void {
    switch (m.t) {
      case 'ok':
        if (this.role !== 'client') throw new ProtocolError(ErrorCode.PROTOCOL, 'unexpected ok message');
        sf.onOk(m.subflow);
        this.announceRole(sf);
        if (this.announceScheduler) {
          this.announceScheduler = false;
          this.queueControl({ type: FrameType.CONTROL, message: { t: 'sched', name: this.scheduler.name, ports: this.classifier.latencyPorts } });
        }
        if (m.instance !== undefined) this.peerInstance = m.instance;
        // Measure the new path at once: an unmeasured subflow is assumed slow.
        this.probe(sf, this.clock.now());
        this.events.subflowUp?.(sf);
        if (m.dgram !== undefined) this.peerDatagramFlows = m.dgram;
        if (m.addrs && m.addrs.length > 0) {
          // addr_id names one address: a repeated id keeps its first entry.
          const seen = new Set<number>();
          const addrs = m.addrs.filter((x) => !seen.has(x.id) && seen.add(x.id));
          this.peerAddresses = addrs;
          this.events.addresses?.(addrs);
        }
        this.schedulePump();
        return;
      case 'close':
        this.close(m.code === ErrorCode.CLOSED ? undefined : new PlaitError(m.code as ErrorCode, `peer closed the session: ${errorName(m.code)} ${m.reason}`), false);
        return;
      case 'prio': {
        const target = this.subflows.find((s) => s.id === m.subflow && s.state !== 'pending-ok');
        if (!target) return; // closed meanwhile, or never ours: harmless
        const role = m.role ?? (m.backup ? 'backup' : 'regular');
        if (target.onPeerRole(role, m.seq)) {
          this.counters.rolesChangedByPeer++;
          this.events.roleChanged?.(target, role, 'peer');
        }
        this.schedulePump();
        return;
      }
      case 'uclose':
        if (this.role === 'server') this.events.datagramFlowClosed?.(m.flow);
        return;
      case 'sched':
        this.onSchedulerChoice(m.name, m.ports);
        return;
      // Each side ignores the other's message (a peer that sends its own is merely confused).
      case 'pub':
        if (this.role === 'server') this.events.publish?.(m.port);
        return;
      case 'pubst':
        if (this.role === 'client') this.events.publishState?.(m.port, m.code, m.reason);
        return;
      case 'unknown':
        return;
    }
  }

  /**
   * The client's scheduler choice (server side): it governs what this side
   * sends too. A name this side does not know leaves its scheduler as it is
   * (PROTOCOL.md 6.6); the ports apply either way. A client ignores `sched`.
   */
  private onSchedulerChoice(name: string, ports: readonly number[] | undefined): void {
    if (this.role !== 'server') return;
    const known = schedulerNames.includes(name);
    if (known && name !== this.scheduler.name) this.scheduler = createScheduler(name);
    if (ports) this.classifier.setPorts(ports);
    this.counters.schedulerChosenByPeer++;
    this.events.schedulerChosen?.(name, known);
    this.schedulePump();
  }

  private onDataFrame(id: number, offset: number, payload: Uint8Array, fin: boolean): void {
    let s = this.streams.get(id);
    if (!s) {
      if (id === 0) {
        this.counters.framesUnknownStream++; // id 0 is never used
        return;
      }
      if (!this.peerIds.isPeer(id)) {
        if (id < this.nextLocalId) return; // late frame of a stream we finished
        // Our parity, never opened: a broken peer. Dropped, not answered:
        // a RESET would retire an id we have yet to use.
        this.counters.framesUnknownStream++;
        return;
      }
      if (this.peerIds.isFinished(id)) return; // finished or reset: a duplicate
      if (this.streams.size >= this.config.maxStreams) {
        this.counters.streamsRefusedLimit++;
        this.refusePeerStream(id, `more than ${this.config.maxStreams} streams`);
        return;
      }
      if (this.budget && !this.budget.tryAddStream()) {
        this.counters.streamsRefusedProcessLimit++;
        this.refusePeerStream(id, 'server at its process-wide stream limit');
        return;
      }
      s = new Stream(this, id, false);
      this.streams.set(id, s);
      this.streamsOpened++;
      this.peerIds.opened(id);
    }
    const heldBefore = s.reassembly.nextOffset + s.reassembly.bufferedBytes;
    let header: Record<string, unknown> | undefined;
    let opened: StreamOpen | undefined;
    try {
      header = s.onData(offset, payload, fin);
      // A client opens streams to a target, a server for a publication (PROTOCOL.md 7, 7.1).
      if (header) opened = this.role === 'server' ? parseOpenHeader(header) : parseInboundHeader(header);
    } catch (e) {
      if (!(e instanceof ProtocolError)) throw e;
      this.streamProtocolError(s, e);
      return;
    }
    // Bytes the reassembly buffer did not take were already there: duplicates.
    const accepted = s.reassembly.nextOffset + s.reassembly.bufferedBytes - heldBefore;
    if (accepted < payload.length) this.counters.duplicateBytes += payload.length - accepted;
    if (this.recvRate && accepted > 0) this.chargeReceived(accepted);
    if (!opened) return;
    if ('pub' in opened) {
      s.inbound = opened;
      if (this.events.inbound) this.events.inbound(s, opened);
      else s.reset(ResetCode.NOT_ALLOWED, 'this client publishes no ports');
    } else {
      s.target = opened;
      if (this.events.stream) this.events.stream(s, opened);
      else s.reset(ResetCode.NOT_ALLOWED, 'this side accepts no streams');
    }
  }

  private refusePeerStream(id: number, reason: string): void {
    this.rememberFinishedPeerId(id);
    this.queueControl({ type: FrameType.RESET, code: ResetCode.LIMIT, stream: id, reason });
  }

  /**
   * A violation confined to one stream (bad header, data past the final
   * size or the credit, a WINDOW acknowledging unsent bytes): reset that
   * stream; the session and its other streams go on.
   */
  private streamProtocolError(s: Stream, e: ProtocolError): void {
    const flow = e.code === ErrorCode.FLOW_CONTROL;
    if (flow) this.counters.streamsResetFlowControl++;
    else this.counters.streamsResetProtocol++;
    s.reset(flow ? ResetCode.FLOW_CONTROL : ResetCode.PROTOCOL, e.message.slice(0, 200));
  }

  private onAck(sf: Subflow, records: number): void {
    const { progressed, recovered } = sf.onAck(records, this.clock.now());
    if (!progressed) return;
    if (recovered) {
      this.counters.subflowsRecovered++;
      this.events.subflowUp?.(sf);
    }
    this.schedulePump();
  }

  /** Close one subflow; its unacknowledged frames go out on the others. */
  closeSubflow(sf: Subflow, reason: string, destroy: boolean): void {
    const closed = sf.close(reason);
    if (!closed) return;
    this.counters.subflowsClosed++;
    const i = this.subflows.indexOf(sf);
    if (i >= 0) this.subflows.splice(i, 1);
    this.reinjectFrom(sf);
    if (destroy) sf.channel.destroy();
    else sf.channel.end();
    if (!closed.wasPending) this.events.subflowDown?.(sf, reason, true);
    if (this.closedState) return;
    if (this.subflows.length === 0) this.events.idle?.();
    this.schedulePump();
  }

  private reinjectFrom(sf: Subflow): void {
    const records = [...sf.takeForReinjection()].map((r) => r.items);
    // Then the record it was filling (held for more data), never sent.
    records.push(sf.takeStaged());
    for (const items of records) {
      for (const item of items) {
        this.reinjectQueue.push(item);
        this.counters.framesReinjected++;
        if (item.kind === 'data') {
          sf.noteReinjected(item.len);
          this.counters.bytesReinjected += item.len;
        }
      }
    }
  }

  private suspect(sf: Subflow, now: number, why: string): void {
    if (!sf.markSuspect()) return;
    this.counters.subflowsSuspected++;
    this.reinjectFrom(sf);
    this.events.subflowDown?.(sf, why, false);
    this.probe(sf, now);
    this.schedulePump();
  }

  private probe(sf: Subflow, now: number): void {
    sf.noteProbe(now);
    this.stageFrame(sf, { type: FrameType.PING }, undefined);
    this.sealStaged(sf);
  }

  // ------------------------------------------------------------- streams

  /** Open a stream to `target` through the peer. Data may be written at once. */
  openStream(target: OpenHeader): Stream {
    return this.open(target);
  }

  /**
   * Server: open a stream to the client for one of its publications
   * (PROTOCOL.md 7.1). The header names the publication, never a target:
   * the client connects where its own flag says.
   */
  openInbound(header: InboundHeader): Stream {
    if (this.role !== 'server') throw new PlaitError(ErrorCode.INTERNAL, 'only a server opens inbound streams');
    return this.open(header);
  }

  /** Client: ask the server to publish `port` (`pub`); its answer comes as `publishState`. */
  requestPublish(port: number): void {
    if (this.closedState || this.role !== 'client') return;
    this.queueControl({ type: FrameType.CONTROL, message: { t: 'pub', port } });
  }

  /** Server: tell the client the state of its publication of `port` (`pubst`). */
  publishState(port: number, code: number, reason: string): void {
    if (this.closedState || this.role !== 'server') return;
    this.queueControl({ type: FrameType.CONTROL, message: { t: 'pubst', port, code, reason } });
  }

  private open(header: StreamOpen): Stream {
    if (this.closedState) throw new PlaitError(ErrorCode.CLOSED, 'session is closed');
    if (this.streams.size >= this.config.maxStreams) {
      throw new PlaitError(ErrorCode.LIMIT, `too many open streams (maxStreams ${this.config.maxStreams})`);
    }
    const id = this.nextLocalId;
    if (id > 0xffff_fffe) throw new PlaitError(ErrorCode.LIMIT, 'stream ids exhausted; reconnect');
    if (this.budget && !this.budget.tryAddStream()) {
      throw new PlaitError(ErrorCode.LIMIT, `too many open streams in this process (processMaxStreams ${this.budget.maxStreams})`);
    }
    this.nextLocalId += 2;
    const s = new Stream(this, id, true, header);
    this.streams.set(id, s);
    this.streamsOpened++;
    this.streamReady(s);
    return s;
  }

  streamReady(s: Stream): void {
    if (s.sendableBytes() > 0 || s.finPending()) this.readyStreams.add(s);
    this.schedulePump();
  }

  streamWindowDirty(s: Stream): void {
    this.dirtyWindows.add(s);
    this.schedulePump();
    if (this.recvPaused) this.checkRecvBudget();
  }

  streamResetLocal(s: Stream, code: number, reason: string): void {
    if (s.isResetPending) this.counters.resetsAfterData++;
    this.queueControl({ type: FrameType.RESET, code, stream: s.id, reason });
    this.forgetStream(s);
  }

  streamCreditChanged(delta: number): void {
    this.recvCredit += delta;
  }

  /**
   * Credit beyond each stream's INITIAL_WINDOW floor is shared under half the
   * receive budget; the other half is room for the floors themselves, so
   * reading pauses (stalling every stream) only when over a hundred streams
   * have stopped reading, not when a few have.
   */
  streamCreditRoom(wanted: number): number {
    return Math.max(0, Math.min(wanted, this.config.sessionRecvBudget / 2 - this.recvCredit));
  }

  streamRecvBufferedChanged(delta: number): void {
    this.addRecvBuffered(delta);
    if (this.recvPaused && delta < 0) this.checkRecvBudget();
  }

  // --------------------------------------------------------- send budget

  streamSendBuffered(_s: Stream, delta: number): void {
    this.sendBudget.changed(delta);
  }

  streamMayWrite(s: Stream): boolean {
    return this.sendBudget.mayWrite(s);
  }

  streamBlocked(s: Stream): void {
    this.stalled.add(s);
    const cause = this.sendBudget.blocked(s);
    if (cause === 'session') this.counters.sendBlockedSession++;
    else if (cause === 'process') this.counters.sendBlockedProcess++;
  }

  streamFinished(s: Stream): void {
    this.forgetStream(s);
  }

  private forgetStream(s: Stream): void {
    if (!this.streams.delete(s.id)) return;
    this.budget?.removeStream();
    this.readyStreams.delete(s);
    this.stalled.delete(s);
    this.sendBudget.forget(s);
    if (this.peerIds.isPeer(s.id)) this.rememberFinishedPeerId(s.id);
  }

  /**
   * Remember a finished peer stream id (frames for it are ignored from now
   * on). An honest peer opens ids in order, so they merge into a few ranges;
   * a peer that leaves more gaps than four times maxStreams is broken or
   * hostile and would make us remember without bound: end the session.
   */
  private rememberFinishedPeerId(id: number): void {
    if (!this.peerIds.finish(id) && !this.closedState) {
      this.close(new ProtocolError(ErrorCode.PROTOCOL, `peer left over ${4 * this.config.maxStreams} gaps in its stream ids`));
    }
  }

  private queueControl(f: Frame): void {
    this.controlQueue.push(f);
    this.schedulePump();
  }

  // ------------------------------------------------------ receive budget

  private addRecvBuffered(delta: number): void {
    this.recvBuffered += delta;
    this.budget?.addBytes(delta);
  }

  /**
   * Pause or resume reading against the receive budget. The total is exact:
   * each stream reports every change of what it holds (one owner, the
   * stream; the session only sums).
   */
  private checkRecvBudget(): void {
    // Under process pressure only sessions holding a window or more pause:
    // one that buffers little is not the cause and keeps going.
    const processOver = this.budget?.pressed === true && this.recvBuffered >= this.config.streamWindow;
    if (!this.recvPaused && (this.recvBuffered > this.config.sessionRecvBudget || processOver)) {
      this.recvPaused = true;
      if (processOver) this.counters.recvPausesProcess++;
      else this.counters.recvPauses++;
      for (const sf of this.subflows) sf.channel.pause();
    } else if (this.recvPaused && this.recvBuffered <= this.config.sessionRecvBudget / 2 && !processOver) {
      this.recvPaused = false;
      if (!this.ratePaused) for (const sf of this.subflows) sf.channel.resume();
    }
  }

  // ------------------------------------------------------------- sending

  private schedulePump(): void {
    if (this.pumpScheduled || this.closedState) return;
    this.pumpScheduled = true;
    queueMicrotask(() => this.pump());
  }

  /** Everything that leaves the session goes through here, once per tick of work. */
  private pump(): void {
    this.pumpScheduled = false;
    if (this.closedState) return;
    const now = this.clock.now();
    const calm = now < this.latencyActiveUntil;
    for (const sf of this.subflows) sf.refreshView(now, this.config, calm);

    // 1. Acks ride on the subflow they acknowledge, ahead of everything; one
    //    not yet due waits to ride on the next record (or for its time).
    const urgent = new Set<Subflow>();
    for (const sf of this.subflows) {
      if (sf.ackDueAt(now, this.config.ackDelayMs) === 'now') {
        this.stageAck(sf);
        urgent.add(sf);
      }
    }
    // 2. Window updates and control frames jump ahead of bulk data.
    const ctl = this.controlSubflow();
    if (ctl && (this.dirtyWindows.size > 0 || this.controlQueue.length > 0)) {
      urgent.add(ctl);
      for (const s of this.dirtyWindows) {
        const w = s.windowFrame();
        const f: Frame = { type: FrameType.WINDOW, finReceived: w.finReceived, stream: s.id, ackOffset: w.ackOffset, maxOffset: w.maxOffset };
        this.stageFrame(ctl, f, { kind: 'frame', frame: f });
      }
      this.dirtyWindows.clear();
      while (this.controlQueue.length > 0) {
        const f = this.controlQueue.shift()!;
        this.stageFrame(ctl, f, { kind: 'frame', frame: f });
      }
    }
    // 2b. Datagrams, ahead of all stream data (PROTOCOL.md 6.7).
    if (this.outbox.length > 0) this.outbox.drain(now, (f) => this.placeDatagram(f, urgent));
    // Seal these now: inside a big data record they would wait for the whole
    // record to cross the link (a record is authenticated as a whole).
    for (const sf of urgent) this.sealStaged(sf);
    // 3. Reinjected data, then new data, as the scheduler allows.
    this.sendReinjections();
    this.sendNewData();
    if (this.reinjectOpportunistically(now)) this.sendReinjections();
    let wakeAt = Infinity;
    for (const sf of this.subflows) {
      if (sf.mayHold(now, this.config.recordHoldMs)) {
        sf.holdStaged();
        wakeAt = Math.min(wakeAt, sf.holdDeadline + this.config.recordHoldMs);
        continue;
      }
      this.sealStaged(sf);
      if (sf.ackDueAt(now, this.config.ackDelayMs) === 'later') wakeAt = Math.min(wakeAt, sf.ackDeadline + this.config.ackDelayMs);
    }
    if (wakeAt !== Infinity) this.armFlush(wakeAt - now);
  }

  // ---- rate limit ----
  private waitForSendTokens(bytes: number): void {
    if (this.rateTimer || !this.sendRate) return;
    this.rateTimer = this.clock.setTimeout(() => {
      this.rateTimer = undefined;
      this.schedulePump();
    }, Math.max(0.25, this.sendRate.waitMs(bytes)));
  }

  /** Bytes arrived (they cannot be refused): over the rate, stop reading every subflow until the bucket is back to zero. */
  private chargeReceived(bytes: number): void {
    const bucket = this.recvRate;
    if (!bucket) return;
    bucket.take(bytes);
    const wait = bucket.waitMs(0);
    if (wait <= 0 || this.ratePaused) return;
    this.ratePaused = true;
    for (const sf of this.subflows) sf.channel.pause();
    this.rateRecvTimer = this.clock.setTimeout(() => {
      this.rateRecvTimer = undefined;
      this.ratePaused = false;
      if (!this.recvPaused && !this.closedState) for (const sf of this.subflows) sf.channel.resume();
    }, wait);
  }
  // ---- end rate limit ----

  /** Run the pump again in `ms` for held records and delayed ACKs (one timer per session). */
  private armFlush(ms: number): void {
    if (this.flushTimer || this.closedState) return;
    // At least a quarter millisecond: a deadline a rounding error away would
    // fire at the same instant again and again.
    this.flushTimer = this.clock.setTimeout(() => {
      this.flushTimer = undefined;
      this.schedulePump();
    }, Math.max(0.25, ms));
  }

  private stageAck(sf: Subflow): void {
    this.stageFrame(sf, { type: FrameType.ACK, subflow: sf.id, records: sf.takeAck() }, undefined);
  }

  private controlSubflow(): Subflow | undefined {
    let best: Subflow | undefined;
    // The lowest-RTT subflow of the first tier that has a writable one (roles.ts).
    for (const tier of dataTiers(this.subflows)) {
      for (const sf of tier) if (!best || (sf.srtt || Infinity) < (best.srtt || Infinity)) best = sf;
      if (best) return best;
    }
    // Nothing writable: control frames are small, queue them on any live subflow.
    return this.subflows.find((sf) => sf.usable) ?? this.subflows.find((sf) => sf.state === 'suspect');
  }

  private sendReinjections(): void {
    while (this.reinjectQueue.length > 0) {
      const item = this.reinjectQueue[0]!;
      if (item.kind === 'frame') {
        const sf = this.controlSubflow();
        if (!sf) return;
        this.reinjectQueue.shift();
        this.stageFrame(sf, item.frame, item);
        continue;
      }
      const s = item.stream;
      const end = item.offset + item.len;
      const start = Math.max(item.offset, s.peerAckOffset);
      if (s.isClosed || (start >= end && !(item.fin && !s.finAcked))) {
        this.reinjectQueue.shift();
        continue;
      }
      const want = Math.min(end - start, WIRE.DATA_MAX_PAYLOAD);
      const targets = this.pickSubflows(DATA_HEADER_SIZE + want);
      if (targets.length === 0) return;
      const len = Math.min(want, this.roomForAll(targets));
      const fin = item.fin && start + len === end;
      for (const sf of targets) this.stageData(sf, s, start, len, fin);
      this.counters.bytesDuplicated += (targets.length - 1) * len;
      if (start + len >= end) this.reinjectQueue.shift();
      else this.reinjectQueue[0] = { kind: 'data', stream: s, offset: start + len, len: end - start - len, fin: item.fin };
    }
  }

  private sendNewData(): void {
    this.sendLatencyFrames();
    while (this.readyStreams.size > 0) {
      const s = this.readyStreams.values().next().value as Stream;
      const sendable = s.sendableBytes();
      if (sendable === 0 && !s.finPending()) {
        this.readyStreams.delete(s);
        this.noteIfStalled(s);
        continue;
      }
      const want = Math.min(sendable, WIRE.DATA_MAX_PAYLOAD);
      // Whole frames only: wait for the tokens of this one rather than send slivers.
      if (this.sendRate && want > 0 && this.sendRate.available() < want) {
        this.waitForSendTokens(want);
        return;
      }
      const targets = this.pickSubflows(DATA_HEADER_SIZE + want);
      if (targets.length === 0) return;
      const len = Math.min(want, this.roomForAll(targets));
      const piece = s.takeNew(len);
      this.sendRate?.take(piece.len);
      for (const sf of targets) this.stageData(sf, s, piece.offset, piece.len, piece.fin);
      this.counters.bytesDuplicated += (targets.length - 1) * piece.len;
      // Round robin between streams, one frame at a time.
      this.readyStreams.delete(s);
      if (s.sendableBytes() > 0 || s.finPending()) this.readyStreams.add(s);
      else this.noteIfStalled(s);
    }
  }

  /** The scheduler's choice in the first role tier where it finds room (regular, then overflow; or backup). */
  private pickSubflows(bytes: number): Subflow[] {
    for (const cands of dataTiers(this.subflows)) {
      if (cands.length === 0) continue;
      // A duplicating scheduler waits for a working subflow whose socket is full rather than skip it.
      const role = cands[0]!.role;
      if (this.scheduler.duplicatesAll && this.subflows.some((sf) => sf.usable && !sf.writable && sf.role === role)) return [];
      for (const sf of cands) sf.noteCapLimited(bytes);
      const picked = this.scheduler.pick(cands, bytes) as Subflow[];
      if (picked.length > 0) return picked;
    }
    return [];
  }

  // ------------------------------------------------- link policy: classes

  /**
   * Latency-class frames (stream-class.ts) go first, on the two subflows
   * where they arrive first, whatever their caps, each in a record of its
   * own sealed at once: behind bulk data they would wait for room and for
   * the record to fill. Bulk streams keep their earliest-arrival frames.
   */
  private sendLatencyFrames(): void {
    if (this.readyStreams.size === 0) return;
    const now = this.clock.now();
    for (const s of [...this.readyStreams]) {
      const sendable = s.sendableBytes();
      if (sendable === 0 && !s.finPending()) continue;
      const want = Math.min(sendable, WIRE.DATA_MAX_PAYLOAD);
      const outstanding = s.send.writtenOffset - s.peerAckOffset;
      if (this.classifier.classify(s, { target: s.target, outstanding }, want, now) !== 'latency') continue;
      // Small frames jump the queue, not the user's rate.
      if (this.sendRate && want > 0 && this.sendRate.available() < want) {
        this.waitForSendTokens(want);
        return;
      }
      const tier = dataTiers(this.subflows).find((t) => t.length > 0);
      if (!tier) return;
      const targets = pickLatency(tier, DATA_HEADER_SIZE + want) as Subflow[];
      for (const sf of targets) this.sealStaged(sf); // its own record, not the tail of a bulk one
      const piece = s.takeNew(want);
      this.sendRate?.take(piece.len);
      this.counters.bytesDuplicated += (targets.length - 1) * piece.len;
      for (const sf of targets) {
        this.stageData(sf, s, piece.offset, piece.len, piece.fin);
        this.sealStaged(sf);
      }
      this.counters.latencyFrames++;
      this.latencyActiveUntil = now + LATENCY_CALM_MS;
      this.readyStreams.delete(s);
      if (s.sendableBytes() > 0 || s.finPending()) this.readyStreams.add(s);
    }
  }

  // ------------------------------------- link policy: opportunistic reinjection

  /**
   * A stream is stalled when it has nothing it may send while its peer's
   * window is full (unsent bytes beyond it), its writer waits for room in
   * its send buffer (which holds the unacknowledged bytes), or all it wrote
   * is sent and waits for acknowledgement (a transfer's tail): each time
   * the receiver waits for the bytes at the left edge.
   */
  private isStalled(s: Stream): boolean {
    return !s.isClosed && s.sendableBytes() === 0 && (s.send.writtenOffset > s.sentOffset || s.writerBlocked || s.sentOffset > s.peerAckOffset);
  }

  private noteIfStalled(s: Stream): void {
    if (this.isStalled(s)) this.stalled.add(s);
  }

  /**
   * Opportunistic reinjection (as Linux MPTCP): a stalled stream (its peer
   * window or its send buffer full) waits for the bytes at the left edge. When those sit
   * on a subflow whose rate collapsed or whose oldest record is overdue,
   * and another subflow works, everything still unacknowledged on that slow
   * subflow goes out again on the others, and its share is halved. Returns
   * whether it queued anything.
   */
  private reinjectOpportunistically(now: number): boolean {
    if (this.stalled.size === 0) return false;
    // Only a subflow that is collapsed or overdue can hold a stall worth breaking: the common case costs one pass.
    if (!this.subflows.some((sf) => sf.usable && (sf.collapsed || sf.overdue))) {
      for (const s of this.stalled) if (!this.isStalled(s)) this.stalled.delete(s);
      return false;
    }
    let queued = false;
    for (const s of [...this.stalled]) {
      if (!this.isStalled(s)) {
        this.stalled.delete(s);
        continue;
      }
      const head = s.peerAckOffset;
      if (this.reinjectedHead.get(s) === head) continue;
      const holder = this.holderOf(s, head);
      if (!holder || !(holder.collapsed || holder.overdue)) continue;
      if (!this.subflows.some((o) => o !== holder && o.usable && o.writable && !o.collapsed)) continue;
      this.reinjectedHead.set(s, head);
      this.counters.opportunisticReinjections++;
      holder.penalize(now);
      this.reinjectFrom(holder);
      queued = true;
    }
    return queued;
  }

  /** The subflow holding, unacknowledged and not yet sent again, the byte at `offset` of `s`. */
  private holderOf(s: Stream, offset: number): Subflow | undefined {
    for (const sf of this.subflows) {
      if (!sf.usable) continue;
      for (const rec of sf.unreinjected()) {
        for (const it of rec.items) {
          if (it.kind === 'data' && it.stream === s && it.offset <= offset && offset < it.offset + it.len) return sf;
        }
      }
    }
    return undefined;
  }

  /** Payload bytes that fit in the subflow's current record (or a fresh one, sized to its rate). */
  private roomFor(sf: Subflow): number {
    const room = sf.stagedRoom - DATA_HEADER_SIZE;
    // Don't cut a frame into a sliver: start a new record instead.
    if (room >= 1024) return Math.min(room, WIRE.DATA_MAX_PAYLOAD);
    // At the cap's edge, the part of a frame that fits under it, down to one
    // of the subflow's records (the scheduler's room check, hasRoom, counts
    // the same): waiting for room for a whole 16 KiB frame would leave up to
    // 16 KiB of a slow subflow's cap unused.
    const capRoom = Math.floor(sf.cap - sf.inflight) - DATA_HEADER_SIZE;
    return Math.min(WIRE.DATA_MAX_PAYLOAD, Math.max(1024, sf.recordTarget - DATA_HEADER_SIZE, capRoom));
  }

  private roomForAll(targets: readonly Subflow[]): number {
    let room: number = WIRE.DATA_MAX_PAYLOAD;
    for (const sf of targets) room = Math.min(room, this.roomFor(sf));
    return room;
  }

  private stageData(sf: Subflow, s: Stream, offset: number, len: number, fin: boolean): void {
    if (sf.ackPending) this.stageAck(sf); // a pending ACK rides along for free
    const size = DATA_HEADER_SIZE + len;
    const rec = sf.stage(size, this.config.recordTarget, this.clock.now());
    rec.pos = writeDataHeader(rec.buf, rec.pos, fin, s.id, offset, len);
    if (len >= BY_REFERENCE_MIN) {
      // Sealed straight from the send buffer: the cipher reads these bytes once, no copy.
      rec.appendByReference(len, (out) => s.send.viewsOut(offset, len, out));
    } else if (len > 0) {
      s.send.copyOut(offset, len, rec.buf, rec.pos);
      rec.pos += len;
    }
    rec.eliciting = true;
    rec.items.push({ kind: 'data', stream: s, offset, len, fin });
    if (rec.size + DATA_HEADER_SIZE + 1024 > sf.recordTarget) this.sealStaged(sf);
  }

  private stageFrame(sf: Subflow, f: Frame, item: ReliableItem | undefined): void {
    if (f.type !== FrameType.ACK && sf.ackPending) this.stageAck(sf); // a pending ACK rides along for free
    const size = frameSize(f);
    const rec = sf.stage(size, this.config.recordTarget, this.clock.now());
    rec.pos = writeFrame(rec.buf, rec.pos, f);
    if (f.type !== FrameType.ACK) rec.eliciting = true;
    if (item) rec.items.push(item);
  }

  /** Seal the record being filled on `sf` and hand it to the channel. */
  private sealStaged(sf: Subflow): void {
    if (sf.sealStaged(this.clock.now()) === 0) return;
    this.counters.recordsSent++;
    if (sf.counterExhausted) this.closeSubflow(sf, 'record counter exhausted; reconnecting', false);
  }

  // ------------------------------------------------------------ datagrams

  /**
   * Datagram flows the peer accepts at once: the server's `maxDatagramFlows`
   * as it advertised in `ok` (client), or our own (server). 0: the peer does
   * not support datagrams, and none may be sent to it.
   */
  get datagramFlows(): number {
    if (this.role === 'server') return this.events.datagram ? this.config.maxDatagramFlows : 0;
    return this.peerDatagramFlows;
  }

  /**
   * Queue a datagram; it goes out ahead of stream data on the working
   * subflow with the lowest smoothed RTT that has room (two of them with
   * `datagramCopies` 2). Unreliable: it may be dropped (queue full, too
   * large, stale) and then only a counter says so. False if not queued.
   */
  sendDatagram(d: Datagram): boolean {
    if (this.closedState || this.datagramFlows === 0) {
      this.counters.datagramsDroppedUnsupported++;
      return false;
    }
    // Over the session's rate a datagram is dropped, not delayed: a policer,
    // as for any UDP traffic (queueing it would only add latency).
    if (this.sendRate && !this.takeDatagramTokens(this.sendRate, d.payload.length)) return false;
    if (this.outbox.push(d, this.clock.now()) !== 'queued') return false;
    this.schedulePump();
    return true;
  }

  /** Datagram bytes under the rate: taken if the bucket holds them, else counted as a drop. */
  private takeDatagramTokens(bucket: TokenBucket, bytes: number): boolean {
    if (bucket.available() < bytes) {
      this.counters.datagramsDroppedRate++;
      return false;
    }
    bucket.take(bytes);
    return true;
  }

  /** Client: the flow ended; the server may free its socket (reliable, unlike the datagrams). */
  closeDatagramFlow(flow: number): void {
    if (this.closedState || this.role !== 'client' || this.peerDatagramFlows === 0) return;
    this.queueControl({ type: FrameType.CONTROL, message: { t: 'uclose', flow } });
  }

  /**
   * Stage `f` on the working subflow(s) with the lowest smoothed RTT that
   * have room (an unmeasured one counts as slowest), in the first role tier
   * where one has (regular, then overflow; or backup, as for data); false
   * when none has.
   */
  private placeDatagram(f: DatagramFrame, urgent: Set<Subflow>): boolean {
    const size = frameSize(f);
    let best: Subflow[] = [];
    for (const tier of dataTiers(this.subflows)) {
      best = tier.filter((sf) => sf.inflight === 0 || sf.inflight + size <= sf.cap);
      if (best.length > 0) break;
    }
    if (best.length === 0) return false;
    const rtt = (sf: Subflow): number => sf.srtt || Infinity;
    best.sort((a, b) => rtt(a) - rtt(b));
    const targets = best.slice(0, Math.min(this.config.datagramCopies, best.length));
    // Copies carry DUP so the receiver delivers the first one only.
    const frame: DatagramFrame = targets.length > 1 ? { ...f, flags: f.flags | DatagramFlag.DUP } : f;
    for (const sf of targets) {
      this.stageFrame(sf, frame, undefined);
      urgent.add(sf);
    }
    this.counters.datagramsSent++;
    return true;
  }

  private onDatagramFrame(f: DatagramFrame): void {
    if ((f.flags & DatagramFlag.DUP) !== 0 && this.dedup.seen(f.seq)) {
      this.counters.datagramsDuplicate++;
      return;
    }
    const handler = this.events.datagram;
    // A client gets datagrams only for flows it opened; a server without a handler never advertised support.
    if (!handler || (this.role === 'client' && this.peerDatagramFlows === 0)) {
      this.counters.datagramsDroppedUnsupported++;
      return;
    }
    // The peer's datagrams count against the same rate as its stream bytes (users file `rate`).
    if (this.recvRate && !this.takeDatagramTokens(this.recvRate, f.payload.length)) return;
    this.counters.datagramsReceived++;
    handler({
      flow: f.flow,
      atyp: f.atyp,
      // Copies: the record plaintext they point into may be reused.
      addr: new Uint8Array(f.addr),
      port: f.port,
      payload: new Uint8Array(f.payload),
      ...((f.flags & DatagramFlag.DNS_TCP) !== 0 ? { dnsTcp: true } : {}),
    });
  }

  // --------------------------------------------------------------- timers

  private ensureTick(): void {
    if (this.tickTimer || this.closedState) return;
    this.tickTimer = this.clock.setTimeout(() => this.tick(), this.config.tickMs);
  }

  private tick(): void {
    this.tickTimer = undefined;
    if (this.closedState) return;
    const now = this.clock.now();
    for (const sf of [...this.subflows]) {
      const verdict = sf.checkHealth(now, this.config);
      switch (verdict.action) {
        case 'close':
          this.closeSubflow(sf, verdict.reason, true);
          break;
        case 'suspect':
          this.suspect(sf, now, verdict.reason);
          break;
        case 'probe':
          this.probe(sf, now);
          break;
        case 'none':
          break;
      }
    }
    if (this.subflows.length > 0) this.ensureTick();
  }

  // ------------------------------------------------------------ lifecycle

  /** Close the session: tell the peer (if `notify`), abort streams, drop subflows. */
  close(error?: PlaitError, notify = true): void {
    if (this.closedState) return;
    const code = error?.code ?? ErrorCode.CLOSED;
    if (notify) {
      const reason = error ? error.message.slice(0, 200) : 'closed';
      for (const sf of this.subflows) {
        if (sf.state === 'pending-ok') continue;
        this.stageFrame(sf, { type: FrameType.CONTROL, message: { t: 'close', code, reason } }, undefined);
        this.sealStaged(sf);
      }
    }
    this.closedState = true;
    this.unsubscribeBudget?.();
    this.tickTimer?.cancel();
    this.tickTimer = undefined;
    this.flushTimer?.cancel();
    this.flushTimer = undefined;
    this.rateTimer?.cancel();
    this.rateTimer = undefined;
    this.rateRecvTimer?.cancel();
    this.rateRecvTimer = undefined;
    for (const sf of [...this.subflows]) {
      sf.close('session closed', error ?? new PlaitError(ErrorCode.CLOSED, 'session closed'));
      sf.channel.end();
    }
    this.subflows.length = 0;
    const reason = error ? error.message : 'session closed';
    for (const s of [...this.streams.values()]) s.abort(ResetCode.SESSION_CLOSED, reason);
    // Give back this session's share of the process budget (send bytes went back as the streams aborted).
    for (let i = 0; i < this.streams.size; i++) this.budget?.removeStream();
    this.addRecvBuffered(-this.recvBuffered);
    this.streams.clear();
    this.readyStreams.clear();
    this.stalled.clear();
    this.sendBudget.clear();
    this.outbox.clear();
    this.events.closed?.(error);
  }

  stats(): SessionStats {
    const now = this.clock.now();
    return {
      role: this.role,
      token: Buffer.from(this.keys.token).toString('hex'),
      openStreams: this.streams.size,
      streamsOpened: this.streamsOpened,
      recvBufferedBytes: this.recvBuffered,
      recvCreditBytes: this.recvCredit,
      sendBufferedBytes: this.sendBudget.buffered,
      scheduler: this.scheduler.name,
      latencyPorts: this.classifier.latencyPorts,
      counters: { ...this.counters },
      // Read-only: the measurements as of now, the cap as the sender last set
      // it. (refreshView would advance the pacing cycle: a scrape must not.)
      subflows: this.subflows.map((sf) => {
        return {
          id: sf.id,
          addrId: sf.addrId,
          local: sf.channel.localLabel,
          remote: sf.channel.remoteLabel,
          state: sf.state,
          backup: sf.backup,
          role: sf.role,
          rttMs: round(sf.metrics.srtt),
          minRttMs: round(sf.metrics.minRtt(now)),
          rateBytesPerSec: Math.round(sf.metrics.rate(now) * 1000),
          inflightBytes: sf.inflight,
          capBytes: Math.round(sf.cap),
          bytesSent: sf.bytesSent,
          bytesReceived: sf.bytesReceived,
          bytesReinjected: sf.bytesReinjected,
          suspectCount: sf.suspectCount,
          ...kernelOf(sf.channel),
        };
      }),
    };
  }
}

const round = (x: number): number => Math.round(x * 100) / 100;

function kernelOf(ch: ByteChannel): { kernel?: KernelPathInfo } {
  const k = ch.kernelInfo?.();
  return k ? { kernel: k } : {};
}
