import * as dgram from 'node:dgram';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Atyp, makeCounters, SERVER_COUNTERS, VirtualClock, type Datagram } from '@plait/core';
import { EgressPolicy } from '../src/egress-policy.js';
import { UdpRelay } from '../src/udp-relay.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

/** A UDP echo server on loopback; with `via`, it answers from another socket (a stranger). */
async function udpEcho(via?: dgram.Socket): Promise<number> {
  const s = dgram.createSocket('udp4');
  s.on('message', (m, r) => (via ?? s).send(Buffer.concat([Buffer.from('echo:'), m]), r.port, r.address));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  cleanup.push(() => s.close());
  return s.address().port;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

function relay(opts: { allowPrivate?: boolean; maxFlows?: number; dnsUpstream?: { host: string; port: number } } = {}) {
  const clock = new VirtualClock();
  const counters = makeCounters(SERVER_COUNTERS);
  const out: Datagram[] = [];
  const r = new UdpRelay(
    { sendDatagram: (d) => (out.push(d), true) },
    {
      policy: new EgressPolicy({ allowPrivate: opts.allowPrivate ?? false, ownAddresses: [] }),
      maxFlows: opts.maxFlows ?? 4,
      idleMs: 60_000,
      dnsUpstream: opts.dnsUpstream,
      clock,
      counters,
      lookup: (host, _o, cb) => (host === 'echo.test' ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }), [])),
    },
  );
  cleanup.push(() => r.close());
  return { r, clock, counters, out };
}

const lo = new Uint8Array([127, 0, 0, 1]);
const text = (d: Datagram): string => Buffer.from(d.payload).toString();

describe('server UDP relay', () => {
  it('relays to an allowed address and returns the reply with its source', async () => {
    const port = await udpEcho();
    const { r, out, counters } = relay({ allowPrivate: true });
    r.onDatagram({ flow: 1, atyp: Atyp.IPV4, addr: lo, port, payload: Buffer.from('hi') });
    r.onDatagram({ flow: 1, atyp: Atyp.DOMAIN, addr: Buffer.from('echo.test'), port, payload: Buffer.from('named') });
    await until(() => out.length === 2, 'two replies');
    expect(out.map((d) => [d.flow, d.atyp, [...d.addr], d.port]).sort()).toEqual([
      [1, Atyp.IPV4, [127, 0, 0, 1], port],
      [1, Atyp.IPV4, [127, 0, 0, 1], port],
    ]);
    expect(out.map(text).sort()).toEqual(['echo:hi', 'echo:named']);
    expect(counters.udpFlowsOpened).toBe(1);
  });

  it('applies the egress policy to every destination, literal or resolved', async () => {
    const port = await udpEcho();
    const { r, out, counters } = relay();
    r.onDatagram({ flow: 1, atyp: Atyp.IPV4, addr: lo, port, payload: Buffer.from('x') });
    r.onDatagram({ flow: 1, atyp: Atyp.IPV6, addr: Buffer.from('00000000000000000000ffff7f000001', 'hex'), port, payload: Buffer.from('x') });
    r.onDatagram({ flow: 1, atyp: Atyp.DOMAIN, addr: Buffer.from('echo.test'), port, payload: Buffer.from('x') });
    r.onDatagram({ flow: 1, atyp: Atyp.DOMAIN, addr: Buffer.from('nx.test'), port, payload: Buffer.from('x') });
    await until(() => counters.udpDroppedPolicy === 3 && counters.udpDroppedUnresolved === 1, 'drops');
    await new Promise((res) => setTimeout(res, 50));
    expect(out).toEqual([]);
  });

  it('drops replies from addresses the flow never sent to', async () => {
    const stranger = dgram.createSocket('udp4');
    await new Promise<void>((res) => stranger.bind(0, '127.0.0.1', () => res()));
    cleanup.push(() => stranger.close());
    const port = await udpEcho(stranger);
    const { r, out, counters } = relay({ allowPrivate: true });
    r.onDatagram({ flow: 1, atyp: Atyp.IPV4, addr: lo, port, payload: Buffer.from('x') });
    await until(() => counters.udpDroppedForeign === 1, 'the foreign reply');
    expect(out).toEqual([]);
  });

  it('limits flows per session and expires idle ones on the clock', async () => {
    const port = await udpEcho();
    const { r, out, counters, clock } = relay({ allowPrivate: true, maxFlows: 2 });
    for (const flow of [1, 2, 3]) r.onDatagram({ flow, atyp: Atyp.IPV4, addr: lo, port, payload: Buffer.from('x') });
    expect(counters.udpFlowsRefusedLimit).toBe(1);
    expect(r.flowCount).toBe(2);
    await until(() => out.length === 2, 'replies');
    await clock.advance(59_000);
    expect(r.flowCount).toBe(2);
    await clock.advance(11_000);
    expect(r.flowCount).toBe(0);
    expect(counters.udpFlowsExpired).toBe(2);
    // The client's uclose frees a flow at once.
    r.onDatagram({ flow: 4, atyp: Atyp.IPV4, addr: lo, port, payload: Buffer.from('x') });
    r.onFlowClosed(4);
    expect(r.flowCount).toBe(0);
  });

  it('sends DNS to the operator resolver even where the policy denies it, over UDP and TCP', async () => {
    const tcp = net.createServer((s) => {
      let b = Buffer.alloc(0);
      s.on('data', (c) => {
        b = Buffer.concat([b, c]);
        if (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) {
          const answer = Buffer.concat([b.subarray(2), Buffer.alloc(3000, 0x61)]);
          s.end(Buffer.concat([Buffer.from([answer.length >> 8, answer.length & 0xff]), answer]));
        }
      });
    });
    await new Promise<void>((res) => tcp.listen(0, '127.0.0.1', () => res()));
    cleanup.push(() => tcp.close());
    const port = (tcp.address() as net.AddressInfo).port;
    const udp = dgram.createSocket('udp4');
    udp.on('message', (m, ri) => udp.send(Buffer.concat([m, Buffer.from('-udp')]), ri.port, ri.address));
    await new Promise<void>((res, rej) => {
      udp.once('error', rej);
      udp.bind(port, '127.0.0.1', () => res());
    });
    cleanup.push(() => udp.close());
    const { r, out, counters } = relay({ dnsUpstream: { host: '127.0.0.1', port } });
    r.onDatagram({ flow: 9, atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 0, payload: Buffer.from('q1') });
    r.onDatagram({ flow: 9, atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 0, payload: Buffer.from('q2'), dnsTcp: true });
    await until(() => out.length === 2, 'two answers');
    const byTcp = out.find((d) => d.dnsTcp)!;
    const byUdp = out.find((d) => !d.dnsTcp)!;
    expect(text(byUdp)).toBe('q1-udp');
    expect(byUdp.atyp).toBe(Atyp.RESOLVER);
    expect(byTcp.payload.length).toBe(3002);
    expect(text(byTcp).startsWith('q2aaa')).toBe(true);
    expect(counters.dnsUpstreamQueries).toBe(2);
    expect(counters.udpDroppedPolicy).toBe(0);
    // Without a resolver, DNS datagrams are dropped and counted.
    const none = relay();
    none.r.onDatagram({ flow: 1, atyp: Atyp.RESOLVER, addr: new Uint8Array(0), port: 0, payload: Buffer.from('q') });
    expect(none.counters.dnsNoUpstream).toBe(1);
  });
});
