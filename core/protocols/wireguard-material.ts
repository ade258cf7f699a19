import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import ipaddr from 'ipaddr.js';
import { unavailable } from '../errors';

export interface WireGuardKeyPair {
  /** Raw 32-byte X25519 private key, standard base64 (what `wg genkey` prints). */
  privateKey: string;
  /** Raw 32-byte X25519 public key, standard base64 (what `wg pubkey` prints). */
  publicKey: string;
}

/**
 * The raw 32-byte key at the end of an X25519 PKCS#8 or SPKI DER. Not JWK: on Node 20 a garbage
 * collection during a JWK export can deadlock on the key-generation job's mutex (seen freezing
 * the panel in a bulk create of 1000 WireGuard users); the DER export does not take that path.
 */
const rawKeyOfDer = (der: Buffer): string => {
  const raw = der.subarray(der.length - 32);
  if (raw.length !== 32) throw new Error('unexpected X25519 key length');
  return raw.toString('base64');
};

/** Fixed PKCS#8 prefix of a raw X25519 private key. */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** A fresh key pair in WireGuard's own encoding, without shelling out to `wg`. */
export function generateWireGuardKeyPair(): WireGuardKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return {
    privateKey: rawKeyOfDer(privateKey.export({ format: 'der', type: 'pkcs8' })),
    publicKey: rawKeyOfDer(publicKey.export({ format: 'der', type: 'spki' })),
  };
}

/** The public key belonging to a WireGuard private key (base64), e.g. to check a stored pair. */
export function wireGuardPublicKeyOf(privateKeyBase64: string): string {
  const der = Buffer.concat([X25519_PKCS8_PREFIX, Buffer.from(privateKeyBase64, 'base64')]);
  const pub = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
  return rawKeyOfDer(pub.export({ format: 'der', type: 'spki' }));
}

/** Client addresses come from 10.66.0.0/16; .0.1 is the server side of every tunnel. */
export const WIREGUARD_POOL = '10.66.0.0/16';
const POOL_BASE = ipaddr.parse('10.66.0.0').toByteArray();
const POOL_HOSTS = 2 ** 16;

/**
 * The tunnel address of a user, derived from its row id so it is unique and stable without a
 * separate allocation table: host part = 2 + id, e.g. id 1 → `10.66.0.3/32`.
 */
export function wireGuardAddressFor(userId: number): string {
  const host = 2 + userId;
  // The last address of the /16 is its broadcast address; never hand it out.
  if (!Number.isInteger(userId) || userId < 1 || host >= POOL_HOSTS - 1) {
    throw unavailable(`WireGuard address pool ${WIREGUARD_POOL} is exhausted (user id ${userId}).`);
  }
  const bytes = [POOL_BASE[0]!, POOL_BASE[1]!, (host >> 8) & 0xff, host & 0xff];
  return `${ipaddr.fromByteArray(bytes).toString()}/32`;
}
