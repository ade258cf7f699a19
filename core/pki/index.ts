/**
 * The panel's one PKI (contract; the implementation lives beside this file). Its CA is kept
 * in the main server's data dir and issues server certificates for any protocol on any host
 * and client certificates for users, so re-provisioning a node or adding a protocol never
 * invalidates a profile. Runs openssl through a Host (argv only).
 */
import type { CertificateBundle, PluginPki } from '../plugin/types';

export interface PanelPki extends PluginPki {
  /** Creates the CA on first use (idempotent). */
  init(): Promise<void>;
  /**
   * The user's current certificate is revoked (listed in the CRL) and its files removed; the
   * next `clientCertificate(username)` issues a new key and serial. Used by revoke and delete,
   * so a user created later with the same name never inherits the old profile.
   */
  revokeClient(username: string): Promise<void>;
  /** PEM CRL listing every revoked certificate (reaches plugins as the `pki_crl` setting). */
  crl(): Promise<string>;
}

export type { CertificateBundle };

export { OpensslPanelPki, parseIndex, type OpensslPkiOptions, type IndexEntry, type IssuedCertificate, type CertificateKind } from './openssl-pki';

import { OpensslPanelPki, type OpensslPkiOptions } from './openssl-pki';

/**
 * The panel's PKI kept in `options.dir` on `options.host` (the main server's `<dataDir>/pki`).
 *
 * @example
 * const pki = createPanelPki({ host: mainHost, dir: path.join(config.dataDir, 'pki'), clock });
 * await pki.init();
 */
export function createPanelPki(options: OpensslPkiOptions): PanelPki {
  return new OpensslPanelPki(options);
}
