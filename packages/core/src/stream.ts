import type { Config } from './config.js';
import { WIRE } from './config.js';
import { encodeStreamHeader, isInboundHeader, StreamHeaderReader, type InboundHeader, type OpenHeader, type StreamOpen } from './control.js';
import { ErrorCode, ProtocolError, ResetCode } from './errors.js';
import { Reassembly } from './reassembly.js';
import { SendBuffer } from './send-buffer.js';

export interface StreamHandlers {
  /** In-order payload. Call `release(chunk.length)` once it has been passed on. */
  data?(chunk: Uint8Array): void;
  /** The peer finished its direction (FIN): no more data. */
  end?(): void;
  /** Opener side: the acceptor connected the target. */
  accept?(): void;
  /** The stream was aborted, by us (`remote` false) or by the peer. */
  reset?(code: number, reason: string, remote: boolean): void;
  /** `write` may be called again after returning false. */
  drain?(): void;
  /** The stream is finished and forgotten by the session. */
  close?(): void;
}

/** What a stream needs from its session. */
export interface StreamHost {
  readonly config: Config;
  /** New data, FIN or a window update is ready to go out. */
  streamReady(stream: Stream): void;
  /** The peer should hear about our receive state (WINDOW frame). */
  streamWindowDirty(stream: Stream): void;
  /** The application aborted the stream. */
  streamResetLocal(stream: Stream, code: number, reason: string): void;
  /** Both directions are done. */
  streamFinished(stream: Stream): void;
  /** What the stream holds on the receive side changed by `delta` (session receive budget). */
  streamRecvBufferedChanged(delta: number): void;
  /**
   * Receive credit this stream has outstanding (granted, not yet released by
   * the application) changed by `delta`: what the peer may have in flight
   * to us. The session totals it.
   */
  streamCreditChanged(delta: number): void;
  /**
   * Credit beyond the INITIAL_WINDOW floor this stream may add now (at most
   * `wanted`): shared under the session receive budget, so streams whose
   * readers stopped cannot take all of it from the ones still reading.
   */
  streamCreditRoom(wanted: number): number;
  /** Send-side bytes held by the stream changed by `delta` (session and process send budgets). */
  streamSendBuffered(stream: Stream, delta: number): void;
  /** May the stream accept more writes now (its own, the session's and the process's budgets)? */
  streamMayWrite(stream: Stream): boolean;
  /** write() returned false: call the stream's `wakeWriter()` once it may write again. */
  streamBlocked(stream: Stream): void;
}

/**
 * The send direction (PROTOCOL.md section 8): `awaiting-accept` until the
 * acceptor side has connected its target (nothing may be sent before the
 * reply header), then open -> fin-queued -> fin-sent -> fin-acked; `reset`
 * from any state.
 */
export type SendState = 'awaiting-accept' | 'open' | 'fin-queued' | 'fin-sent' | 'fin-acked' | 'reset';
/** The receive direction (PROTOCOL.md section 8): header -> open -> fin-received; `reset` from any state. */
export type RecvState = 'header' | 'open' | 'fin-received' | 'reset';

/** Heap a held out-of-order piece costs beyond its bytes (typed array, its store, array slots), measured at ~100 B. */
const PART_COST = 128;

/**
 * One proxied connection inside a session: two byte directions, each with its
 * own offsets, credit window and reassembly. No I/O here.
 */
export class Stream {
  readonly id: number;
  /** True when this side opened the stream. */
  readonly local: boolean;
  /** Target named by the opener of a client-opened stream (set on both sides). */
  target: OpenHeader | undefined;
  /** The publication a server-opened stream belongs to (PROTOCOL.md 7.1; set on both sides). */
  inbound: InboundHeader | undefined;

  // ---- send direction
  readonly send = new SendBuffer();
  /** Next never-sent offset. */
  sentOffset = 0;
  peerAckOffset = 0;
  peerMaxOffset: number = WIRE.INITIAL_WINDOW;
  private sendSt: SendState;
  private wantDrain = false;
  /** resetAfterData(): the RESET to send once every written byte is acknowledged. */
  private pendingReset: { code: number; reason: string } | undefined;

