export * from './server.js';
export * from './egress-policy.js';
export * from './dial-target.js';
