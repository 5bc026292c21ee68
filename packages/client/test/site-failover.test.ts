import { describe, expect, it } from 'vitest';
import { ErrorCode, PlaitError, VirtualClock, type Session } from '@plait/core';
import type { Duplex } from 'node:stream';
import { PassThrough } from 'node:stream';
import type { ClientStats } from '../src/client.js';
import { SiteFailover, type SiteClient } from '../src/site-failover.js';
import { SiteSelector } from '../src/site-selector.js';

describe('SiteSelector (which site new streams go to)', () => {
  const opts = { sites: 2, failoverAfterMs: 5_000, returnAfterMs: 30_000 };

  it('fails over only after the primary has been down for the whole timeout', () => {
    const s = new SiteSelector(opts, 0);
    expect(s.observe(4_999, [false, false]).kind).toBe('stay');
    const c = s.observe(5_000, [false, false]);
    expect(c).toEqual({ kind: 'failover', from: 0, to: 1, downForMs: 5_000 });
    expect(s.active).toBe(1);
  });

  it('a primary that flickers up resets the failover timer', () => {
    const s = new SiteSelector(opts, 0);
    s.observe(0, [true, false]);
    s.observe(4_000, [false, false]);
    s.observe(8_000, [true, false]); // back before 5 s of downtime
    s.observe(9_000, [false, false]);
    expect(s.observe(13_999, [false, false]).kind).toBe('stay');
    expect(s.observe(14_000, [false, false]).kind).toBe('failover');
  });

  it('returns to the primary only after it has worked without a break for returnAfterMs (no flapping)', () => {
    const s = new SiteSelector(opts, 0);
    s.observe(5_000, [false, false]);
    expect(s.active).toBe(1);
    s.observe(6_000, [true, true]);
    s.observe(20_000, [false, true]); // the primary flaps: the return clock restarts
    s.observe(21_000, [true, true]);
    expect(s.observe(50_999, [true, true]).kind).toBe('stay');
    expect(s.observe(51_000, [true, true])).toEqual({ kind: 'return', from: 1, to: 0, healthyForMs: 30_000 });
    expect(s.active).toBe(0);
  });

  it('when the fallback dies too and the primary works now, goes straight back without waiting out the return time', () => {
    const s = new SiteSelector(opts, 0);
    s.observe(5_000, [false, false]);
    s.observe(6_000, [false, true]);
    s.observe(10_000, [true, false]);
    expect(s.observe(15_000, [true, false])).toMatchObject({ kind: 'failover', from: 1, to: 0 });
  });

  it('with a single fallback that is down too, stays on it (keeps trying it; the primary is probed in the background)', () => {
    const s = new SiteSelector(opts, 0);
    s.observe(5_000, [false, false]);
    expect(s.observe(20_000, [false, false]).kind).toBe('stay');
    expect(s.active).toBe(1);
  });

  it('with two fallbacks moves down the list and wraps to the first fallback, never to a dead primary', () => {
    const s = new SiteSelector({ ...opts, sites: 3 }, 0);
    expect(s.observe(5_000, [false, false, false])).toMatchObject({ to: 1 });
    expect(s.observe(10_000, [false, false, false])).toMatchObject({ to: 2 });
    expect(s.observe(15_000, [false, false, false])).toMatchObject({ to: 1 });
  });

  it('a single site never fails over', () => {
    const s = new SiteSelector({ ...opts, sites: 1 }, 0);
    expect(s.observe(100_000, [false]).kind).toBe('stay');
  });
});

/** A site client whose health the test sets; it records what happened to it. */
class FakeSite implements SiteClient {
  healthy = false;
  openStreams = 0;
  started = 0;
  closed = false;
  dials = 0;
  sessionClosedWith: PlaitError | undefined;
  private sessionObj: Session | undefined;
  readonly counters = { dials: 0 };
  constructor(readonly name: string) {}
  start(): Promise<void> {
    this.started++;
    return new Promise(() => undefined);
  }
  dial = (): Promise<Duplex> => {
    this.dials++;
    return Promise.resolve(new PassThrough());
  };
  close(): void {
    this.closed = true;
    this.healthy = false;
  }
  reconfigured = 0;
  reconfigure(): void {
    this.reconfigured++;
  }
  setSubflowRole(): string | undefined {
    return undefined;
  }
  get currentSession(): Session | undefined {
    if (!this.healthy && this.openStreams === 0) return undefined;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the fake session reads and writes its site
    const site = this;
    this.sessionObj ??= {
      get hasUsableSubflow() {
        return site.healthy;
      },
      close: (e?: PlaitError) => {
        site.sessionClosedWith = e;
        site.healthy = false;
        site.openStreams = 0;
        site.sessionObj = undefined;
      },
      stats: () => ({ openStreams: site.openStreams }),
    } as unknown as Session;
    return this.sessionObj;
  }
  stats(): ClientStats {
    return { session: undefined, paths: [], clockOffsetMs: 0, outage: undefined };
  }
}

