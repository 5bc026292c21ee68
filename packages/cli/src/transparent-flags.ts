/**
 * `plait client --redirect [HOST:]PORT` and `--tproxy [HOST:]PORT`: the
 * transparent listeners a router's firewall sends LAN connections to (see
 * `plait router-setup`). A bare port listens on every address (0.0.0.0): a
 * REDIRECT rule rewrites the destination to the address of the interface the
 * packet came in on, so the listener must accept there; the rule set
 * `router-setup` prints drops connections to the port from anywhere but the LAN.
 */
import type * as net from 'node:net';
import { makeCounters, TRANSPARENT_COUNTERS } from '@plait/core';
import { listenTransparent, type ClientLogger, type Dialer, type TransparentCounters, type TransparentMode } from '@plait/client';
import { loadSockOpts, type SockOpts } from '@plait/node';
import { listenError, listenFor, parseHostPort, UsageError, type HostPort } from './args.js';
import { parseDomain } from './router-setup.js';

export interface TransparentFlags {
  redirect?: string;
  tproxy?: string;
  /** Domains whose addresses, learned from --dns answers, go to router-setup's bypass sets. */
  bypassDomain?: string[];
}

/** --bypass-domain: checked names; it learns from --dns answers, so it needs --dns. */
export function parseBypassDomains(flags: TransparentFlags, dns: HostPort | undefined): string[] {
  const domains = (flags.bypassDomain ?? []).map((d) => parseDomain('--bypass-domain', d));
  if (domains.length > 0 && !dns) throw new UsageError('--bypass-domain: needs --dns (the addresses are learned from the DNS answers it forwards)');
  return domains;
}

export interface TransparentPlan {
  redirect: HostPort | undefined;
  tproxy: HostPort | undefined;
}

export function parseTransparentFlags(flags: TransparentFlags): TransparentPlan {
  const parse = (flag: string, v: string | undefined): HostPort | undefined =>
    v === undefined ? undefined : parseHostPort(flag, v, { defaultHost: '0.0.0.0' });
  return { redirect: parse('--redirect', flags.redirect), tproxy: parse('--tproxy', flags.tproxy) };
}

export interface TransparentListeners {
  listeners: { mode: TransparentMode; server: net.Server }[];
  counters: TransparentCounters;
}

/** Opens the listeners in `plan`; a busy port or a missing capability is a usage error naming the flag. */
export async function startTransparent(plan: TransparentPlan, dial: Dialer, log: ClientLogger, sockopts: SockOpts = loadSockOpts()): Promise<TransparentListeners> {
  const counters = makeCounters(TRANSPARENT_COUNTERS);
  const listeners: TransparentListeners['listeners'] = [];
  const opts = (mode: TransparentMode) => ({ mode, counters, log, originalDst: (s: net.Socket) => sockopts.originalDst(s) });
  if (plan.redirect) {
    const at = plan.redirect;
    if (!sockopts.available) {
      log.error({ reason: sockopts.reason }, `--redirect: cannot read where redirected connections were going (${sockopts.reason ?? 'no koffi'}); every one will be dropped. Install koffi, or use --tproxy`);
    }
    listeners.push({ mode: 'redirect', server: await listenFor('--redirect', at, () => listenTransparent(at, opts('redirect'), dial)) });
  }
  if (plan.tproxy) {
    const at = plan.tproxy;
    let fd: number;
    try {
      fd = sockopts.listenTransparent(at.host, at.port);
    } catch (e) {
      const known = listenError('--tproxy', at, e); // a busy port or a foreign address
      throw known instanceof UsageError ? known : new UsageError(`--tproxy: ${e instanceof Error ? e.message : String(e)}`);
    }
    listeners.push({ mode: 'tproxy', server: await listenFor('--tproxy', at, () => listenTransparent({ fd }, opts('tproxy'), dial)) });
  }
  return { listeners, counters };
}
