export * from './client.js';
export * from './dialer.js';
export * from './socks5.js';
export * from './http-connect.js';
export * from './forward.js';
export * from './listeners.js';
export * from './path-manager.js';
