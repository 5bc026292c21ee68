import { describe, expect, it } from 'vitest';
import { Atyp, type Datagram } from '@plait/core';
import { DatagramFlows, type DatagramPeer } from '../src/datagram-flows.js';

function fakeSession(flows: number) {
  const sent: Datagram[] = [];
  const closed: number[] = [];
  return { sent, closed, session: { datagramFlows: flows, sendDatagram: (d: Datagram) => (sent.push(d), true), closeDatagramFlow: (f: number) => void closed.push(f) } };
}

const to: DatagramPeer = { atyp: Atyp.IPV4, addr: new Uint8Array([192, 0, 2, 1]), port: 53 };

describe('DatagramFlows', () => {
  it('gives each flow its own id, routes replies to it, and tells the server when it closes', () => {
    const f = fakeSession(8);
    const flows = new DatagramFlows(() => f.session);
    const replies: string[] = [];
    const a = flows.openFlow({ reply: (_from, p) => replies.push(`a:${p[0]}`) });
    const b = flows.openFlow({ reply: (_from, p) => replies.push(`b:${p[0]}`) });
    if (!a.ok || !b.ok) throw new Error('open failed');
    expect(a.flow.id).not.toBe(b.flow.id);
    expect(a.flow.send(to, new Uint8Array([1]))).toBe(true);
    expect(f.sent.map((d) => d.flow)).toEqual([a.flow.id]);
    flows.deliver({ flow: b.flow.id, ...to, payload: new Uint8Array([2]) });
    flows.deliver({ flow: a.flow.id, ...to, payload: new Uint8Array([3]) });
    flows.deliver({ flow: 999, ...to, payload: new Uint8Array([4]) }); // unknown: dropped
    expect(replies).toEqual(['b:2', 'a:3']);
    a.flow.close();
    a.flow.close();
    expect(f.closed).toEqual([a.flow.id]);
    flows.deliver({ flow: a.flow.id, ...to, payload: new Uint8Array([5]) }); // late: dropped
    expect(a.flow.send(to, new Uint8Array([6]))).toBe(false);
    expect(replies).toEqual(['b:2', 'a:3']);
    expect(flows.size).toBe(1);
  });

  it('opens no more flows than the server advertised, and none if it has no datagram support', () => {
    const f = fakeSession(2);
    const flows = new DatagramFlows(() => f.session);
    const r = [0, 1, 2].map(() => flows.openFlow({ reply: () => undefined }));
    expect(r.map((x) => x.ok)).toEqual([true, true, false]);
    expect(r[2]!.ok ? '' : r[2]!.reason).toMatch(/allows 2/);
    const old = new DatagramFlows(() => fakeSession(0).session);
    const o = old.openFlow({ reply: () => undefined });
    expect(o.ok ? '' : o.reason).toMatch(/does not support UDP/);
  });

  it('sends nothing while there is no session', () => {
    const flows = new DatagramFlows(() => undefined);
    const r = flows.openFlow({ reply: () => undefined });
    if (!r.ok) throw new Error('open failed');
    expect(r.flow.send(to, new Uint8Array([1]))).toBe(false);
  });
});
