import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { PROTOCOLS, type DefaultPort, type ProtocolSpec } from '../protocols/table';
import { WEBHOOK_ENV_NAMES, WEBHOOK_SETTINGS } from '../webhooks/options';

/** One client-pool setting per protocol: `POLYGATE_<PROTOCOL>_SUBNET_POOL` (default: the protocol table's pool). */
const poolSettings = Object.fromEntries(PROTOCOLS.map((p) => [p.poolConfigKey, z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'must be an IPv4 CIDR such as 10.8.0.0/16').optional()]));
const poolEnvNames = Object.fromEntries(PROTOCOLS.map((p) => [p.poolConfigKey, `POLYGATE_${p.id.toUpperCase()}_SUBNET_POOL`]));

/** The settings key of a protocol's listener port, e.g. `wireguardPort` (`POLYGATE_WIREGUARD_PORT`). */
export const portConfigKey = (spec: ProtocolSpec): string => `${spec.id}Port`;
/** One listener-port setting per protocol, generated from the table so a protocol never lacks one. */
const portSettings = Object.fromEntries(PROTOCOLS.map((p) => [portConfigKey(p), z.coerce.number().int().min(1).max(65535).optional()]));
const portEnvNames = Object.fromEntries(PROTOCOLS.map((p) => [portConfigKey(p), `POLYGATE_${p.id.toUpperCase()}_PORT`]));

/** Words of POLYGATE_PLUGINS that mean "load no protocol plugin". */
const NO_PLUGINS = new Set(['none']);

/**
 * Settings come from `POLYGATE_*` environment variables, optionally from a JSON file named by
 * `POLYGATE_CONFIG_FILE` (environment wins). Validated once at boot and frozen; an error names
 * the setting at fault.
 */
const schema = z.object({
  host: z.string().min(1).default('0.0.0.0'),
  port: z.coerce.number().int().min(0).max(65535).default(8080),
  dataDir: z.string().min(1).default('./data'),
  databaseUrl: z
    .string()
    .regex(/^(sqlite:|postgres:\/\/|postgresql:\/\/)/, 'must start with sqlite: or postgres://')
    .optional(),
  adminApiKey: z.string().min(16, 'must be at least 16 characters').optional(),
  publicUrl: z.string().url().optional(),
  publicHost: z.string().min(1).optional(),
  accountingIntervalMs: z.coerce.number().int().min(100).max(600_000).default(5000),
  /**
   * Protocol plugins to load; unavailable ones are reported, never fatal. Set but empty, or
   * `none`, loads none (an API-only panel), which is not the same as unset (the default).
   */
  plugins: z
    .string()
    .default(PROTOCOLS[0]!.pluginName)
    .transform((s) => s.split(',').map((p) => p.trim()).filter((p) => p && !NO_PLUGINS.has(p.toLowerCase()))),
  /**
   * Each plugin's own settings by plugin name (`{"ocserv": {"dns": ["1.1.1.1"]}}`), checked by
   * the plugin's schema; only from POLYGATE_CONFIG_FILE (nested values do not fit a variable).
   */
  pluginConfig: z.record(z.string(), z.record(z.string(), z.unknown())).default({}),
  /** Whether the daemon may touch nftables (needs root and nft). */
  firewall: z.enum(['auto', 'off']).default('auto'),
  /** Whether to also listen on each reseller's panel/subscription ports. */
  resellerListeners: z.enum(['on', 'off']).default('on'),
  metricsToken: z.string().min(16).optional(),
  /**
   * Per-user series in /metrics (one per user and direction). Off by default: with 100k users
   * they would dwarf everything else a Prometheus server stores.
   */
  metricsPerUser: z.enum(['on', 'off']).default('off'),
  /** PEM certificate (chain) and key: the panel serves HTTPS, re-reading both when they change. */
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  /** Scheduled backups into `<data dir>/backups`; 0 (the default) turns them off. */
  backupIntervalHours: z.coerce.number().min(0).max(24 * 24, 'must be at most 576 (24 days)').default(0),
  /** How many scheduled backups to keep (the oldest are removed). */
  backupKeep: z.coerce.number().int().min(1).max(10_000).default(7),
  /** Where provisioning puts polygate's files on new nodes (checked when the nodes service starts). */
  nodeRoot: z.string().min(1).default('/var/lib/polygate-node'),
  ...poolSettings,
  ...portSettings,
  ...WEBHOOK_SETTINGS,
});

export type Config = Readonly<z.output<typeof schema>> & {
  readonly databaseUrlResolved: string;
  readonly publicUrlResolved: string;
  readonly publicHostResolved: string;
};

