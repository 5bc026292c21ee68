/**
 * The client's datagram flows: the one place that turns "a UDP datagram for
 * destination X from local source S" into DATAGRAM frames on the session,
 * and the replies back into calls to whoever opened the flow. SOCKS5 UDP
 * ASSOCIATE opens one flow per association, the DNS listener one for all its
 * queries; a transparent UDP path would open one per LAN source.
 */
import { Atyp, type Datagram, type DatagramAtyp, type Session } from '@plait/core';

/** A datagram address in wire form (PROTOCOL.md 6.7). */
export interface DatagramPeer {
  atyp: DatagramAtyp;
  /** 4 or 16 bytes, or the name; empty for the resolver. */
  addr: Uint8Array;
  /** 0 for the resolver. */
  port: number;
}

export const RESOLVER: DatagramPeer = { atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 0 };

export interface FlowHandlers {
  /** A reply from `from` (the server's resolver: `from.atyp` is RESOLVER). */
  reply(from: DatagramPeer, payload: Uint8Array, dnsTcp: boolean): void;
}

/** One flow: send datagrams, close when done (the server frees its socket). */
export interface DatagramFlow {
  readonly id: number;
  /** False when dropped at once (no session, no datagram support, too large); may still be lost later. */
  send(to: DatagramPeer, payload: Uint8Array, opts?: { dnsTcp?: boolean }): boolean;
  close(): void;
}

/** What the flows need of a session (a narrow view, so tests can stand in for one). */
export type DatagramSession = Pick<Session, 'datagramFlows' | 'sendDatagram' | 'closeDatagramFlow'>;

export type OpenResult = { ok: true; flow: DatagramFlow } | { ok: false; reason: string };

/**
 * The open flows and their ids. Ids count up from 1 and are never reused
 * within the process (u32; a wrap skips ids still open). Open flows are
 * capped by what the server advertised (`ok.dgram`), so the server never
 * has to refuse one for the limit.
 */
export class DatagramFlows {
  private readonly open = new Map<number, FlowHandlers>();
  private nextId = 1;

  /** `session()` gives the current session, if any (it changes when the client reconnects). */
  constructor(private readonly session: () => DatagramSession | undefined) {}

  get size(): number {
    return this.open.size;
  }

  /** Open a flow; refused when the server does not support datagrams or is at its flow limit. */
  openFlow(handlers: FlowHandlers): OpenResult {
    const s = this.session();
    // With no session yet, allow a modest number: the server's limit is learnt on connect.
    const limit = s ? s.datagramFlows : 64;
    if (s && limit === 0) return { ok: false, reason: 'the plait server does not support UDP (upgrade it)' };
    if (this.open.size >= limit) return { ok: false, reason: `too many UDP associations (the server allows ${limit})` };
    let id = this.nextId;
    while (this.open.has(id) || id === 0) id = (id + 1) >>> 0;
    this.nextId = (id + 1) >>> 0;
    this.open.set(id, handlers);
    let closed = false;
    const flow: DatagramFlow = {
      id,
      send: (to, payload, opts) => {
        const cur = this.session();
        if (closed || !cur) return false;
        return cur.sendDatagram({ flow: id, atyp: to.atyp, addr: to.addr, port: to.port, payload, ...(opts?.dnsTcp ? { dnsTcp: true } : {}) });
      },
      close: () => {
        if (closed) return;
        closed = true;
        this.open.delete(id);
        this.session()?.closeDatagramFlow(id);
      },
    };
    return { ok: true, flow };
  }

  /** The session's datagram event: hand the reply to its flow (late replies for closed flows are dropped). */
  deliver(d: Datagram): void {
    this.open.get(d.flow)?.reply({ atyp: d.atyp, addr: d.addr, port: d.port }, d.payload, d.dnsTcp === true);
  }
}
