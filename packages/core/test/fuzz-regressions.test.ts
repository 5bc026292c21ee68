/**
 * Regressions from `npm run fuzz` (scripts/fuzz): an authenticated peer must
 * not make the server remember, or spend, without bound. A raw client: real
 * HELLO, then records sealed by hand, so any frame can be sent.
 */
import { describe, expect, it } from 'vitest';
import { Acceptor } from '../src/acceptor.js';
import type { ByteChannel, ChannelHandlers } from '../src/channel.js';
import { flushMicrotasks, VirtualClock } from '../src/clock.js';
import { makeConfig, type Config } from '../src/config.js';
import { HandshakeReader } from '../src/handshake-messages.js';
import { startHello } from '../src/handshake.js';
import { deriveSecretKeys } from '../src/keys.js';
import { RecordSealer } from '../src/record.js';
import type { Session } from '../src/session.js';

class RawChannel implements ByteChannel {
  h: ChannelHandlers | undefined;
  out: Uint8Array[] = [];
  paused = false;
  closed = false;
  readonly localLabel = 's';
  readonly remoteLabel = 'c';
  setHandlers(h: ChannelHandlers): void {
    this.h = h;
  }
  write(d: Uint8Array): boolean {
    this.out.push(Uint8Array.from(d));
    return true;
  }
  end(): void {
    this.closed = true;
  }
  destroy(): void {
    this.closed = true;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
}

async function rawSession(overrides: Partial<Config> = {}): Promise<{ ch: RawChannel; sealer: RecordSealer; session: Session; config: Config }> {
  const clock = new VirtualClock();
  const config = makeConfig(overrides);
  const secretKeys = deriveSecretKeys('fuzz-secret-0123456789abcdef');
  const acceptor = new Acceptor({
    secretKeys, config, clock, maxSessions: 4, graceMs: 1000,
    onSession: () => ({ stream: (s) => s.accept() }),
  });
  const ch = new RawChannel();
  void acceptor.accept(ch);
  const hello = startHello(secretKeys, { backup: false, addrId: 0 }, clock);
  ch.h!.data(hello.message);
  await flushMicrotasks();
  const r = new HandshakeReader();
  r.push(Buffer.concat(ch.out));
  ch.out = [];
  const res = hello.finish(r.next()!);
  return { ch, sealer: new RecordSealer(res.subflowKeys.send), session: acceptor.allSessions()[0]!, config };
}

function frames(build: (dv: DataView, p: number) => number, size: number): Uint8Array {
  const b = new Uint8Array(size);
  const n = build(new DataView(b.buffer), 0);
  return b.subarray(0, n);
}

describe('fuzz regressions', () => {
  it('RESETs for never-seen peer ids cannot grow the finished-id memory (or CPU) without bound', async () => {
    const { ch, sealer, session, config } = await rawSession();
    let id = 0xfffffff1;
    const t0 = performance.now();
    for (let rec = 0; rec < 8 && !ch.closed; rec++) {
      // 9000 RESET frames (7 bytes each) for unknown odd ids, 4 apart so no two ranges merge.
      const pt = frames((dv, p) => {
        for (let i = 0; i < 9000; i++, id -= 4) {
          dv.setUint8(p, 4); dv.setUint8(p + 1, 1); dv.setUint32(p + 2, id); dv.setUint8(p + 6, 0);
          p += 7;
        }
        return p;
      }, 9000 * 7);
      ch.h!.data(sealer.seal(pt));
    }
    const ms = performance.now() - t0;
    const intervals = (session as unknown as { peerIds: { ranges: number } }).peerIds.ranges;
    // 72,000 remembered ranges from 500 KB of frames today (and quadratic time: 2.7M take minutes).
    expect(session.isClosed || intervals <= 2 * config.maxStreams, `${intervals} ranges after ${Math.round(ms)} ms`).toBe(true);
  });

  it('out-of-order 1-byte pieces are charged to the session receive budget at their real memory cost', async () => {
    // 8 MiB budget; 32 streams x 4096 one-byte pieces = 131,072 held parts (~100 B of heap each = ~13 MB).
    const { ch, sealer, session, config } = await rawSession({ sessionRecvBudget: 8 << 20, streamWindow: 4 << 20 });
    const hdr = Uint8Array.from([0x82, 0xa4, ...Buffer.from('host'), 0xab, ...Buffer.from('example.com'), 0xa4, ...Buffer.from('port'), 0x50]);
    for (let s = 0; s < 32; s++) {
      const id = 2 * s + 1;
      const open = frames((dv, p) => {
        dv.setUint8(p, 1); dv.setUint16(p + 2, hdr.length + 2); dv.setUint32(p + 4, id); dv.setUint32(p + 12, 0);
        dv.setUint16(p + 16, hdr.length); new Uint8Array(dv.buffer).set(hdr, p + 18);
        return p + 18 + hdr.length;
      }, 64);
      ch.h!.data(sealer.seal(open));
      for (let k = 0; k < 4096; k += 3600) {
        const pt = frames((dv, p) => {
          for (let i = k; i < Math.min(4096, k + 3600); i++) {
            dv.setUint8(p, 1); dv.setUint16(p + 2, 1); dv.setUint32(p + 4, id); dv.setUint32(p + 12, 1000 + 2 * i); dv.setUint8(p + 16, 0x41);
            p += 17;
          }
          return p;
        }, 3600 * 17);
        if (!ch.paused && !ch.closed) ch.h!.data(sealer.seal(pt));
      }
    }
    let parts = 0;
    for (const st of (session as unknown as { streams: Map<number, { reassembly: { parts: number } }> }).streams.values()) parts += st.reassembly.parts;
    const accounted = session.stats().recvBufferedBytes;
    // Today: 131,072 parts held, 131,072 bytes accounted, reading never pauses; the heap holds ~13 MB.
    expect(session.isClosed || ch.paused || parts * 100 <= config.sessionRecvBudget, `${parts} parts, ${accounted} B accounted`).toBe(true);
  });

  it('a peer that opens streams but leaves gaps in its ids without end loses the session, not the server its memory', async () => {
    const { ch, sealer, session, config } = await rawSession({ maxStreams: 64 });
    // Open stream 1 so the id window starts; then RESET ids 4 apart just ahead of it, again and again.
    const hdr = Uint8Array.from([0x82, 0xa4, ...Buffer.from('host'), 0xab, ...Buffer.from('example.com'), 0xa4, ...Buffer.from('port'), 0x50]);
    const open = (id: number) =>
      frames((dv, p) => {
        dv.setUint8(p, 1); dv.setUint16(p + 2, hdr.length + 2); dv.setUint32(p + 4, id); dv.setUint32(p + 12, 0);
        dv.setUint16(p + 16, hdr.length); new Uint8Array(dv.buffer).set(hdr, p + 18);
        return p + 18 + hdr.length;
      }, 64);
    let id = 1;
    for (let round = 0; round < 200 && !session.isClosed; round++) {
      ch.h!.data(sealer.seal(open(id)));
      const pt = frames((dv, p) => {
        for (let i = 0; i < 60; i++) {
          const rid = id + 4 + 4 * i;
          dv.setUint8(p, 4); dv.setUint8(p + 1, 1); dv.setUint32(p + 2, rid); dv.setUint8(p + 6, 0);
          p += 7;
        }
        return p;
      }, 60 * 7);
      ch.h!.data(sealer.seal(pt));
      id += 4 + 4 * 60;
    }
    const intervals = (session as unknown as { peerIds: { ranges: number } }).peerIds.ranges;
    expect(session.isClosed).toBe(true);
    expect(intervals).toBeLessThanOrEqual(4 * config.maxStreams + 1);
  });
});
