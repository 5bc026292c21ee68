// The public API of @plait/client: what the CLI uses. This package's own
// tests import from ../src/ directly.
export { PlaitClient, type ClientLogger, type ClientStats, type PlaitClientOptions, type ServerAddr } from './client.js';
export type { Dialer, Target } from './dialer.js';
export { listenForward, listenHttpConnect, listenSocks5, listenTransparent } from './listeners.js';
export type { TransparentCounters, TransparentMode } from './transparent.js';
export { parseForwardSpec, type ForwardSpec } from './forward.js';
export { MAX_PUBLICATIONS, parsePublishSpec, type ClientPublicationStats, type PublishSpec, type PublishState } from './publish.js';
export type { Socks5Options } from './socks5.js';
export type { HttpConnectOptions } from './http-connect.js';
export { DatagramFlows, RESOLVER, type DatagramFlow, type DatagramPeer, type FlowHandlers, type OpenResult } from './datagram-flows.js';
export { DnsForwarder, type DnsForwarderOptions } from './dns-forwarder.js';
export type { Socks5UdpOptions } from './socks5-udp.js';
export { BypassDomains, type BypassDomainsOptions, type CommandRunner } from './bypass-domains.js';
export { parseDnsAnswer, type DnsLearned } from './dns-answer.js';
export { SiteFailover, type FailoverStats, type SiteClient, type SiteFailoverOptions, type SiteShared, type SiteSpec, type SiteStats } from './site-failover.js';
export { SiteSelector, type SiteChange, type SiteSelectorOptions } from './site-selector.js';
export { CAP_ACTIONS, CapLedger, type CapAction, type CapLedgerOptions, type CapSpec, type CapStats } from './cap-ledger.js';
export { CAP_PERIODS, type CapPeriod } from './cap-period.js';
export { CapStateFile, type CapStore } from './cap-store.js';
