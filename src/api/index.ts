export * from './group.js';
export * from './duration.js';
export * from './common.js';
export * from './challenge.js';
export * from './session.js';
export * from './cidr.js';