  // ---- receive direction
  readonly reassembly: Reassembly;
  private recvSt: RecvState = 'header';
  private readonly headerReader = new StreamHeaderReader();
  /** Offset of the first payload byte (after the header). */
  private payloadStart = 0;
  /** Bytes below this offset were handed to the application or were header. */
  private deliveredOffset = 0;
  private releasedOffset = 0;
  recvMaxOffset: number = WIRE.INITIAL_WINDOW;
  advertisedMax: number = WIRE.INITIAL_WINDOW;
  advertisedAck = 0;
  finalSize: number | undefined;
  /** recvBuffered as last reported to the host (the stream alone writes it). */
  private recvReported = 0;
  /** Outstanding receive credit as last reported to the host (streamCreditChanged). */
  private creditReported = 0;
  finAdvertised = false;
  private inbox: Uint8Array[] = [];
  private handlers: StreamHandlers = {};
  private endPending = false;

  private closeEmitted = false;

  constructor(
    private readonly host: StreamHost,
    id: number,
    local: boolean,
    open?: StreamOpen,
  ) {
    this.id = id;
    this.local = local;
    if (open) {
      if (isInboundHeader(open)) this.inbound = open;
      else this.target = open;
    }
    this.reassembly = new Reassembly(host.config.reassemblyParts);
    this.sendSt = local ? 'open' : 'awaiting-accept';
    if (local && open) this.appendSend(encodeStreamHeader(open));
    this.syncCredit();
  }

  /** Outstanding receive credit as the session counts it (what it subtracts when the stream goes). */
  get creditOutstanding(): number {
    return this.creditReported;
  }

  private syncCredit(): void {
    const now = this.isClosed ? 0 : Math.max(0, this.recvMaxOffset - this.releasedOffset);
    if (now === this.creditReported) return;
    this.host.streamCreditChanged(now - this.creditReported);
    this.creditReported = now;
  }

  /**
   * Open the window again after the application released bytes. Every
   * stream keeps INITIAL_WINDOW of credit whatever the others do (a reader
   * is never stalled by its siblings); the rest, up to streamWindow, only
   * while the session has room (streamCreditRoom).
   */
  private growCredit(): void {
    this.syncCredit();
    const floor = this.releasedOffset + WIRE.INITIAL_WINDOW;
    const want = this.releasedOffset + this.host.config.streamWindow;
    let max = Math.max(this.recvMaxOffset, floor);
    if (want > max) max += this.host.streamCreditRoom(want - max);
    this.recvMaxOffset = max;
    this.syncCredit();
  }

  get sendState(): SendState {
    return this.sendSt;
  }
  get recvState(): RecvState {
    return this.recvSt;
  }
  /** Finished (both directions done: PROTOCOL.md section 8) or reset. */
  get isClosed(): boolean {
    return this.sendSt === 'reset' || (this.sendSt === 'fin-acked' && this.recvSt === 'fin-received');
  }
  /** The peer confirmed our FIN. */
  get finAcked(): boolean {
    return this.sendSt === 'fin-acked';
  }
  /** The peer's direction is complete (every byte up to its FIN delivered). */
  get finDelivered(): boolean {
    return this.recvSt === 'fin-received';
  }

  /** resetAfterData() was called and the RESET waits for the data before it to be acknowledged. */
  get isResetPending(): boolean {
    return this.pendingReset !== undefined && !this.isClosed;
  }

  /** A writer blocked by backpressure is waiting for `drain`. */
  get writerBlocked(): boolean {
    return this.wantDrain;
  }

  /** Set (or add to) the stream's event handlers. */
  setHandlers(h: StreamHandlers): void {
    this.handlers = { ...this.handlers, ...h };
    this.flushInbox();
  }

  // ---------------------------------------------------------------- app API

