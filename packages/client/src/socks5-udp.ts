/**
 * SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): a UDP relay socket per
 * association, alive as long as the TCP control connection, accepting
 * datagrams only from the client's address, carrying each over one
 * datagram flow of the session. Fragments (FRAG != 0) are not supported and
 * are dropped with a count, as the RFC allows.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { addrToText, Atyp, ipToAddr, isPlausibleName, type CLIENT_COUNTERS, type Counters, type DatagramAtyp } from '@plait/core';
import type { DatagramFlows, DatagramPeer } from './datagram-flows.js';

export interface Socks5UdpOptions {
  flows: DatagramFlows;
  counters: Counters<typeof CLIENT_COUNTERS>;
}

const VERSION = 0x05;

/** The RFC 1928 UDP request header, or undefined if malformed. */
export function parseUdpHeader(b: Buffer): { frag: number; to: DatagramPeer; data: Buffer } | undefined {
  if (b.length < 4) return undefined;
  const frag = b[2]!;
  const atyp = b[3]!;
  let p = 4;
  let addr: Uint8Array;
  if (atyp === Atyp.IPV4 || atyp === Atyp.IPV6) {
    const n = atyp === Atyp.IPV4 ? 4 : 16;
    if (b.length < p + n + 2) return undefined;
    addr = b.subarray(p, p + n);
    p += n;
  } else if (atyp === Atyp.DOMAIN) {
    if (b.length < p + 1) return undefined;
    const n = b[p]!;
    if (b.length < p + 1 + n + 2) return undefined;
    addr = b.subarray(p + 1, p + 1 + n);
    if (!isPlausibleName(addr)) return undefined;
    p += 1 + n;
  } else return undefined;
  const port = b.readUInt16BE(p);
  if (port === 0) return undefined;
  return { frag, to: { atyp: atyp as DatagramAtyp, addr, port }, data: b.subarray(p + 2) };
}

/** The header that precedes a reply to the client: RSV 0, FRAG 0, the source address. */
export function udpReplyHeader(from: DatagramPeer): Buffer {
  if (from.atyp === Atyp.DOMAIN) return Buffer.concat([Buffer.from([0, 0, 0, Atyp.DOMAIN, from.addr.length]), from.addr, Buffer.from([from.port >> 8, from.port & 0xff])]);
  return Buffer.concat([Buffer.from([0, 0, 0, from.atyp]), from.addr, Buffer.from([from.port >> 8, from.port & 0xff])]);
}

/** Canonical text of an address (IPv4-mapped IPv6 shown as IPv4), for comparing sources. */
function canonical(ip: string | undefined): string | undefined {
  if (!ip) return undefined;
  const a = ipToAddr(ip);
  return a ? addrToText(a.atyp, a.addr) : undefined;
}

/**
 * Runs one association on an accepted SOCKS5 connection whose UDP ASSOCIATE
 * request was read. `hintPort` is DST.PORT of the request: the port the
 * client will send from, or 0 if it does not know yet (then the first
 * datagram from the client's address fixes it). Replies with the relay's
 * address, or with `fail` when no flow can be opened.
 */
export function startUdpAssociation(socket: net.Socket, hintPort: number, opts: Socks5UdpOptions, fail: (code: number) => void): void {
  const c = opts.counters;
  const clientIp = canonical(socket.remoteAddress);
  const local = canonical(socket.localAddress);
  if (!clientIp || !local) {
    fail(0x01);
    return;
  }
  const family = net.isIP(local) === 6 ? 'udp6' : 'udp4';
  const udp = dgram.createSocket({ type: family });
  let clientPort = hintPort;
  let done = false;

  const opened = opts.flows.openFlow({
    reply: (from, payload) => {
      if (done || clientPort === 0 || from.atyp === Atyp.RESOLVER) return;
      udp.send([udpReplyHeader(from), payload], clientPort, clientIp);
    },
  });
  if (!opened.ok) {
    c.udpAssociationsRefused++;
    udp.close();
    fail(0x01);
    return;
  }
  const flow = opened.flow;
  const cleanup = (): void => {
    if (done) return;
    done = true;
    flow.close();
    udp.close();
  };

  udp.on('error', () => {
    if (!done) socket.destroy();
    cleanup();
  });
  udp.on('message', (msg, rinfo) => {
    // RFC 1928 section 7: only the client that asked may use the relay.
    if (canonical(rinfo.address) !== clientIp || (clientPort !== 0 && rinfo.port !== clientPort)) {
      c.socksUdpDroppedForeign++;
      return;
    }
    if (clientPort === 0) clientPort = rinfo.port;
    const h = parseUdpHeader(msg);
    if (!h) {
      c.socksUdpDroppedMalformed++;
      return;
    }
    if (h.frag !== 0) {
      c.socksUdpDroppedFrag++;
      return;
    }
    flow.send(h.to, h.data);
  });
  udp.bind(0, local, () => {
    if (done) return;
    c.udpAssociations++;
    const a = ipToAddr(local)!;
    const port = udp.address().port;
    socket.write(Buffer.concat([Buffer.from([VERSION, 0x00, 0x00, a.atyp]), a.addr, Buffer.from([port >> 8, port & 0xff])]));
  });
  // The association lasts as long as the TCP connection: read (and discard) until it ends.
  socket.on('data', () => undefined);
  socket.resume();
  socket.once('end', () => socket.end());
  socket.once('close', cleanup);
}
