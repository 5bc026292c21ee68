import { describe, expect, it } from 'vitest';
import { VirtualClock } from '../src/clock.js';
import { makeConfig, type Config } from '../src/config.js';
import { connectSession } from '../src/connector.js';
import { ResetCode } from '../src/errors.js';
import { deriveSecretKeys } from '../src/keys.js';
import { MemoryBudget } from '../src/memory-budget.js';
import { MemoryLink } from '@plait/testkit';
import type { Session } from '../src/session.js';
import type { Stream } from '../src/stream.js';
import { collect, SECRET, settle, testAcceptor } from './harness.js';

const PIECE = 32 * 1024;

/** A target that sends forever: writes until pushed back, resumes on drain. */
function sendForever(s: Stream): void {
  const piece = new Uint8Array(PIECE).fill(1);
  const pump = (): void => {
    while (!s.isClosed && s.write(piece));
  };
  s.setHandlers({ drain: pump });
  pump();
}

/** Writes `total` bytes honouring backpressure, then ends. */
function sendBytes(s: Stream, total: number): void {
  let off = 0;
  const pump = (): void => {
    while (off < total) {
      const n = Math.min(PIECE, total - off);
      off += n;
      if (!s.write(new Uint8Array(n).fill(2))) return;
    }
    s.end();
  };
  s.setHandlers({ drain: pump });
  pump();
}

/** Server acceptor (with an optional process budget) and `clients` sessions to it, one link each. */
async function makeServer(opts: { clients: number; config: Partial<Config>; budget?: MemoryBudget }): Promise<{
  clock: VirtualClock;
  clients: Session[];
  servers: Session[];
}> {
  const clock = new VirtualClock();
  const config = makeConfig(opts.config);
  const secretKeys = deriveSecretKeys(SECRET);
  const servers: Session[] = [];
  const acceptor = testAcceptor(clock, config, {
    ...(opts.budget ? { budget: opts.budget } : {}),
    onSession: (s) => {
      servers.push(s);
      return {
        stream: (st, t) => {
          st.accept();
          // 'forever.test': a target that never stops; 'n<bytes>.test': a bounded transfer.
          const m = /^n(\d+)\.test$/.exec(t.host);
          if (m) sendBytes(st, Number(m[1]));
          else sendForever(st);
        },
      };
    },
  });
  const clients: Session[] = [];
  for (let i = 0; i < opts.clients; i++) {
    const link = new MemoryLink(clock, { delayMs: 5, bytesPerMs: 20_000 }, `c${i}`);
    void acceptor.accept(link.b);
    const { session } = await settle(clock, connectSession(link.a, { secretKeys, config: { ...config }, clock }));
    clients.push(session);
  }
  return { clock, clients, servers };
}

/** Opens `n` streams whose reader never reads (no release: credit is never returned). */
function openNonReaders(client: Session, n: number): Stream[] {
  const out: Stream[] = [];
  for (let i = 0; i < n; i++) {
    const s = client.openStream({ host: 'forever.test', port: 1 });
    s.setHandlers({ data: () => undefined });
    out.push(s);
  }
  return out;
}

const MiB = 1024 * 1024;
// Small limits so the attack is cheap to run: 40 streams could hold 40 MiB
// of send buffer each side without a session budget.
const CONFIG: Partial<Config> = {
  streamWindow: MiB,
  streamSendBuffer: MiB,
  sessionSendBudget: 4 * MiB,
  streamSendMin: 64 * 1024,
  // The client's receive side must not be the bottleneck here: this test is about the sender.
  sessionRecvBudget: 128 * MiB,
  processBufferBudget: 512 * MiB,
};

