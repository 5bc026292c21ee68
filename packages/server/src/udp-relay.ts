/**
 * The server's end of a session's datagram flows (PROTOCOL.md 6.7): one UDP
 * socket per flow (per address family), the egress policy on every
 * destination, replies only from addresses the flow sent to, idle flows
 * expired, and DNS queries for the resolver the operator chose. Every drop
 * is counted; nothing a client sends can make it hold more than its bounds.
 */
import * as dgram from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns';
import * as net from 'node:net';
import { domainToASCII } from 'node:url';
import { addrToText, Atyp, ipToAddr, isPlausibleName, type Clock, type Counters, type Datagram, type SERVER_COUNTERS, type Timer } from '@plait/core';
import type { LookupFn } from './dial-target.js';
import type { EgressPolicy } from './egress-policy.js';
import { FlowTable } from './flow-table.js';

/** Where replies go: the session (`sendDatagram`). */
export interface DatagramSink {
  sendDatagram(d: Datagram): boolean;
}

export interface UdpRelayOptions {
  policy: EgressPolicy;
  /** Flows held at once (the session's maxDatagramFlows, as advertised in `ok`). */
  maxFlows: number;
  /** A flow with no datagram either way for this long is closed (ms). */
  idleMs: number;
  /** The DNS resolver for RESOLVER datagrams (an IP literal); none: those are dropped. */
  dnsUpstream?: { host: string; port: number } | undefined;
  clock: Clock;
  counters: Counters<typeof SERVER_COUNTERS>;
  lookup?: LookupFn;
  /** A DNS-over-TCP query to the resolver gives up after this long (ms). */
  dnsTimeoutMs?: number;
  log?: { debug(obj: object, msg: string): void };
}

/** Destinations remembered per flow (replies are accepted from these only). */
const MAX_PEERS = 256;
/** Domain names being resolved at once per flow; more datagrams to names are dropped. */
const MAX_LOOKUPS = 8;
/** Resolved names kept per flow, and for how long (ms). */
const MAX_NAMES = 64;
const NAME_TTL_MS = 30_000;
/** DNS-over-TCP queries in flight per session. */
const MAX_DNS_TCP = 32;
const DNS_TCP_MAX = 65535;

interface Flow {
  id: number;
  v4?: dgram.Socket;
  v6?: dgram.Socket;
  /** Normalised "address|port" of recent destinations, oldest first. */
  peers: Map<string, true>;
  names: Map<string, { address: string; at: number }>;
  lookups: number;
  closed: boolean;
}

/** "address|port" with the address in its canonical text (IPv4-mapped shown as IPv4). */
function peerKey(address: string, port: number): string | undefined {
  const a = ipToAddr(address);
  return a ? `${addrToText(a.atyp, a.addr)}|${port}` : undefined;
}

export class UdpRelay {
  private readonly flows: FlowTable<Flow>;
  private sweepTimer: Timer | undefined;
  private readonly dnsTcp = new Set<net.Socket>();
  private readonly upstreamKey: string | undefined;
  private closed = false;

  constructor(
    private readonly sink: DatagramSink,
    private readonly opts: UdpRelayOptions,
  ) {
    this.flows = new FlowTable(opts.maxFlows, opts.idleMs);
    this.upstreamKey = opts.dnsUpstream ? peerKey(opts.dnsUpstream.host, opts.dnsUpstream.port) : undefined;
  }

  get flowCount(): number {
    return this.flows.size;
  }

