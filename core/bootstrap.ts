import type { Transaction } from 'sequelize';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AccountingEngine } from './accounting/engine';
import { systemClock, type Clock } from './clock';
import { defaultPortsOf, portConfigKey, type Config } from './config';
import { emptyLiveView, type CoreContext } from './context';
import { openDatabase, Setting } from './db';
import { DomainEvents } from './events';
import { logger as rootLogger, type Logger } from './logger';
import { LocalHost } from './hosts/local-host';
import { createPanelPki, type PanelPki } from './pki';
import { PluginRegistry } from './plugin/registry';
import { PORTS_TABLE_PROTOCOL } from './protocols/table';
import { randomKey, SecretBox } from './secrets';
import { createServices, type Services } from './services';
import { clientPoolOf } from './protocols/start';
import { protocolSpec } from './protocols/table';
import { UserAddressLeases } from './services/address-leases';
import { DEFAULT_LISTENER_PORT_SETTING, DEFAULT_LISTENER_TRANSPORT_SETTING } from './services/servers';
import type { SettingsPropagation } from './services/settings';
import { StatusBoard } from './status';
import { createWebhookEngine, type WebhookEngine, type WebhookOptions } from './webhooks';

export const IPSEC_PSK_SETTING = 'ipsec_psk';

export interface BootstrapOptions {
  clock?: Clock;
  logger?: Logger;
  /** Keep secrets in memory instead of the data dir (tests). */
  ephemeral?: boolean;
  /** Where the CA lives; default `<data dir>/pki` (ephemeral: a throwaway directory). */
  pkiDir?: string;
  /** Webhook settings over the configured `POLYGATE_WEBHOOK_*` ones (tests: millisecond backoff). */
  webhooks?: Partial<WebhookOptions>;
}

/**
 * Where a changed server setting goes once plugins run: the reconciler, started after the
 * services (it needs them), takes this over in `startProtocols`. Before that no plugin runs,
 * so no node took anything.
 */
export class LateSettingsPropagation implements SettingsPropagation {
  private target: SettingsPropagation | null = null;
  attach(target: SettingsPropagation | null): void {
    this.target = target;
  }
  applySetting(key: string): Promise<string[]> {
    return this.target ? this.target.applySetting(key) : Promise.resolve([]);
  }
}

export interface Core {
  ctx: CoreContext;
  services: Services;
  /** Protocol plugin instances per (protocol, server). */
  plugins: PluginRegistry;
  /** The panel's one CA (client and server certificates for every protocol and host). */
  pki: PanelPki;
  propagation: LateSettingsPropagation;
  /** Accounting + enforcement; its tick loop is started by the daemon (tests call `tick()`). */
  accounting: AccountingEngine;
  /** Webhook detection and delivery (started here: it only works while an endpoint is enabled). */
  webhooks: WebhookEngine;
  /** Set only when this start generated the main admin key (it is shown once). */
  generatedAdminKey?: string;
  adminKeyFile?: string;
  close(): Promise<void>;
}

/**
 * Everything below the HTTP layer: data dir, database (migrated), secrets, first-start
 * defaults (admin key, IPsec PSK, default OpenVPN port, the panel's own port claim), services.
 */