  /** Queue bytes (the stream keeps the buffer; do not reuse it). False = wait for drain. */
  write(chunk: Uint8Array): boolean {
    if (this.isClosed) return false;
    if (this.sendSt === 'awaiting-accept') throw new Error('accept() the stream before writing to it');
    if (this.sendSt !== 'open') throw new Error('write after end()');
    if (this.pendingReset) return false; // aborting: nothing more goes out
    this.appendSend(chunk);
    this.host.streamReady(this);
    const ok = this.host.streamMayWrite(this);
    if (!ok) {
      this.wantDrain = true;
      this.host.streamBlocked(this);
    }
    return ok;
  }

  /** The session has room again for this blocked writer: emit `drain`. */
  wakeWriter(): void {
    if (!this.wantDrain || this.isClosed) return;
    this.wantDrain = false;
    this.handlers.drain?.();
  }

  private appendSend(chunk: Uint8Array): void {
    this.send.append(chunk);
    if (chunk.length > 0) this.host.streamSendBuffered(this, chunk.length);
  }

  private releaseSendTo(offset: number): void {
    const before = this.send.bufferedBytes;
    this.send.releaseTo(offset);
    const freed = before - this.send.bufferedBytes;
    if (freed > 0) this.host.streamSendBuffered(this, -freed);
  }

  /** Half-close: no more data from this side. */
  end(): void {
    if (this.isClosed || this.sendSt === 'fin-queued' || this.sendSt === 'fin-sent' || this.sendSt === 'fin-acked') return;
    if (this.sendSt === 'awaiting-accept') throw new Error('accept() the stream before ending it');
    this.sendSt = 'fin-queued';
    this.host.streamReady(this);
  }

  /** Acceptor side: the target is connected; send the reply header. */
  accept(): void {
    if (this.sendSt !== 'awaiting-accept') return;
    this.sendSt = 'open';
    this.appendSend(encodeStreamHeader({}));
    this.host.streamReady(this);
  }

  /** Abort both directions. */
  reset(code: number = ResetCode.CANCEL, reason = ''): void {
    if (this.isClosed) return;
    this.host.streamResetLocal(this, code, reason);
    this.terminate(true);
    this.handlers.reset?.(code, reason, false);
    this.emitClose();
  }

  /**
   * Abort, but only after every byte written so far (and a queued FIN) has
   * reached the peer: the RESET is queued once the peer has acknowledged all
   * of it, so it cannot overtake that data (a target that sends and then
   * resets). Meanwhile writes return false and arriving data is dropped
   * without granting more credit. If the peer never grants the credit to
   * send the rest, the stream waits like any other with unsent data.
   */
  resetAfterData(code: number = ResetCode.CANCEL, reason = ''): void {
    if (this.isClosed || this.pendingReset) return;
    this.pendingReset = { code, reason };
    this.inbox = [];
    this.maybeSendPendingReset();
  }

  private maybeSendPendingReset(): void {
    const r = this.pendingReset;
    if (!r || this.isClosed) return;
    // Not accepted yet: the peer has seen nothing from us, the RESET may go at once.
    if (this.sendSt !== 'awaiting-accept' && this.peerAckOffset < this.send.writtenOffset) return;
    if (this.sendSt === 'fin-sent') return;
    this.reset(r.code, r.reason);
  }

  /** The application has passed on `n` payload bytes: grant the peer more credit. */
  release(n: number): void {
    if (this.isClosed || n <= 0) return;
    this.releasedOffset = Math.min(this.deliveredOffset, this.releasedOffset + n);
    this.syncRecvBuffered();
    this.growCredit();
    // Tell the peer once a quarter of the current window has opened up, not
    // for every byte (a quarter of the window *now*: a stream held to its
    // floor must still get its updates).
    if (this.recvMaxOffset - this.advertisedMax >= (this.recvMaxOffset - this.releasedOffset) / 4) this.host.streamWindowDirty(this);
  }

