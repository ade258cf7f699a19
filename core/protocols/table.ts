/**
 * The one protocol table. Everything in core and api that differs by protocol reads it: the
 * API's field names, the database columns behind them, default ports, client address pools,
 * where listeners come from. Outside this folder, core/db (the schema) and plugins/, no
 * protocol name is written down (test/unit/protocol-literals.test.ts enforces it).
 *
 * The four protocols are fixed by the API contract (`enable_openvpn`, `l2tp_servers`, …);
 * what a plugin adds is an implementation of one of them, never a new row here.
 */
import { generateWireGuardKeyPair } from './wireguard-material';

export const PROTOCOL_IDS = ['openvpn', 'l2tp', 'cisco', 'wireguard'] as const;
export type ProtocolId = (typeof PROTOCOL_IDS)[number];

export type Transport = 'tcp' | 'udp';

export interface DefaultPort {
  port: number;
  protocol: Transport;
}

export interface ProtocolSpec {
  readonly id: ProtocolId;
  /** What operators and customers read: `OpenVPN`, `Cisco AnyConnect`. */
  readonly displayName: string;
  /** Directory under plugins/ that implements it by default. */
  readonly pluginName: string;
  /** Field names of the REST/tRPC contract. */
  readonly api: {
    /** Create/edit/detail flag, e.g. `enable_wg1`. */
    readonly enable: string;
    /** Per-protocol password field, when the protocol logs in with one. */
    readonly password: string | null;
    /** Detail list of servers the user may dial, e.g. `wg_servers`. */
    readonly servers: string;
  };
  /** Columns of the `users` table behind those fields. */
  readonly columns: {
    readonly enable: string;
    readonly password: string | null;
  };
  /**
   * Per-user material kept in `users` columns and handed to the plugin: `public` goes into the
   * desired state on every host, `clientOnly` only into client configs (never to a server).
   * Keys are the names plugins read (`material.publicKey`), values the columns.
   */
  readonly material: {
    readonly public: Readonly<Record<string, string>>;
    readonly clientOnly: Readonly<Record<string, string>>;
    /** Detail fields that show material, field → column. */
    readonly apiFields: Readonly<Record<string, string>>;
  };
  /** Where this protocol's listeners come from: the ports table (plus the server's default), or the default ports below. */
  readonly listenerSource: 'ports-table' | 'default-ports';
  /** Ports it listens on when nothing else is configured; the first one is shown to customers. */
  readonly defaultPorts: readonly DefaultPort[];
  /** IPv4 pool client addresses are taken from (the server masquerades it). */
  readonly defaultClientPool: string;
  /** The settings key overriding the pool, e.g. POLYGATE_OPENVPN_SUBNET_POOL → `openvpnSubnetPool`. */
  readonly poolConfigKey: string;
  /** Legacy field names accepted on create/edit as aliases, alias → field. */
  readonly aliases: Readonly<Record<string, string>>;
  /** Credentials core makes when the protocol is enabled for a user without them (column → value). */
  generateMaterial?(): Record<string, string>;
}

const table: readonly ProtocolSpec[] = [
  {
    id: 'openvpn',
    displayName: 'OpenVPN',
    pluginName: 'openvpn',
    api: { enable: 'enable_openvpn', password: 'openvpn_password', servers: 'openvpn_servers' },
    columns: { enable: 'enable_openvpn', password: 'openvpn_password' },
    material: { public: {}, clientOnly: {}, apiFields: {} },
    listenerSource: 'ports-table',
    defaultPorts: [{ port: 1194, protocol: 'udp' }],
    defaultClientPool: '10.8.0.0/16',
    poolConfigKey: 'openvpnSubnetPool',
    aliases: {},
  },
  {
    id: 'l2tp',
    displayName: 'L2TP/IPsec',
    pluginName: 'l2tp-ipsec',
    api: { enable: 'enable_l2tp', password: 'l2tp_password', servers: 'l2tp_servers' },
    columns: { enable: 'enable_l2tp', password: 'l2tp_password' },
    material: { public: {}, clientOnly: {}, apiFields: {} },
    listenerSource: 'default-ports',
    defaultPorts: [
      { port: 500, protocol: 'udp' },
      { port: 4500, protocol: 'udp' },
    ],
    defaultClientPool: '10.10.0.0/16',
    poolConfigKey: 'l2tpSubnetPool',
    aliases: {},
  },
  {
    id: 'cisco',
    displayName: 'Cisco AnyConnect',
    pluginName: 'ocserv',
    api: { enable: 'enable_cisco', password: 'cisco_password', servers: 'cisco_servers' },
    columns: { enable: 'enable_cisco', password: 'cisco_password' },
    material: { public: {}, clientOnly: {}, apiFields: {} },
    listenerSource: 'default-ports',
    defaultPorts: [
      { port: 443, protocol: 'tcp' },
      { port: 443, protocol: 'udp' },
    ],
    defaultClientPool: '10.12.0.0/16',
    poolConfigKey: 'ciscoSubnetPool',
    aliases: {},
  },
  {
    id: 'wireguard',
    displayName: 'WireGuard',
    pluginName: 'wireguard',
    api: { enable: 'enable_wg1', password: null, servers: 'wg_servers' },
    columns: { enable: 'enable_wg', password: null },
    material: {
      public: { publicKey: 'wg_public_key', address: 'wg_address' },
      clientOnly: { privateKey: 'wg_private_key' },
      apiFields: { wg_address: 'wg_address', wg_public_key: 'wg_public_key' },
    },
    listenerSource: 'default-ports',
    defaultPorts: [{ port: 51820, protocol: 'udp' }],
    defaultClientPool: '10.66.0.0/16',
    poolConfigKey: 'wireguardSubnetPool',
    aliases: { enable_wg: 'enable_wg1' },
    generateMaterial() {
      const pair = generateWireGuardKeyPair();
      return { wg_private_key: pair.privateKey, wg_public_key: pair.publicKey };
    },
  },
];

export const PROTOCOLS: readonly ProtocolSpec[] = Object.freeze(table.map((p) => Object.freeze(p)));

const byId = new Map(PROTOCOLS.map((p) => [p.id, p]));
const byPlugin = new Map(PROTOCOLS.map((p) => [p.pluginName, p]));

export function isProtocolId(value: unknown): value is ProtocolId {
  return typeof value === 'string' && byId.has(value as ProtocolId);
}

export function protocolSpec(id: ProtocolId): ProtocolSpec {
  const spec = byId.get(id);
  if (!spec) throw new Error(`unknown protocol ${JSON.stringify(id)}`);
  return spec;
}

/** The protocol a plugin directory implements by default (`ocserv` → cisco), if any. */
export function protocolOfPluginName(name: string): ProtocolSpec | undefined {
  return byPlugin.get(name) ?? byId.get(name as ProtocolId);
}

/** Every `users` column that holds a protocol's material (public and client-only). */
export const MATERIAL_COLUMNS: readonly string[] = PROTOCOLS.flatMap((p) => [...Object.values(p.material.public), ...Object.values(p.material.clientOnly)]);

/** Every protocol's enable/password columns, for queries that read users. */
export const PROTOCOL_COLUMNS: readonly string[] = PROTOCOLS.flatMap((p) => [p.columns.enable, ...(p.columns.password ? [p.columns.password] : [])]);
