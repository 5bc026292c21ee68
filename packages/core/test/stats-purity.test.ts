import { describe, expect, it } from 'vitest';
import { collect, makePair, settle, writeAll } from './harness.js';

/**
 * Reading never changes behaviour: a /stats or /metrics scrape must not
 * advance the pacing state (gain cycle, startup, cap-limited flag). The same
 * transfer on the virtual clock, scraped every millisecond or never, must
 * send the same records on the same subflows.
 */
async function run(scrapeEveryMs: number | undefined): Promise<{ records: number[]; caps: number[]; bytes: number }> {
  const data = new Uint8Array(6 * 1024 * 1024).map((_, i) => i & 0xff);
  const pair = await makePair({
    links: [
      { delayMs: 10, bytesPerMs: 5000 },
      { delayMs: 30, bytesPerMs: 1250 },
    ],
    onServerStream: (s) => {
      s.accept();
      writeAll(s, data);
    },
  });
  const s = pair.client.openStream({ host: 'h', port: 1 });
  const got = collect(s);
  s.end();
  let stop = false;
  if (scrapeEveryMs !== undefined) {
    const scrape = (): void => {
      if (stop) return;
      pair.server().stats();
      pair.client.stats();
      pair.clock.setTimeout(scrape, scrapeEveryMs);
    };
    scrape();
  }
  await settle(pair.clock, new Promise<void>((r) => s.setHandlers({ close: () => r() })), 120_000);
  stop = true;
  const srv = pair.server();
  return {
    records: srv.liveSubflows.map((sf) => sf.sentRecords),
    caps: srv.liveSubflows.map((sf) => Math.round(sf.cap)),
    bytes: got.total().length,
  };
}

describe('stats are read-only', () => {
  it('scraping stats every millisecond changes nothing the sender does', async () => {
    const quiet = await run(undefined);
    const scraped = await run(1);
    expect(quiet.bytes).toBe(6 * 1024 * 1024);
    expect(scraped).toEqual(quiet);
  });
});
