import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { PROTOCOLS } from '../protocols/table';

/** One client-pool setting per protocol: `POLYGATE_<PROTOCOL>_SUBNET_POOL` (default: the protocol table's pool). */
const poolSettings = Object.fromEntries(PROTOCOLS.map((p) => [p.poolConfigKey, z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, 'must be an IPv4 CIDR such as 10.8.0.0/16').optional()]));
const poolEnvNames = Object.fromEntries(PROTOCOLS.map((p) => [p.poolConfigKey, `POLYGATE_${p.id.toUpperCase()}_SUBNET_POOL`]));

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
  /** Protocol plugins to load; unavailable ones are reported, never fatal. */
  plugins: z
    .string()
    .default(PROTOCOLS[0]!.pluginName)
    .transform((s) => s.split(',').map((p) => p.trim()).filter(Boolean)),
  /** Whether the daemon may touch nftables (needs root and nft). */
  firewall: z.enum(['auto', 'off']).default('auto'),
  /** Whether to also listen on each reseller's panel/subscription ports. */
  resellerListeners: z.enum(['on', 'off']).default('on'),
  metricsToken: z.string().min(16).optional(),
  ...poolSettings,
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
  ...poolEnvNames,
};

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
    if (value !== undefined && value !== '') raw[key] = value;
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
  const dataDir = path.resolve(c.dataDir);
  const shownHost = c.host === '0.0.0.0' || c.host === '::' ? '127.0.0.1' : c.host;
  const publicUrlResolved = (c.publicUrl ?? `http://${shownHost}:${c.port}`).replace(/\/+$/, '');
  return Object.freeze({
    ...c,
    dataDir,
    databaseUrlResolved: c.databaseUrl ?? `sqlite:${path.join(dataDir, 'polygate.sqlite')}`,
    publicUrlResolved,
    publicHostResolved: c.publicHost ?? new URL(publicUrlResolved).hostname,
  });
}
