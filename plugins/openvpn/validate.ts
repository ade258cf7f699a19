import { assertTransport } from '../../core';

/*
 * The generic validators live in the core plugin kit; what is here is OpenVPN's own. Every
 * value that reaches an OpenVPN config, an openssl argv or a file path passes one of them.
 */
export {
  USERNAME_PATTERN,
  COMMON_NAME_PATTERN,
  assertCommonName,
  assertHost,
  assertIntRange,
  assertIp,
  assertPort,
  assertSafePath,
  assertUsername,
  parseIpv4Subnet,
} from '../../core';

/** Tun device names we own; Linux allows 15 characters. */
export const DEVICE_RE = /^pgtun[0-9]{1,5}$/;

/** OpenVPN's `proto` (its configs and our instance keys say `proto`, the plugin API says `protocol`). */
export const assertProto = (proto: unknown): 'udp' | 'tcp' => assertTransport(proto, 'proto');
