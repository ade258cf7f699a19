export * from './host';
export { LocalHost, DEFAULT_RUN_TIMEOUT_MS, MAX_RUN_OUTPUT_BYTES, type LocalHostOptions } from './local-host';
export {
  SshHost,
  sshPreflight,
  generateSshKeyPair,
  installAuthorizedKey,
  hostKeyFingerprint,
  shellQuote,
  remoteCommandLine,
  DEFAULT_SSH_CONNECT_TIMEOUT_MS,
  type SshConnectionOptions,
  type SshPreflightOptions,
  type SshPreflightResult,
  type SshKeyPair,
} from './ssh-host';