  onDatagram(d: Datagram): void {
    if (this.closed) return;
    const c = this.opts.counters;
    const now = this.opts.clock.now();
    let flow = this.flows.get(d.flow);
    if (!flow) {
      flow = { id: d.flow, peers: new Map(), names: new Map(), lookups: 0, closed: false };
      if (!this.flows.add(d.flow, flow, now)) {
        c.udpFlowsRefusedLimit++;
        return;
      }
      c.udpFlowsOpened++;
      this.armSweep();
    }
    this.flows.touch(d.flow, now);
    switch (d.atyp) {
      case Atyp.RESOLVER:
        this.toResolver(flow, d);
        return;
      case Atyp.IPV4:
      case Atyp.IPV6: {
        const host = addrToText(d.atyp, d.addr);
        const verdict = this.opts.policy.check(host);
        if (!verdict.ok) {
          c.udpDroppedPolicy++;
          this.opts.log?.debug({ flow: d.flow, target: `${host}:${d.port}` }, `datagram not allowed: ${verdict.reason}`);
          return;
        }
        this.send(flow, host, d.port, d.payload);
        return;
      }
      case Atyp.DOMAIN:
        this.toName(flow, addrToText(d.atyp, d.addr), d.port, d.payload);
        return;
    }
  }

  /** The client ended the flow (`uclose`). */
  onFlowClosed(id: number): void {
    const flow = this.flows.delete(id);
    if (flow) this.closeFlow(flow);
  }

  close(): void {
    this.closed = true;
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
    for (const f of this.flows.clear()) this.closeFlow(f);
    for (const s of this.dnsTcp) s.destroy();
    this.dnsTcp.clear();
  }

  // ----------------------------------------------------------------- egress

  /** Resolve (once per TTL), check each address against the policy, send to the first allowed. */
  private toName(flow: Flow, name: string, port: number, payload: Uint8Array): void {
    const c = this.opts.counters;
    const ascii = isPlausibleName(Buffer.from(name, 'latin1')) ? domainToASCII(name) : '';
    if (ascii === '' || ascii.length > 253) {
      c.udpDroppedUnresolved++;
      return;
    }
    const now = this.opts.clock.now();
    const cached = flow.names.get(ascii);
    if (cached && now - cached.at < NAME_TTL_MS) {
      this.send(flow, cached.address, port, payload);
      return;
    }
    if (flow.lookups >= MAX_LOOKUPS) {
      c.udpDroppedUnresolved++;
      return;
    }
    flow.lookups++;
    (this.opts.lookup ?? dnsLookup)(ascii, { all: true, family: 0 }, (err, addresses) => {
      flow.lookups--;
      if (flow.closed) return;
      if (err || addresses.length === 0) {
        c.udpDroppedUnresolved++;
        return;
      }
      const allowed = addresses.find((a) => this.opts.policy.check(a.address).ok);
      if (!allowed) {
        c.udpDroppedPolicy++;
        this.opts.log?.debug({ flow: flow.id, target: `${ascii}:${port}` }, 'datagram not allowed: every address of the name is denied');
        return;
      }
      if (flow.names.size >= MAX_NAMES) flow.names.delete(flow.names.keys().next().value as string);
      flow.names.set(ascii, { address: allowed.address, at: this.opts.clock.now() });
      this.send(flow, allowed.address, port, payload);
    });
  }

  /** The operator's resolver: allowed whatever the policy says (the operator chose it). */
  private toResolver(flow: Flow, d: Datagram): void {
    const c = this.opts.counters;
    const up = this.opts.dnsUpstream;
    if (!up) {
      c.dnsNoUpstream++;
      return;
    }
    c.dnsUpstreamQueries++;
    if (d.dnsTcp) this.dnsOverTcp(flow, up, d.payload);
    else this.send(flow, up.host, up.port, d.payload, false);
  }

  private send(flow: Flow, host: string, port: number, payload: Uint8Array, remember = true): void {
    const family = net.isIP(host);
    if (family !== 4 && family !== 6) {
      this.opts.counters.udpDroppedUnresolved++;
      return;
    }
    const key = peerKey(host, port);
    if (remember && key) {
      // Most recent last; the oldest goes when the flow has talked to too many.
      flow.peers.delete(key);
      flow.peers.set(key, true);
      if (flow.peers.size > MAX_PEERS) flow.peers.delete(flow.peers.keys().next().value as string);
    }
    const socket = this.socketFor(flow, family);
    socket.send(payload, port, host, (err) => {
      if (err) this.opts.counters.udpSendErrors++;
    });
  }

