import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { collect, makePair, settle } from './harness.js';
import type { Stream } from '../src/stream.js';

/**
 * For random payloads, write sizes, 1-4 subflows with random delays and
 * rates, and random subflow deaths (cut or silent blackhole; one subflow
 * always survives), every stream arrives byte-exact, in order, exactly once,
 * in both directions.
 */
const linkArb = fc.record({
  delayMs: fc.integer({ min: 0, max: 80 }),
  bytesPerMs: fc.option(fc.integer({ min: 50, max: 5000 }), { nil: undefined }),
});

const faultArb = fc.record({
  link: fc.nat(),
  atMs: fc.integer({ min: 0, max: 400 }),
  kind: fc.constantFrom<'cut' | 'blackhole'>('cut', 'blackhole'),
});

const streamArb = fc.record({
  up: fc.uint8Array({ minLength: 0, maxLength: 150_000 }),
  downLen: fc.integer({ min: 0, max: 150_000 }),
  piece: fc.integer({ min: 1, max: 40_000 }),
});

function pattern(seed: number, len: number): Buffer {
  const b = Buffer.alloc(len);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < len; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

function writeInPieces(s: Stream, data: Uint8Array, piece: number): void {
  let off = 0;
  const pump = (): void => {
    while (off < data.length) {
      const n = Math.min(piece, data.length - off);
      const ok = s.write(data.slice(off, off + n));
      off += n;
      if (!ok) return;
    }
    s.end();
  };
  s.setHandlers({ drain: pump });
  pump();
}

describe('session property: bytes through intact over failing subflows', () => {
  it('every stream arrives byte-exact, in order, exactly once', async () => {
    await fc.assert(property(), { numRuns: 60 });
  });

  it('regression: a record held for more data on a subflow that is then cut is resent elsewhere', async () => {
    // Found by this property when partial records began to wait (recordHoldMs):
    // closing the subflow dropped the held record's frames.
    await fc.assert(property(), {
      seed: -1938393027,
      path: '10:3:1:1:1:1:2:4:4:4:5:4:4:4:4:4:5:5:8:7:7:10:10:10:12:12:12:14:14:14:14:15:15:15:15:16:15:15:15:16:16:16:16:20:0:1:3:4:10:10:10:11:10:11:11:12:10:11:10:15:11:10:10:11',
      endOnFailure: true,
    });
  });
});

function property() {
  return fc.asyncProperty(
    fc.array(linkArb, { minLength: 1, maxLength: 4 }),
    fc.array(streamArb, { minLength: 1, maxLength: 6 }),
    fc.array(faultArb, { maxLength: 3 }),
    async (links, streams, faults) => {
      const pair = await makePair({
        links,
        onServerStream: (s, target) => {
          // The port names the stream; reply with a pattern of its asked size.
          const spec = streams[target.port - 1]!;
          s.accept();
          const got = collect(s);
          serverGot.set(target.port, got);
          writeInPieces(s, pattern(target.port, spec.downLen), spec.piece);
        },
      });
      const serverGot = new Map<number, ReturnType<typeof collect>>();
      const clientSide = streams.map((spec, i) => {
        const s = pair.client.openStream({ host: 'target.test', port: i + 1 });
        const got = collect(s);
        const closed = new Promise<void>((r) => s.setHandlers({ close: () => r() }));
        writeInPieces(s, spec.up, spec.piece);
        return { got, closed };
      });
      // Kill up to all but one subflow at random moments.
      const victims = new Set<number>();
      for (const f of faults) {
        const idx = f.link % links.length;
        if (victims.size >= links.length - 1 || victims.has(idx)) continue;
        victims.add(idx);
        pair.clock.setTimeout(() => (f.kind === 'cut' ? pair.links[idx]!.cut() : pair.links[idx]!.blackhole()), f.atMs);
      }
      await settle(pair.clock, Promise.all(clientSide.map((c) => c.closed)), 600_000);
      streams.forEach((spec, i) => {
        const down = clientSide[i]!.got;
        expect(down.reset).toBeUndefined();
        expect(down.ended).toBe(true);
        expect(down.total().equals(pattern(i + 1, spec.downLen))).toBe(true);
        const up = serverGot.get(i + 1)!;
        expect(up.ended).toBe(true);
        expect(up.total().equals(Buffer.from(spec.up))).toBe(true);
      });
      pair.client.close();
    },
  );
}
