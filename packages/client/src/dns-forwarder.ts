/**
 * `plait client --dns`: answers DNS for the LAN, over UDP and TCP (RFC 1035
 * 4.2), by sending each query through the session to the server's resolver
 * (a RESOLVER datagram). One datagram flow carries every query; each gets a
 * fresh message ID so answers find their way back, and the client's own ID
 * is restored on the way out (as dnsmasq does). Bounded: queries in flight,
 * queries per TCP connection, message sizes; timeouts from the clock.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { randomInt } from 'node:crypto';
import { realClock, WIRE, type Clock, type CLIENT_COUNTERS, type Counters, type Timer } from '@plait/core';
import { RESOLVER, type DatagramFlow, type DatagramFlows } from './datagram-flows.js';

export interface DnsForwarderOptions {
  flows: DatagramFlows;
  counters: Counters<typeof CLIENT_COUNTERS>;
  clock?: Clock;
  /** A query unanswered for this long is forgotten (ms; default 5 s, the usual resolver retry). */
  timeoutMs?: number;
  /** Queries in flight at once (default 1024; more are dropped). */
  maxInflight?: number;
  /**
   * Sees every answer before it goes to the LAN (domain bypass, BypassDomains.observe). A
   * promise holds the answer until it settles; the query's timeout still bounds the wait.
   */
  onAnswer?: (message: Uint8Array) => Promise<void> | undefined;
}

/** RFC 1035 4.1.1: a message is at least its 12-byte header. */
const DNS_HEADER = 12;
/** Queries in flight per TCP connection (pipelining, RFC 7766 6.2.1.1). */
const MAX_PER_TCP = 16;
/** A TCP connection with nothing in flight is closed after this long (ms; RFC 7766 suggests seconds). */
const TCP_IDLE_MS = 30_000;

type ReplyTo = { kind: 'udp'; address: string; port: number } | { kind: 'tcp'; conn: TcpConn };

interface Pending {
  origId: number;
  to: ReplyTo;
  timer: Timer;
  /** onAnswer is holding its answer; copies that arrive meanwhile (duplication) are dropped. */
  held?: boolean;
}

interface TcpConn {
  socket: net.Socket;
  inflight: number;
  idle: Timer | undefined;
}

/** A well-formed query: a header, QR = 0 (a query, not an answer), no bigger than a datagram may be. */
function isQuery(m: Uint8Array): boolean {
  return m.length >= DNS_HEADER && m.length <= WIRE.DATAGRAM_MAX_PAYLOAD && (m[2]! & 0x80) === 0;
}

export class DnsForwarder {
  private readonly pending = new Map<number, Pending>();
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private readonly maxInflight: number;
  private flow: DatagramFlow | undefined;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly conns = new Set<TcpConn>();

  constructor(private readonly opts: DnsForwarderOptions) {
    this.clock = opts.clock ?? realClock;
    this.timeoutMs = opts.timeoutMs ?? 5_000;
    this.maxInflight = opts.maxInflight ?? 1024;
  }

