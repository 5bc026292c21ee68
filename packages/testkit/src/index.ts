export * from './link-relay.js';
export * from './echo-server.js';
export * from './http-file-server.js';
