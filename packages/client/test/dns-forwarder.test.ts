import * as dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { CLIENT_COUNTERS, makeCounters, VirtualClock, type Datagram } from '@plait/core';
import { DatagramFlows } from '../src/datagram-flows.js';
import { DnsForwarder } from '../src/dns-forwarder.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const f of cleanup.splice(0)) f();
});

function query(id: number, qr = false): Buffer {
  const m = Buffer.alloc(17);
  m.writeUInt16BE(id, 0);
  m[2] = qr ? 0x81 : 0x01;
  m.writeUInt16BE(1, 4);
  return m;
}

async function setup(maxInflight = 8, onAnswer?: (m: Uint8Array) => Promise<void> | undefined) {
  const clock = new VirtualClock();
  const counters = makeCounters(CLIENT_COUNTERS);
  const sent: Datagram[] = [];
  const flows = new DatagramFlows(() => ({ datagramFlows: 4, sendDatagram: (d) => (sent.push(d), true), closeDatagramFlow: () => undefined }));
  const fwd = new DnsForwarder({ flows, counters, clock, maxInflight, timeoutMs: 5_000, ...(onAnswer ? { onAnswer } : {}) });
  const at = await fwd.listen('127.0.0.1', 0);
  cleanup.push(() => fwd.close());
  const me = dgram.createSocket('udp4');
  await new Promise<void>((r) => me.bind(0, '127.0.0.1', () => r()));
  cleanup.push(() => me.close());
  const got: Buffer[] = [];
  me.on('message', (m) => got.push(m));
  const ask = async (m: Buffer, n: number): Promise<void> => {
    me.send(m, at.port, '127.0.0.1');
    for (let i = 0; i < 200 && sent.length + counters.dnsDroppedBusy + counters.dnsDroppedMalformed < n; i++) await new Promise((r) => setTimeout(r, 5));
  };
  /** The resolver's answer to the n-th query sent through the session (same ID, QR set). */
  const answer = (d: Datagram): void => {
    const a = Buffer.from(d.payload);
    a[2] = 0x81;
    flows.deliver({ ...d, payload: a });
  };
  return { clock, counters, sent, fwd, got, ask, answer };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
}

describe('DnsForwarder', () => {
  it('rewrites the ID on the way in and restores it on the way out', async () => {
    const t = await setup();
    await t.ask(query(0xabcd), 1);
    expect(t.sent.length).toBe(1);
    t.answer(t.sent[0]!);
    await until(() => t.got.length === 1);
    expect(t.got[0]!.readUInt16BE(0)).toBe(0xabcd);
    expect(t.counters.dnsAnswers).toBe(1);
    expect(t.fwd.inflight).toBe(0);
  });

  it('forgets a query after the timeout on the clock; its late answer goes nowhere', async () => {
    const t = await setup();
    await t.ask(query(1), 1);
    await t.clock.advance(4_999);
    expect(t.fwd.inflight).toBe(1);
    await t.clock.advance(1);
    expect(t.fwd.inflight).toBe(0);
    expect(t.counters.dnsTimeouts).toBe(1);
    t.answer(t.sent[0]!);
    await new Promise((r) => setTimeout(r, 30));
    expect(t.got).toEqual([]);
    expect(t.counters.dnsAnswers).toBe(0);
  });

  it('holds at most maxInflight queries and drops malformed ones, counting each', async () => {
    const t = await setup(3);
    for (let i = 0; i < 5; i++) await t.ask(query(100 + i), i + 1);
    expect(t.sent.length).toBe(3);
    expect(t.counters.dnsDroppedBusy).toBe(2);
    await t.ask(Buffer.from([1, 2, 3, 4, 5]), 6);
    await t.ask(query(7, true), 7);
    expect(t.counters.dnsDroppedMalformed).toBe(2);
    expect(t.sent.length).toBe(3);
  });

  it('onAnswer (domain bypass) holds an answer until its promise settles; copies meanwhile are dropped', async () => {
    let release: () => void = () => undefined;
    const seen: number[] = [];
    const t = await setup(8, (m) => {
      seen.push(m.length);
      return m.length === 17 ? new Promise<void>((r) => (release = r)) : undefined;
    });
    await t.ask(query(0x1111), 1);
    t.answer(t.sent[0]!);
    t.answer(t.sent[0]!); // a duplicated datagram (--udp-duplicate) while the first is held
    await new Promise((r) => setTimeout(r, 30));
    expect(t.got).toEqual([]);
    expect(seen).toEqual([17]);
    release();
    await until(() => t.got.length === 1);
    await new Promise((r) => setTimeout(r, 30));
    expect(t.got.map((m) => m.readUInt16BE(0))).toEqual([0x1111]);
    expect(t.counters.dnsAnswers).toBe(1);
    expect(t.fwd.inflight).toBe(0);
  });

  it('a held answer whose query timed out meanwhile is not sent', async () => {
    let release: () => void = () => undefined;
    const t = await setup(8, () => new Promise<void>((r) => (release = r)));
    await t.ask(query(0x2222), 1);
    t.answer(t.sent[0]!);
    await t.clock.advance(5_000);
    expect(t.fwd.inflight).toBe(0);
    release();
    await new Promise((r) => setTimeout(r, 30));
    expect(t.got).toEqual([]);
  });
});