  /**
   * Listen on UDP and TCP at host:port. Port 0 picks a port free for both
   * (a few tries: the UDP port chosen may be taken for TCP).
   */
  async listen(host: string, port: number): Promise<{ address: string; port: number }> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.listenOnce(host, port);
      } catch (e) {
        const inUse = e instanceof Error && 'code' in e && e.code === 'EADDRINUSE';
        if (port !== 0 || !inUse || attempt >= 4) throw e;
      }
    }
  }

  private async listenOnce(host: string, port: number): Promise<{ address: string; port: number }> {
    const udp = dgram.createSocket({ type: net.isIP(host) === 6 ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind(port, host, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const bound = udp.address();
    // Half-open: a client may send its query and FIN at once; the answer still goes back.
    const tcp = net.createServer({ allowHalfOpen: true }, (s) => this.serveTcp(s));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen(bound.port, host, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    udp.on('error', () => undefined); // ICMP errors for clients that went away
    udp.on('message', (msg, rinfo) => this.query(msg, { kind: 'udp', address: rinfo.address, port: rinfo.port }));
    this.udp = udp;
    this.tcp = tcp;
    return { address: bound.address, port: bound.port };
  }

  close(): void {
    this.udp?.close();
    this.tcp?.close();
    for (const c of this.conns) c.socket.destroy();
    for (const p of this.pending.values()) p.timer.cancel();
    this.pending.clear();
    this.flow?.close();
    this.flow = undefined;
  }

  get inflight(): number {
    return this.pending.size;
  }

  /** A query from the LAN: give it an unused ID and send it through the session. */
  query(msg: Uint8Array, to: ReplyTo): boolean {
    const c = this.opts.counters;
    if (!isQuery(msg)) {
      c.dnsDroppedMalformed++;
      return false;
    }
    if (this.pending.size >= this.maxInflight) {
      c.dnsDroppedBusy++;
      return false;
    }
    const flow = this.ensureFlow();
    if (!flow) {
      c.dnsDroppedBusy++;
      return false;
    }
    // Random IDs (at most maxInflight of 65536 taken): an off-path guesser has nothing to predict.
    let id = randomInt(0x10000);
    while (this.pending.has(id)) id = (id + 1) & 0xffff;
    const out = Buffer.from(msg);
    const origId = out.readUInt16BE(0);
    out.writeUInt16BE(id, 0);
    const timer = this.clock.setTimeout(() => {
      if (this.forget(id)) c.dnsTimeouts++;
    }, this.timeoutMs);
    this.pending.set(id, { origId, to, timer });
    if (to.kind === 'tcp') this.tcpBusy(to.conn, +1);
    c.dnsQueries++;
    flow.send(RESOLVER, out, to.kind === 'tcp' ? { dnsTcp: true } : undefined);
    return true;
  }

  private ensureFlow(): DatagramFlow | undefined {
    if (this.flow) return this.flow;
    const r = this.opts.flows.openFlow({ reply: (from, payload) => from.atyp === RESOLVER.atyp && this.answer(payload) });
    if (!r.ok) return undefined;
    this.flow = r.flow;
    return this.flow;
  }

  private forget(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    p.timer.cancel();
    if (p.to.kind === 'tcp') this.tcpBusy(p.to.conn, -1);
    return p;
  }

  /** An answer from the resolver: restore the client's ID and send it where the query came from. */
  private answer(payload: Uint8Array): void {
    if (payload.length < DNS_HEADER) {
      this.opts.counters.dnsDroppedMalformed++;
      return;
    }
    const msg = Buffer.from(payload);
    const id = msg.readUInt16BE(0);
    const p = this.pending.get(id);
    if (!p || p.held) return; // late (timed out), unsolicited, or a copy of one being held
    const hold = this.opts.onAnswer?.(msg);
    if (hold) {
      p.held = true;
      void hold.then(() => this.pending.get(id) === p && this.deliver(id, p, msg));
      return;
    }
    this.deliver(id, p, msg);
  }

  private deliver(id: number, p: Pending, msg: Buffer): void {
    msg.writeUInt16BE(p.origId, 0);
    this.opts.counters.dnsAnswers++;
    if (p.to.kind === 'udp') {
      this.udp?.send(msg, p.to.port, p.to.address);
    } else if (!p.to.conn.socket.destroyed) {
      p.to.conn.socket.write(Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]));
    }
    // After the write: the last answer on a half-closed TCP connection then ends it.
    this.forget(id);
  }

  // -------------------------------------------------------------------- TCP

  private serveTcp(socket: net.Socket): void {
    const conn: TcpConn = { socket, inflight: 0, idle: undefined };
    this.conns.add(conn);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      this.conns.delete(conn);
      conn.idle?.cancel();
      // Answers still on their way have nowhere to go.
      for (const [id, p] of this.pending) if (p.to.kind === 'tcp' && p.to.conn === conn) this.forget(id);
    });
    this.tcpBusy(conn, 0);
    let buf: Buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        // Checked on the prefix, before waiting for (or holding) the body.
        if (len < DNS_HEADER || len > WIRE.DATAGRAM_MAX_PAYLOAD) {
          this.opts.counters.dnsDroppedMalformed++;
          socket.destroy();
          return;
        }
        if (buf.length < 2 + len) return;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        if (conn.inflight >= MAX_PER_TCP) {
          this.opts.counters.dnsDroppedBusy++;
          continue;
        }
        if (!this.query(msg, { kind: 'tcp', conn }) && !isQuery(msg)) {
          socket.destroy();
          return;
        }
      }
    });
    socket.once('end', () => {
      // Half-closed by the client: answer what is in flight, then close.
      if (conn.inflight === 0) socket.end();
    });
  }

  /** Count a TCP connection's queries in flight; an idle connection is closed after TCP_IDLE_MS. */
  private tcpBusy(conn: TcpConn, delta: number): void {
    conn.inflight += delta;
    conn.idle?.cancel();
    conn.idle = undefined;
    if (conn.inflight > 0) return;
    if (conn.socket.readableEnded) {
      conn.socket.end();
      return;
    }
    conn.idle = this.clock.setTimeout(() => conn.socket.destroy(), TCP_IDLE_MS);
  }
}
