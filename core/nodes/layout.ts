import path from 'node:path';
import { invalid } from '../errors';
import { PROTOCOLS } from '../protocols/table';

/** Where polygate keeps everything it installs on a node unless told otherwise. */
export const DEFAULT_NODE_ROOT = '/var/lib/polygate-node';
const SAFE_ROOT = /^\/[A-Za-z0-9._/-]{1,200}$/;
/**
 * The longest suffix a plugin puts under its directory for a unix socket
 * (`plugins/<plugin>/run/65535tcp.sock`, for the longest plugin name); sun_path holds 107 bytes.
 */
const LONGEST_SOCKET_SUFFIX = `/plugins/${PROTOCOLS.map((p) => p.pluginName).reduce((a, b) => (b.length > a.length ? b : a))}/run/65535tcp.sock`;

/**
 * Checks a node root (POLYGATE_NODE_ROOT or a test's directory): absolute, plain characters,
 * no `..`, not `/` itself, short enough for the daemons' unix sockets. Deletion removes this
 * directory as a whole, so anything broader than one directory of ours is refused.
 */
export function checkNodeRoot(root: string, setting = 'POLYGATE_NODE_ROOT'): string {
  const normalized = path.posix.normalize(root).replace(/\/+$/, '');
  if (!SAFE_ROOT.test(root) || root.split('/').includes('..') || normalized === '' || normalized.split('/').length < 3) {
    throw invalid(`${setting} must be an absolute path of at least two levels (letters, digits, . _ - /), e.g. ${DEFAULT_NODE_ROOT}; got ${JSON.stringify(root)}`);
  }
  if (Buffer.byteLength(normalized + LONGEST_SOCKET_SUFFIX) > 107) throw invalid(`${setting} is too long for the daemons' unix sockets (at most ${107 - LONGEST_SOCKET_SUFFIX.length} bytes)`);
  return normalized;
}

/** A plugin's state directory on a node. */
export const nodePluginDir = (root: string, protocol: string): string => path.posix.join(root, 'plugins', protocol);
/** Marker written at provisioning: deletion refuses to remove a root that does not carry it. */
export const nodeMarkerFile = (root: string): string => path.posix.join(root, 'polygate-node.json');