describe('slow-reader attack: session send budget', () => {
  it('many never-read streams from targets that send forever hold at most the session budget; a reading stream still completes', async () => {
    const { clock, clients, servers } = await makeServer({ clients: 1, config: CONFIG });
    const client = clients[0]!;
    openNonReaders(client, 40);
    await clock.advance(2000);
    const server = servers[0]!;
    const held = server.sendBufferedBytes;
    // Without the budget this is 40 x 1 MiB. The slack is the writes that
    // crossed the line (each write is accepted whole, then pushes back).
    expect(held).toBeGreaterThan(3 * MiB);
    expect(held).toBeLessThanOrEqual(4 * MiB + 4 * PIECE);
    expect(server.stats().sendBufferedBytes).toBe(held);
    expect(server.counters.sendBlockedSession).toBeGreaterThan(0);

    // A well-behaved stream on the same session still gets its 2 MiB through.
    const good = client.openStream({ host: `n${2 * MiB}.test`, port: 2 });
    const got = collect(good);
    good.end();
    await settle(clock, new Promise<void>((r) => good.setHandlers({ close: () => r() })), 60_000);
    expect(got.total().length).toBe(2 * MiB);
    expect(server.sendBufferedBytes).toBeLessThanOrEqual(4 * MiB + 4 * PIECE);
  });

  it('two sessions share the process byte budget: together they stay under it', async () => {
    const budget = new MemoryBudget({ processMaxStreams: 1000, processBufferBudget: 3 * MiB });
    const { clock, clients, servers } = await makeServer({
      clients: 2,
      // The process cap may be set below the session budgets here (the
      // MemoryBudget is built directly, not through verifyConfig).
      config: CONFIG,
      budget,
    });
    openNonReaders(clients[0]!, 20);
    openNonReaders(clients[1]!, 20);
    await clock.advance(2000);
    const total = servers[0]!.sendBufferedBytes + servers[1]!.sendBufferedBytes;
    // Each session alone would hold 4 MiB; the process holds ~3 MiB for both
    // (plus the fair minimum already granted and the writes that crossed).
    expect(total).toBeLessThanOrEqual(3 * MiB + 8 * PIECE);
    expect(budget.bufferedBytes).toBeGreaterThanOrEqual(total); // receive bytes count too
    expect(budget.counters.pressureEpisodes).toBeGreaterThan(0);
    expect(servers[0]!.counters.sendBlockedProcess + servers[1]!.counters.sendBlockedProcess).toBeGreaterThan(0);

    // A reading stream on either session still completes.
    const good = clients[1]!.openStream({ host: `n${MiB}.test`, port: 2 });
    const got = collect(good);
    good.end();
    await settle(clock, new Promise<void>((r) => good.setHandlers({ close: () => r() })), 60_000);
    expect(got.total().length).toBe(MiB);
  });

  it('refuses peer streams with RESET LIMIT once the process is at processMaxStreams, and gives slots back', async () => {
    const budget = new MemoryBudget({ processMaxStreams: 3, processBufferBudget: 512 * MiB });
    const { clock, clients, servers } = await makeServer({ clients: 2, config: CONFIG, budget });
    // Four streams over two sessions; the process holds three.
    const all = [...openNonReaders(clients[0]!, 2), ...openNonReaders(clients[1]!, 2)];
    const codes: (number | undefined)[] = all.map(() => undefined);
    all.forEach((s, i) => s.setHandlers({ reset: (c) => void (codes[i] = c) }));
    await clock.advance(200);
    expect(codes.filter((c) => c === ResetCode.LIMIT)).toHaveLength(1);
    expect(all.filter((s) => !s.isClosed)).toHaveLength(3);
    expect(budget.streamCount).toBe(3);
    expect(budget.counters.streamsRefused).toBe(1);
    expect(servers[0]!.counters.streamsRefusedProcessLimit + servers[1]!.counters.streamsRefusedProcessLimit).toBe(1);
    // A reset stream gives its slot back; so does a closed session, with its bytes.
    all.find((s) => !s.isClosed)!.reset();
    await clock.advance(200);
    expect(budget.streamCount).toBe(2);
    expect(budget.bufferedBytes).toBeGreaterThan(0);
    servers[0]!.close();
    servers[1]!.close();
    expect(budget.streamCount).toBe(0);
    expect(budget.bufferedBytes).toBe(0);
  });
});