const envNames: Record<string, string> = {
  host: 'POLYGATE_HOST',
  port: 'POLYGATE_PORT',
  dataDir: 'POLYGATE_DATA_DIR',
  databaseUrl: 'POLYGATE_DATABASE_URL',
  adminApiKey: 'POLYGATE_ADMIN_API_KEY',
  publicUrl: 'POLYGATE_PUBLIC_URL',
  publicHost: 'POLYGATE_PUBLIC_HOST',
  accountingIntervalMs: 'POLYGATE_ACCOUNTING_INTERVAL_MS',
  plugins: 'POLYGATE_PLUGINS',
  firewall: 'POLYGATE_FIREWALL',
  resellerListeners: 'POLYGATE_RESELLER_LISTENERS',
  metricsToken: 'POLYGATE_METRICS_TOKEN',
  metricsPerUser: 'POLYGATE_METRICS_PER_USER',
  tlsCert: 'POLYGATE_TLS_CERT',
  tlsKey: 'POLYGATE_TLS_KEY',
  backupIntervalHours: 'POLYGATE_BACKUP_INTERVAL_HOURS',
  backupKeep: 'POLYGATE_BACKUP_KEEP',
  nodeRoot: 'POLYGATE_NODE_ROOT',
  ...poolEnvNames,
  ...portEnvNames,
  ...WEBHOOK_ENV_NAMES,
};

/** The environment variable behind a setting, for messages that tell the operator what to change. */
export function settingName(key: string): string {
  return envNames[key] ?? key;
}

/** Settings where "set but empty" means something (POLYGATE_PLUGINS= loads no plugin). */
const EMPTY_IS_A_VALUE = new Set(['plugins']);

export class ConfigError extends Error {}

export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<Record<keyof typeof envNames, unknown>> = {}): Config {
  let fromFile: Record<string, unknown> = {};
  if (env.POLYGATE_CONFIG_FILE) {
    try {
      fromFile = JSON.parse(readFileSync(env.POLYGATE_CONFIG_FILE, 'utf8'));
    } catch (e) {
      throw new ConfigError(`POLYGATE_CONFIG_FILE (${env.POLYGATE_CONFIG_FILE}) could not be read as JSON: ${(e as Error).message}`);
    }
  }
  const raw: Record<string, unknown> = { ...fromFile };
  for (const [key, name] of Object.entries(envNames)) {
    const value = env[name];
    if (value !== undefined && (value !== '' || EMPTY_IS_A_VALUE.has(key))) raw[key] = value;
  }
  Object.assign(raw, overrides);
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '');
      const name = envNames[key as keyof typeof envNames] ?? key;
      return `${name}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const c = parsed.data;
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) {
    const missing = c.tlsCert === undefined ? envNames.tlsCert : envNames.tlsKey;
    throw new ConfigError(`Invalid configuration:\n  ${missing}: must be set too (HTTPS needs both POLYGATE_TLS_CERT and POLYGATE_TLS_KEY)`);
  }
  const dataDir = path.resolve(c.dataDir);
  const shownHost = c.host === '0.0.0.0' || c.host === '::' ? '127.0.0.1' : c.host;
  // Subscription links carry tokens: with TLS on they default to https.
  const scheme = c.tlsCert ? 'https' : 'http';
  const publicUrlResolved = (c.publicUrl ?? `${scheme}://${shownHost}:${c.port}`).replace(/\/+$/, '');
  return Object.freeze({
    ...c,
    tlsCert: c.tlsCert === undefined ? undefined : path.resolve(c.tlsCert),
    tlsKey: c.tlsKey === undefined ? undefined : path.resolve(c.tlsKey),
    dataDir,
    databaseUrlResolved: c.databaseUrl ?? `sqlite:${path.join(dataDir, 'polygate.sqlite')}`,
    publicUrlResolved,
    publicHostResolved: c.publicHost ?? new URL(publicUrlResolved).hostname,
  });
}

/**
 * The listeners a protocol runs when nothing else is configured: the table's default ports, with
 * its port setting (`POLYGATE_<PROTOCOL>_PORT`) replacing the shown port on every transport that
 * uses it (443/tcp and 443/udp move together; a second, different port such as 4500 stays).
 */
export function defaultPortsOf(config: Config, spec: ProtocolSpec): readonly DefaultPort[] {
  const configured = (config as unknown as Record<string, unknown>)[portConfigKey(spec)];
  if (typeof configured !== 'number') return spec.defaultPorts;
  const shown = spec.defaultPorts[0]!.port;
  return spec.defaultPorts.map((d) => (d.port === shown ? { port: configured, protocol: d.protocol } : d));
}