function setup(): { clock: VirtualClock; primary: FakeSite; fallback: FakeSite; fo: SiteFailover; made: () => number } {
  const clock = new VirtualClock();
  const primary = new FakeSite('primary');
  let fallback = new FakeSite('fallback');
  let made = 0;
  const fo = new SiteFailover({
    sites: [
      { name: 'primary', make: () => primary },
      {
        name: 'fallback',
        make: () => {
          made++;
          if (made > 1) fallback = new FakeSite('fallback');
          return fallback;
        },
      },
    ],
    failoverAfterMs: 5_000,
    returnAfterMs: 30_000,
    clock,
  });
  return {
    clock,
    primary,
    get fallback() {
      return fallback;
    },
    fo,
    made: () => made,
  };
}

describe('SiteFailover (plait client --fallback-server)', () => {
  it('starts only the primary; with the primary unreachable it starts the fallback after the timeout and new streams go there', async () => {
    const t = setup();
    void t.fo.start();
    await t.clock.advance(4_900);
    expect(t.made()).toBe(0);
    const dial = t.fo.dial({ host: 'example.org', port: 80 });
    await t.clock.advance(200);
    expect(t.made()).toBe(1);
    expect(t.fo.activeSite).toBe(1);
    t.fallback.healthy = true;
    await t.clock.advance(300);
    await dial;
    expect(t.fallback.dials).toBe(1);
    expect(t.primary.dials).toBe(0);
  });

  it('ends the lost primary session at failover with a reason naming it (its streams do not linger for the outage grace)', async () => {
    const t = setup();
    void t.fo.start();
    t.primary.healthy = true;
    await t.clock.advance(1_000);
    t.primary.healthy = false;
    t.primary.openStreams = 2; // a session in an outage, streams still open
    await t.clock.advance(5_300);
    expect(t.fo.activeSite).toBe(1);
    expect(t.primary.sessionClosedWith?.code).toBe(ErrorCode.TIMEOUT);
    expect(t.primary.sessionClosedWith?.message).toMatch(/failed over from primary to fallback/);
    expect(t.primary.closed).toBe(false); // still running: it is the probe
  });

  it('returns to the primary after it has worked for the return time, and closes the fallback once its streams finish', async () => {
    const t = setup();
    void t.fo.start();
    await t.clock.advance(5_300);
    t.fallback.healthy = true;
    t.fallback.openStreams = 1;
    await t.clock.advance(1_000);
    t.primary.healthy = true;
    await t.clock.advance(29_000);
    expect(t.fo.activeSite).toBe(1);
    await t.clock.advance(1_500);
    expect(t.fo.activeSite).toBe(0);
    expect(t.fallback.closed).toBe(false); // a stream is still open there
    await t.fo.dial({ host: 'example.org', port: 80 });
    expect(t.primary.dials).toBe(1);
    t.fallback.openStreams = 0;
    await t.clock.advance(300);
    expect(t.fallback.closed).toBe(true);
    expect(t.fo.stats().returns).toBe(1);
  });

  it('a dial with no working site anywhere fails after its wait with a clear reason', async () => {
    const t = setup();
    void t.fo.start();
    let err: unknown;
    const d = t.fo.dial({ host: 'example.org', port: 80 }).catch((e: unknown) => void (err = e));
    await t.clock.advance(21_000);
    await d;
    expect(String(err)).toMatch(/no working session to fallback/);
  });

  it('a config reload reaches every running site, and a site started later gets it too', async () => {
    const t = setup();
    void t.fo.start();
    const sources = { binds: ['127.0.0.1'], vias: [], backups: [], overflows: [] };
    t.fo.reconfigure(sources);
    expect(t.primary.reconfigured).toBe(1);
    await t.clock.advance(5_300); // the fallback starts now
    expect(t.made()).toBe(1);
    expect(t.fallback.reconfigured).toBe(1);
  });

  it('start resolves once any site works', async () => {
    const t = setup();
    let started = false;
    void t.fo.start().then(() => void (started = true));
    await t.clock.advance(5_300);
    expect(started).toBe(false);
    t.fallback.healthy = true;
    await t.clock.advance(300);
    expect(started).toBe(true);
  });
});
