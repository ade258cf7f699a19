/**
 * The only import surface for protocol plugins: the plugin API, the Host they act through,
 * and the domain error family. Plugins never import other core modules.
 */
export * from './plugin/types';
export * from './errors';
export type { Host, HostProcess, HostProcessExit, RunOptions, RunResult, SpawnOptions, StreamTarget } from './hosts/host';
export { HostError, isHostError, runChecked } from './hosts/host';
export type { Logger } from './logger';
export { PROTOCOLS, PROTOCOL_IDS, protocolSpec, isProtocolId, type ProtocolSpec } from './protocols/table';
export * from './plugin/kit';
