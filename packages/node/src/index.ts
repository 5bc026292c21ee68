export * from './socket-channel.js';
export * from './stream-duplex.js';
export * from './pipe.js';
