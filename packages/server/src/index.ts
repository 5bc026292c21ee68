// The public API of @plait/server: what the CLI, the client's tests and the
// scripts use. This package's own tests import from ../src/ directly.
export { PlaitServer, type PlaitServerOptions, type PublishServerOptions, type ServerLogger, type ListenSpec, type BoundListener } from './server.js';
export { PortPublisher, PUBLISH_DEFAULTS, type PublicationStats, type PublicationState } from './publish.js';
export { resolvConfNameserver } from './resolv-conf.js';
export { EgressPolicy, parseCidr, type Cidr, type EgressPolicyOptions } from './egress-policy.js';
export { UserDirectory, UserStats, type ServerUser, type UserFigures } from './users.js';
export { WebSocketListener, forwardedFor, type WebSocketListenOptions } from './ws-listener.js';
