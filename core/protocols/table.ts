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

export interface CustomerField {
  /** Key in the page's JSON, e.g. `public_key`. */
  readonly key: string;
  readonly label: string;
  readonly from: { readonly column: string } | { readonly setting: 'ipsec_psk' };
}

export type ClientPlatform = 'android' | 'ios' | 'windows' | 'macos' | 'linux';

/** A client app customers install (or the system's own VPN settings, `builtin`). */
export interface ClientApp {
  readonly name: string;
  readonly platforms: readonly ClientPlatform[];
  /** The settings screen every phone and computer has: the page words it per language. */
  readonly builtin?: boolean;
  readonly url?: string;
}

/**
 * Which setup steps the subscription page shows; the steps themselves are per language in
 * api/pages/i18n, so a protocol that sets up like an existing one needs no new text.
 */
export type SetupKind = 'import-profile' | 'scan-config' | 'builtin-psk' | 'server-login';

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
  /**
   * The material column holding the user's tunnel address, leased from the protocol's client
   * pool when the protocol is enabled (unique per pool; a freed address is not reused at once).
   */
  readonly addressColumn?: string;
  /** Where this protocol's listeners come from: the ports table (plus the server's default), or the default ports below. */
  readonly listenerSource: 'ports-table' | 'default-ports';
  /** Ports it listens on when nothing else is configured; the first one is shown to customers. */
  readonly defaultPorts: readonly DefaultPort[];
  /** IPv4 pool client addresses are taken from (the server masquerades it). */
  readonly defaultClientPool: string;
  /** The settings key overriding the pool, e.g. POLYGATE_OPENVPN_SUBNET_POOL → `openvpnSubnetPool`. */
  readonly poolConfigKey: string;
  /**
   * For the protocol whose listeners come from the contract's ports table: where each server's
   * default listener is stored (the main server's in settings, a node's in its row).
   */
  readonly portsTable?: {
    readonly mainPortSetting: string;
    readonly mainTransportSetting: string;
    readonly nodePortColumn: string;
    readonly nodeTransportColumn: string;
  };
  /**
   * What the subscription page shows a customer besides servers, username/password and
   * client-config links: material columns and server settings, each under a key and a label.
   */
  readonly customer: {
    readonly fields: readonly CustomerField[];
    /** How a server is typed into a client: the host alone (fixed ports), `host:port`, or an `https://` URL. */
    readonly dial: 'host' | 'host-port' | 'https-url';
    readonly setup: SetupKind;
    readonly apps: readonly ClientApp[];
  };
  /** Credentials core makes when the protocol is enabled for a user without them (column → value). */
  generateMaterial?(): Record<string, string>;
}

const table = [
  {
    id: 'openvpn',
    displayName: 'OpenVPN',
    pluginName: 'openvpn',
    api: { enable: 'enable_openvpn', password: 'openvpn_password', servers: 'openvpn_servers' },
    columns: { enable: 'enable_openvpn', password: 'openvpn_password' },
    material: { public: {}, clientOnly: {}, apiFields: {} },
    listenerSource: 'ports-table',
    portsTable: {
      mainPortSetting: 'openvpn_default_port',
      mainTransportSetting: 'openvpn_default_protocol',
      nodePortColumn: 'openvpn_port',
      nodeTransportColumn: 'protocol',
    },
    defaultPorts: [{ port: 1194, protocol: 'udp' }],
    defaultClientPool: '10.8.0.0/16',
    poolConfigKey: 'openvpnSubnetPool',
    customer: {
      fields: [],
      dial: 'host-port',
      setup: 'import-profile',
      apps: [
        { name: 'OpenVPN Connect', platforms: ['android', 'ios', 'windows', 'macos'], url: 'https://openvpn.net/client/' },
        { name: 'OpenVPN (NetworkManager)', platforms: ['linux'] },
      ],
    },
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
    customer: {
      fields: [{ key: 'psk', label: 'Pre-shared key (PSK)', from: { setting: 'ipsec_psk' } }],
      dial: 'host',
      setup: 'builtin-psk',
      apps: [
        { name: 'L2TP/IPsec PSK', platforms: ['windows', 'macos', 'ios', 'android'], builtin: true },
        { name: 'IKEv2', platforms: ['android', 'windows', 'macos', 'ios'], builtin: true },
        { name: 'strongSwan VPN Client', platforms: ['android'], url: 'https://www.strongswan.org/download.html' },
        { name: 'NetworkManager-l2tp', platforms: ['linux'] },
      ],
    },
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
    customer: {
      fields: [],
      dial: 'https-url',
      setup: 'server-login',
      apps: [
        { name: 'Cisco Secure Client (AnyConnect)', platforms: ['android', 'ios', 'windows', 'macos'] },
        { name: 'OpenConnect', platforms: ['linux', 'windows'], url: 'https://www.infradead.org/openconnect/' },
      ],
    },
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
    addressColumn: 'wg_address',
    listenerSource: 'default-ports',
    defaultPorts: [{ port: 51820, protocol: 'udp' }],
    defaultClientPool: '10.66.0.0/16',
    poolConfigKey: 'wireguardSubnetPool',
    customer: {
      fields: [
        { key: 'address', label: 'Address', from: { column: 'wg_address' } },
        { key: 'public_key', label: 'Public key', from: { column: 'wg_public_key' } },
      ],
      dial: 'host-port',
      setup: 'scan-config',
      apps: [{ name: 'WireGuard', platforms: ['android', 'ios', 'windows', 'macos', 'linux'], url: 'https://www.wireguard.com/install/' }],
    },
    generateMaterial() {
      const pair = generateWireGuardKeyPair();
      return { wg_private_key: pair.privateKey, wg_public_key: pair.publicKey };
    },
  },
] as const satisfies readonly ProtocolSpec[];

type Table = typeof table;
/** `enable_openvpn` | … | `enable_wg1`: the API's enable flags, as literal types for typed clients. */
export type EnableField = Table[number]['api']['enable'];
/** `openvpn_password` | `l2tp_password` | `cisco_password`. */
export type PasswordField = Exclude<Table[number]['api']['password'], null>;
/** `openvpn_servers` | … | `wg_servers`. */
export type ServersField = Table[number]['api']['servers'];
/** Detail fields that show material (`wg_address`, `wg_public_key`). */
export type MaterialField = Table[number] extends infer P ? (P extends { material: { apiFields: infer F } } ? keyof F & string : never) : never;

export const PROTOCOLS: readonly ProtocolSpec[] = Object.freeze(table.map((p) => Object.freeze(p as ProtocolSpec)));

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

/**
 * The contract's ports table (`/api/v1/public/ports`, a node's `openvpn_port`) belongs to
 * exactly one protocol; this is it.
 */
export const PORTS_TABLE_PROTOCOL: ProtocolSpec & { portsTable: NonNullable<ProtocolSpec['portsTable']> } = (() => {
  const found = PROTOCOLS.filter((p) => p.listenerSource === 'ports-table');
  if (found.length !== 1 || !found[0]!.portsTable) throw new Error('the protocol table must name exactly one ports-table protocol');
  return found[0] as ProtocolSpec & { portsTable: NonNullable<ProtocolSpec['portsTable']> };
})();

/** The node API field (and column) of a node's default listener port: the contract's name, kept as a literal type. */
export const NODE_PORT_FIELD = table[0].portsTable.nodePortColumn;
export type NodePortField = typeof NODE_PORT_FIELD;