  private socketFor(flow: Flow, family: 4 | 6): dgram.Socket {
    const existing = family === 4 ? flow.v4 : flow.v6;
    if (existing) return existing;
    const socket = dgram.createSocket({ type: family === 4 ? 'udp4' : 'udp6' });
    socket.on('error', () => void this.opts.counters.udpSendErrors++);
    socket.on('message', (msg, rinfo) => this.onReply(flow, msg, rinfo));
    if (family === 4) flow.v4 = socket;
    else flow.v6 = socket;
    return socket;
  }

  // ---------------------------------------------------------------- replies

  private onReply(flow: Flow, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (flow.closed || this.closed) return;
    const key = peerKey(rinfo.address, rinfo.port);
    if (key !== undefined && key === this.upstreamKey) {
      this.flows.touch(flow.id, this.opts.clock.now());
      this.sink.sendDatagram({ flow: flow.id, atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 0, payload: msg });
      return;
    }
    const addr = ipToAddr(rinfo.address);
    if (!key || !addr || !flow.peers.has(key)) {
      // Only addresses the flow sent to may answer (address- and port-restricted, like most NATs).
      this.opts.counters.udpDroppedForeign++;
      return;
    }
    this.flows.touch(flow.id, this.opts.clock.now());
    this.sink.sendDatagram({ flow: flow.id, atyp: addr.atyp, addr: addr.addr, port: rinfo.port, payload: msg });
  }

  // -------------------------------------------------------------- DNS (TCP)

  /** A query that came to the client over TCP: ask the resolver over TCP, so a long answer is not truncated. */
  private dnsOverTcp(flow: Flow, up: { host: string; port: number }, query: Uint8Array): void {
    const c = this.opts.counters;
    if (this.dnsTcp.size >= MAX_DNS_TCP || query.length > DNS_TCP_MAX) {
      c.dnsUpstreamFailures++;
      return;
    }
    const socket = net.connect({ host: up.host, port: up.port });
    this.dnsTcp.add(socket);
    let buf = Buffer.alloc(0);
    const timer = this.opts.clock.setTimeout(() => finish(false), this.opts.dnsTimeoutMs ?? 5_000);
    const finish = (ok: boolean, answer?: Buffer): void => {
      if (!this.dnsTcp.delete(socket)) return;
      timer.cancel();
      socket.destroy();
      if (!ok || !answer) {
        c.dnsUpstreamFailures++;
        return;
      }
      if (flow.closed || this.closed) return;
      this.flows.touch(flow.id, this.opts.clock.now());
      this.sink.sendDatagram({ flow: flow.id, atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 0, payload: answer, dnsTcp: true });
    };
    socket.on('error', () => finish(false));
    socket.on('close', () => finish(false));
    socket.on('connect', () => {
      const prefix = Buffer.from([query.length >>> 8, query.length & 0xff]);
      // No FIN after the query: some resolvers drop a half-closed connection unanswered.
      socket.write(Buffer.concat([prefix, query]));
    });
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      // A length prefix bounds the answer: at most 64 KiB is ever held.
      if (buf.length >= 2 + len) finish(true, buf.subarray(2, 2 + len));
    });
  }

  // --------------------------------------------------------------- lifetime

  private closeFlow(flow: Flow): void {
    flow.closed = true;
    flow.v4?.close();
    flow.v6?.close();
  }

  private armSweep(): void {
    if (this.sweepTimer || this.closed) return;
    const every = Math.max(100, Math.min(this.opts.idleMs / 2, 10_000));
    this.sweepTimer = this.opts.clock.setTimeout(() => {
      this.sweepTimer = undefined;
      for (const f of this.flows.expire(this.opts.clock.now())) {
        this.opts.counters.udpFlowsExpired++;
        this.closeFlow(f);
      }
      if (this.flows.size > 0) this.armSweep();
    }, every);
  }
}