  /**
   * Memory this stream holds on the receive side (reordering plus
   * unreleased), charging each held out-of-order piece its bookkeeping too:
   * a peer sending 1-byte pieces must pay for what they really cost.
   */
  get recvBuffered(): number {
    if (this.isClosed) return 0;
    return this.reassembly.nextOffset - this.releasedOffset + this.reassembly.bufferedBytes + PART_COST * this.reassembly.parts;
  }

  /** Tell the session how much this stream now holds (it keeps the total). */
  private syncRecvBuffered(): void {
    const now = this.recvBuffered;
    if (now === this.recvReported) return;
    this.host.streamRecvBufferedChanged(now - this.recvReported);
    this.recvReported = now;
  }

  // ------------------------------------------------------- session: sending

  /** New bytes that may be sent now (within the peer's credit). */
  sendableBytes(): number {
    if (this.sendSt === 'awaiting-accept') return 0;
    return Math.max(0, Math.min(this.send.writtenOffset, this.peerMaxOffset) - this.sentOffset);
  }

  /** A FIN still has to go out and every byte before it has been sent. */
  finPending(): boolean {
    return this.sendSt === 'fin-queued' && this.sentOffset === this.send.writtenOffset;
  }

  /** Claim up to `max` new bytes; returns the frame's offset, length and FIN flag. */
  takeNew(max: number): { offset: number; len: number; fin: boolean } {
    const len = Math.min(max, this.sendableBytes());
    const offset = this.sentOffset;
    this.sentOffset += len;
    const fin = this.sendSt === 'fin-queued' && this.sentOffset === this.send.writtenOffset;
    if (fin) this.sendSt = 'fin-sent';
    return { offset, len, fin };
  }

  onWindow(ackOffset: number, maxOffset: number, finReceived: boolean): void {
    if (this.isClosed) return;
    if (ackOffset > this.sentOffset) throw new ProtocolError(ErrorCode.PROTOCOL, `stream ${this.id}: peer acknowledged unsent bytes`);
    if (ackOffset > this.peerAckOffset) {
      this.peerAckOffset = ackOffset;
      this.releaseSendTo(ackOffset);
    }
    if (maxOffset > this.peerMaxOffset) {
      this.peerMaxOffset = maxOffset;
      if (this.sendableBytes() > 0) this.host.streamReady(this);
    }
    if (finReceived && this.sendSt === 'fin-sent') {
      this.sendSt = 'fin-acked';
      this.maybeFinished();
    }
    // (A blocked writer is woken by the session, which shares room fairly.)
    this.maybeSendPendingReset();
  }

  // ----------------------------------------------------- session: receiving

  /**
   * A DATA frame arrived. Returns the header map when this frame completed
   * the peer's header of a peer-opened stream (the session, which knows
   * which kind of header its peer opens with, checks it and announces it).
   */
  onData(offset: number, payload: Uint8Array, fin: boolean): Record<string, unknown> | undefined {
    if (this.isClosed) return undefined;
    const end = offset + payload.length;
    if (end > this.recvMaxOffset) {
      throw new ProtocolError(ErrorCode.FLOW_CONTROL, `stream ${this.id}: data up to ${end} beyond credit ${this.recvMaxOffset}`);
    }
    if (this.finalSize !== undefined && (end > this.finalSize || (fin && end !== this.finalSize))) {
      throw new ProtocolError(ErrorCode.PROTOCOL, `stream ${this.id}: data past its final size`);
    }
    if (fin) {
      if (end < this.highestTouched) throw new ProtocolError(ErrorCode.PROTOCOL, `stream ${this.id}: FIN below data already received`);
      this.finalSize = end;
    }
    if (end > this.highestTouched) this.highestTouched = end;
    const before = this.reassembly.nextOffset;
    let opened: Record<string, unknown> | undefined;
    for (const chunk of this.reassembly.insert(offset, payload)) {
      opened = this.deliver(chunk) ?? opened;
    }
    if (this.reassembly.nextOffset !== before || fin) this.host.streamWindowDirty(this);
    this.checkFin();
    this.syncRecvBuffered();
    return opened;
  }