export async function bootstrapCore(config: Config, options: BootstrapOptions = {}): Promise<Core> {
  const log = options.logger ?? rootLogger;
  if (!options.ephemeral) {
    mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
    // mkdir's mode only applies to a directory it creates: an existing looser one (made by hand,
    // or by an older version) is tightened, since it holds the secret key and the database.
    chmodSync(config.dataDir, 0o700);
  }
  const secretKey = options.ephemeral ? randomBytes(32) : loadOrCreateSecretKey(config.dataDir);
  const db = await openDatabase(config.databaseUrlResolved);
  const ctx: CoreContext = {
    db,
    config,
    logger: log,
    events: new DomainEvents(),
    clock: options.clock ?? systemClock,
    secrets: new SecretBox(secretKey),
    live: emptyLiveView,
    status: new StatusBoard(),
  };
  // The CA lives with the main server's data; tests get a throwaway directory.
  const pkiDir = options.pkiDir ?? (options.ephemeral ? path.join(tmpdir(), `polygate-pki-${randomBytes(6).toString('hex')}`) : path.join(config.dataDir, 'pki'));
  const pki = createPanelPki({ host: new LocalHost(), dir: pkiDir, clock: ctx.clock });
  const plugins = new PluginRegistry(ctx, pki);
  const accounting = new AccountingEngine(ctx, plugins, { processMetrics: !options.ephemeral });
  ctx.live = accounting.live;
  const propagation = new LateSettingsPropagation();
  const services = createServices(ctx, {
    offer: plugins,
    formats: plugins,
    renderers: plugins,
    addresses: new UserAddressLeases(ctx, (protocol) => clientPoolOf(config, protocolSpec(protocol))),
    metricsRegistry: accounting.metrics.registry,
    propagation,
  });
  await accounting.init();
  const webhooks = createWebhookEngine(ctx, services.webhooks, options.webhooks);
  const core: Core = {
    ctx,
    services,
    plugins,
    pki,
    propagation,
    accounting,
    webhooks,
    close: async () => {
      await accounting.stop();
      await webhooks.stop();
      // Running jobs finish (bounded) before the database they write to goes away.
      await services.nodes.stopJobs();
      await db.close();
    },
  };

  if (config.adminApiKey) {
    await services.auth.setMainAdminKey(config.adminApiKey);
  } else if (!(await services.auth.hasMainAdminKey())) {
    const key = randomKey(32);
    await services.auth.setMainAdminKey(key);
    core.generatedAdminKey = key;
    if (!options.ephemeral) {
      core.adminKeyFile = path.join(config.dataDir, 'admin-api-key');
      writeFileSync(core.adminKeyFile, `${key}\n`, { mode: 0o600 });
      chmodSync(core.adminKeyFile, 0o600);
    }
  } else if (!options.ephemeral) {
    const file = path.join(config.dataDir, 'admin-api-key');
    if (existsSync(file)) core.adminKeyFile = file;
  }

  await db.transaction(async (transaction) => {
    const listener = defaultPortsOf(config, PORTS_TABLE_PROTOCOL)[0]!;
    const defaults: Record<string, string> = {
      [IPSEC_PSK_SETTING]: randomKey(24),
      [DEFAULT_LISTENER_PORT_SETTING]: String(listener.port),
      [DEFAULT_LISTENER_TRANSPORT_SETTING]: listener.protocol,
    };
    for (const [key, value] of Object.entries(defaults)) {
      const existing = await Setting.findByPk(key, { transaction });
      if (!existing) await Setting.create({ key, value }, { transaction });
    }
    // A configured listener port wins over the one stored at an earlier start (as the panel's
    // own port does); unset, the stored one stays, so upgrading moves nothing.
    if ((config as unknown as Record<string, unknown>)[portConfigKey(PORTS_TABLE_PROTOCOL)] !== undefined) {
      const before = await services.servers.mainDefaultListener(transaction);
      if (before.port !== listener.port) {
        await Setting.upsert({ key: DEFAULT_LISTENER_PORT_SETTING, value: String(listener.port) }, { transaction });
        await releaseUnlessCustom(before, transaction);
      }
    }
    // The panel's own port moves with the configuration: drop the old claim, take the new one.
    await services.portRegistry.release({ owner: 'panel' }, transaction);
    const main = await services.servers.mainDefaultListener(transaction);
    await services.portRegistry.claim(
      [
        { server: 'main', port: config.port, protocol: 'tcp', owner: 'panel' },
        { server: 'main', port: main.port, protocol: main.transport, owner: PORTS_TABLE_PROTOCOL.id },
      ],
      transaction,
    );
  });
  await webhooks.start();
  return core;

  /** Drops the main server's old default-listener claim, unless a custom port of the ports table still uses it. */
  async function releaseUnlessCustom(old: { port: number; transport: 'tcp' | 'udp' }, transaction: Transaction): Promise<void> {
    const custom = await services.servers.endpoints(transaction);
    if (custom.some((e) => !e.isDefault && e.serverId === 'main' && e.port === old.port && e.transport === old.transport)) return;
    await services.portRegistry.release({ owner: PORTS_TABLE_PROTOCOL.id, server: 'main', port: old.port, protocol: old.transport }, transaction);
  }
}

function loadOrCreateSecretKey(dataDir: string): Buffer {
  const file = path.join(dataDir, 'secret.key');
  if (existsSync(file)) {
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length === 32) return key;
    throw new Error(`${file} is not a valid 32-byte key; restore it from a backup or remove it (sealed node passwords will be lost).`);
  }
  const key = randomBytes(32);
  writeFileSync(file, key.toString('base64'), { mode: 0o600 });
  return key;
}
