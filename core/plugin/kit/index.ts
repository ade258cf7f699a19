/**
 * The plugin kit: generic parts every protocol plugin needs, so a plugin is only its
 * protocol. Reached through `core/index.ts`.
 */
export type { DetachedFiles } from './detached';
export { ProcessSupervisor, describeExit, supervisorBackoffConfig, daemonTimeoutConfig, type ProcessSupervisorOptions, type SupervisedExit, type SupervisorEvents } from './supervisor';
export { parseIpv4Subnet, nthSubnet, subnetsOverlap, freeSubnet, ipv4ToInt, intToIpv4, ipv4Range, type Ipv4Subnet } from './ipv4';
export {
  USERNAME_PATTERN,
  HOSTNAME_PATTERN,
  SAFE_PATH_PATTERN,
  COMMON_NAME_PATTERN,
  assertUsername,
  assertCommonName,
  assertSafePath,
  assertPort,
  assertTransport,
  assertIp,
  assertHost,
  assertIntRange,
} from './validate';
export { SerialLock } from './serial-lock';
export { AvailabilityProbe } from './availability';
export { EndedRecordFolder, type EndedRecordFolderOptions } from './ended-records';
export { sameSecret } from './secret';
export { parseStatusText, type StatusTextSession } from './status-text';
