/*
 * SshHost and the SSH helpers provisioning uses. The implementation lives in `./ssh/`, one
 * file per concern; this module is the import surface callers already use.
 */
export { SshHost } from './ssh/host';
export { DEFAULT_SSH_CONNECT_TIMEOUT_MS, hostKeyFingerprint, type SshConnectionOptions } from './ssh/connect';
export { remoteCommandLine, shellQuote } from './ssh/command-line';
export { sshPreflight, type SshPreflightOptions, type SshPreflightResult } from './ssh/preflight';
export { generateSshKeyPair, installAuthorizedKey, installRootAuthorizedKeyWithSudo, publicKeyOf, removeAuthorizedKey, type SshKeyPair } from './ssh/keys';
