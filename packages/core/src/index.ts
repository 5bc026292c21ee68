// The public API of @plait/core: what the client, the server, the Node
// adapters, the CLI and the scripts (fuzz, benches, attack tools) use. The
// rest is internal; this package's own tests import from ../src/ directly.
// The in-memory link (a test double) lives in @plait/testkit.

// Sessions: open one and join subflows to it (client), accept them (server).
export { connectSession, joinSession, sessionCipher, type ConnectOptions } from './connector.js';
export { Acceptor, type AcceptorOptions } from './acceptor.js';
export type { Session, SessionStats } from './session.js';
export type { Subflow } from './subflow.js';
export type { Stream } from './stream.js';
// Published ports (server-opened streams): PROTOCOL.md 7.1.
export { PublishCode, publishCodeName, type InboundHeader } from './control.js';
// Datagrams over the session (UDP associations, DNS): PROTOCOL.md 6.7.
export type { Datagram } from './datagrams.js';
export { Atyp, DatagramFlag, type DatagramAtyp } from './frames.js';
export { addrToText, formatIPv6, ipToAddr, isPlausibleName } from './datagram-addr.js';
export { createScheduler, schedulerNames } from './scheduler.js';
export { DEFAULT_LATENCY_PORTS } from './stream-class.js';
export { isSubflowRole, SUBFLOW_ROLES, type SubflowRole } from './roles.js';
export { MemoryBudget } from './memory-budget.js';

// Configuration, time and transport: what the embedder supplies.
export { makeConfig, WIRE, type Config } from './config.js';
export { flushMicrotasks, realClock, VirtualClock, type Clock, type Timer } from './clock.js';
export type { ByteChannel, ChannelHandlers, KernelPathInfo } from './channel.js';

// Keys and record ciphers.
export { deriveSecretKeys, helloMac, joinHmacA, MIN_SECRET_BYTES, type SecretKeys } from './keys.js';
export { chooseAutoCipher, CIPHER_NAMES, type CipherName } from './cipher.js';
export { RecordOpener, RecordSealer } from './record.js';
export { nodeCryptoAead, type RecordAead, type RecordAeadFactory } from './record-aead.js';

// Counters, declared once with what each counts (stats and metrics render them).
export { ACCEPTOR_COUNTERS, CLIENT_COUNTERS, counterHelp, makeCounters, SERVER_COUNTERS, SESSION_COUNTERS, TRANSPARENT_COUNTERS, BYPASS_COUNTERS, type Counters } from './counters.js';

// Errors and reset codes, with their names.
export { ErrorCode, errorName, PlaitError, RemoteError, ResetCode, resetName } from './errors.js';

// Wire codecs, for the fuzzer and attack scripts that build hostile input.
export { decodeFrames } from './frames.js';
export { encodeHandshake, HandshakeReader, HELLO_MAC_OFFSET, MsgType } from './handshake-messages.js';
export { startHello, type ClientUser, type HelloUsers, type UserRefusal } from './handshake.js';
export { generateIdentity, identityFromPrivate, USER_NAME_MAX, userNameProblem, type ServerIdentity } from './user-hint.js';
