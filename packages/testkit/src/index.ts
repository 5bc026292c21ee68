// Test and benchmark helpers, for tests across the packages and the scripts.
export { TestClock, track } from './test-clock.js';
export {
  startLinkRelay,
  type CutMode,
  type LinkRelay,
  type LinkRelayOptions,
  type LinkRelayStats,
} from './link-relay.js';
export { startEchoServer, type EchoServer } from './echo-server.js';
export { freeFixedPort } from './listen.js';
export { sha256OfStream, startFileServer, type FileServer } from './http-file-server.js';
export { MemoryLink, type LinkOptions, type MemoryChannel } from './memory-channel.js';
export { startTlsTerminator, testOnlyTls, TEST_ONLY_TLS_DIR, type TestOnlyTls, type TlsTerminator } from './tls-terminator.js';
export { AEAD_VECTORS, type AeadVector } from './aead-vectors.js';
export { scratchDirs } from './scratch-dirs.js';
