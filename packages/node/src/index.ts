export * from './socket-channel.js';
export * from './stream-duplex.js';
export * from './pipe.js';
export * from './tcp-sockopt.js';
export * from './cpu.js';