  private highestTouched = 0;

  private deliver(chunk: Uint8Array): Record<string, unknown> | undefined {
    if (this.recvSt === 'header') {
      const got = this.headerReader.push(chunk);
      if (!got) {
        this.consumeHeaderBytes(chunk.length);
        return undefined;
      }
      this.consumeHeaderBytes(chunk.length - got.rest.length);
      this.recvSt = 'open';
      this.payloadStart = this.deliveredOffset;
      let opened: Record<string, unknown> | undefined;
      if (this.local) this.handlers.accept?.();
      else opened = got.header;
      if (got.rest.length > 0) this.deliverPayload(got.rest);
      return opened;
    }
    this.deliverPayload(chunk);
    return undefined;
  }

  private consumeHeaderBytes(n: number): void {
    // Header bytes never reach the application, so they count as released.
    this.deliveredOffset += n;
    this.releasedOffset += n;
    this.growCredit();
  }

  private deliverPayload(chunk: Uint8Array): void {
    this.deliveredOffset += chunk.length;
    if (this.pendingReset) {
      // Aborting: nobody will read it. Count it released (no new credit) so
      // it leaves the receive budget (the session re-counts after onData).
      this.releasedOffset = this.deliveredOffset;
      this.syncCredit();
      return;
    }
    if (this.handlers.data && this.inbox.length === 0) this.handlers.data(chunk);
    else this.inbox.push(chunk);
  }

  private flushInbox(): void {
    while (this.handlers.data && this.inbox.length > 0 && this.recvSt !== 'reset') this.handlers.data(this.inbox.shift()!);
    if (this.inbox.length > 0) return;
    if (this.endPending && this.handlers.end) {
      this.endPending = false;
      this.handlers.end();
    }
    if (this.isClosed && !this.endPending) this.emitClose();
  }

  private emitClose(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.handlers.close?.();
  }

  private checkFin(): void {
    if (this.recvSt === 'fin-received' || this.recvSt === 'reset' || this.finalSize === undefined || this.reassembly.nextOffset < this.finalSize) return;
    if (this.recvSt === 'header') {
      // The peer ended before completing its header: nothing valid to open.
      throw new ProtocolError(ErrorCode.PROTOCOL, `stream ${this.id}: FIN inside the stream header`);
    }
    this.recvSt = 'fin-received';
    this.host.streamWindowDirty(this);
    this.endPending = true;
    this.flushInbox();
    this.maybeFinished();
  }

  /** Values for the next WINDOW frame; marks them as advertised. */
  windowFrame(): { ackOffset: number; maxOffset: number; finReceived: boolean } {
    this.advertisedAck = this.reassembly.nextOffset;
    this.advertisedMax = this.recvMaxOffset;
    if (this.finDelivered) this.finAdvertised = true;
    return { ackOffset: this.advertisedAck, maxOffset: this.advertisedMax, finReceived: this.finDelivered };
  }

  /** The peer reset the stream. */
  onRemoteReset(code: number, reason: string): void {
    if (this.isClosed) return;
    this.terminate(true);
    this.handlers.reset?.(code, reason, true);
    this.emitClose();
  }

  /** The session is going away. */
  abort(code: number, reason: string): void {
    this.onRemoteReset(code, reason);
  }

  /** Called right after either direction completes: the second completion finishes the stream. */
  private maybeFinished(): void {
    if (this.sendSt !== 'fin-acked' || this.recvSt !== 'fin-received') return;
    this.terminate(false);
    this.host.streamFinished(this);
    this.flushInbox();
  }

  private terminate(abort: boolean): void {
    if (abort) {
      this.sendSt = 'reset';
      this.recvSt = 'reset';
      this.inbox = [];
    }
    this.releaseSendTo(this.send.writtenOffset);
    this.syncCredit();
    this.syncRecvBuffered();
  }
}
