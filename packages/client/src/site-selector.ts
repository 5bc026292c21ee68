/**
 * Which site (the primary server, or a fallback) new streams go to
 * (plait client --fallback-server). Pure: fed health observations with the
 * time they were made, it answers with the site to use. The wrapper that
 * owns the clients (site-failover.ts) acts on the answer.
 *
 * Rules, with hysteresis so a site on the edge does not make us flap:
 *   - the active site is left only once it has had no working session for
 *     `failoverAfterMs` (one refused or lost connection is not enough);
 *     then a preferred site that works now, else the next site in order
 *     becomes active (the one after the last wraps to the first fallback:
 *     the primary is never given up, it is probed);
 *   - a site earlier in the order (the primary first) is returned to only
 *     once it has been healthy without a break for `returnAfterMs`.
 */
export interface SiteSelectorOptions {
  /** Sites in order of preference; index 0 is the primary. At least 1. */
  sites: number;
  /** The active site is given up after this long without a working session (ms). */
  failoverAfterMs: number;
  /** A preferred site must stay healthy this long before we go back to it (ms). */
  returnAfterMs: number;
}

export type SiteChange =
  | { kind: 'stay' }
  /** `from` has been down for failoverAfterMs: use `to` (starting it if needed). */
  | { kind: 'failover'; from: number; to: number; downForMs: number }
  /** `to` (preferred over `from`) has been healthy for returnAfterMs: go back. */
  | { kind: 'return'; from: number; to: number; healthyForMs: number };

interface SiteHealth {
  /** Since when (ms) the site has been continuously healthy; undefined while it is not. */
  healthySince: number | undefined;
  /** Since when the site has been continuously without a working session (while active). */
  downSince: number | undefined;
}

export class SiteSelector {
  private activeSite = 0;
  private readonly health: SiteHealth[];

  constructor(private readonly opts: SiteSelectorOptions, now: number) {
    if (!Number.isInteger(opts.sites) || opts.sites < 1) throw new RangeError(`sites must be an integer >= 1, got ${opts.sites}`);
    this.health = Array.from({ length: opts.sites }, () => ({ healthySince: undefined, downSince: undefined }));
    // The primary starts "down since now": it gets failoverAfterMs to come up.
    this.health[0]!.downSince = now;
  }

  get active(): number {
    return this.activeSite;
  }

  /**
   * Record what each site looks like at `now` (`healthy[i]`: site i has a
   * session with a usable subflow; sites not running are false) and say
   * whether to switch.
   */
  observe(now: number, healthy: readonly boolean[]): SiteChange {
    for (let i = 0; i < this.health.length; i++) {
      const h = this.health[i]!;
      if (healthy[i]) {
        h.healthySince ??= now;
        h.downSince = undefined;
      } else {
        h.healthySince = undefined;
        h.downSince ??= now;
      }
    }
    const from = this.activeSite;
    // Return to the most preferred site that has been healthy long enough.
    for (let i = 0; i < from; i++) {
      const since = this.health[i]!.healthySince;
      if (since !== undefined && now - since >= this.opts.returnAfterMs) {
        this.switchTo(i, now);
        return { kind: 'return', from, to: i, healthyForMs: now - since };
      }
    }
    const down = this.health[from]!.downSince;
    if (this.opts.sites > 1 && down !== undefined && now - down >= this.opts.failoverAfterMs) {
      // A preferred site that works right now beats waiting out the return hysteresis
      // (that only guards against leaving a working site); else the next in order.
      const preferred = this.health.findIndex((h, i) => i < from && h.healthySince !== undefined);
      const to = preferred >= 0 ? preferred : from + 1 < this.opts.sites ? from + 1 : 1;
      if (to === from) return { kind: 'stay' }; // one fallback, already on it: keep trying it
      this.switchTo(to, now);
      return { kind: 'failover', from, to, downForMs: now - down };
    }
    return { kind: 'stay' };
  }

  private switchTo(site: number, now: number): void {
    this.activeSite = site;
    const h = this.health[site]!;
    // The new site gets its own failoverAfterMs to come up, counted from now.
    if (h.healthySince === undefined) h.downSince = now;
  }
}
