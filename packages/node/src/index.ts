// The public API of @plait/node: what the client, the server, the CLI and
// the scripts use. This package's own tests import from ../src/ directly.
export { SocketChannel, hostPort, kernelInfoOf } from './socket-channel.js';
export { StreamDuplex } from './stream-duplex.js';
export { pipeBoth } from './pipe.js';
export { resetCodeForErrno } from './connect-codes.js';
export { adoptSlabReads, noteSlabReads, slabOnread, slabOf, ReadSlab } from './slab-read.js';
export { loadSockOpts, type OriginalDst, type SockOpts } from './tcp-sockopt.js';
export { detectAutoCipher, type AutoCipher } from './cpu.js';
export { tuneHeapForThroughput, growingPercentFor, defaultHeapFloor, type HeapTuning } from './heap-tuning.js';
export { WebSocketChannel, WebSocketChannelError, WS_HIGH_WATER_MARK, WS_MAX_PAYLOAD, WS_SUBPROTOCOL } from './ws-channel.js';
export { dialWebSocket, WebSocketDialError, type WebSocketDialOptions } from './ws-dial.js';
export { openSslAead, OpenSslAeadError, type OpenSslAead } from './openssl-aead.js';
export { StateFile, StateFileRefused, isStoredCount, parseStateText, prepareStateDir, readOpenFile, readRegularFile, type StateFileSpec, type StateWarn } from './state-file.js';
export { SocketBytes, type CountedSocket } from './socket-bytes.js';
