import type { Registry } from 'prom-client';
import type { CoreContext } from '../context';
import type { ProtocolId } from '../protocols/table';
import { AuthService } from './auth';
import { ClientConfigService, type ClientConfigRenderers } from './client-configs';
import { NodesService } from './nodes';
import { PortRegistry } from './port-registry';
import { PortsService } from './ports';
import { defaultPortsOf } from '../config';
import { ServersService } from './servers';
import { SettingsService, type SettingsPropagation } from './settings';
import { StatsService } from './stats';
import { SubAdminsService } from './sub-admins';
import type { ProtocolOffer } from './user-view';
import { UsersService, UserViews, type ClientConfigFormats } from './users';
import { WebhooksService } from '../webhooks/service';

/** Tunnel addresses per protocol pool, unique in the database; a freed one is not reused at once. */
export interface AddressLeases {
  /** The pool (CIDR) a protocol's addresses come from. */
  poolOf(protocol: ProtocolId): string;
  /** The address of each user (kept when it has one, else newly leased), in one pass. */
  leaseMany(pool: string, userIds: readonly number[], transaction: import('sequelize').Transaction): Promise<Map<number, string>>;
  /** Frees every address of these users (deleted users). */
  releaseUsers(userIds: readonly number[], transaction: import('sequelize').Transaction): Promise<void>;
}

/** What the services need from the parts built before them (plugins, accounting, address pools). */
export interface ServiceDependencies {
  /** Which protocols run where, with a version that changes when that does. */
  offer: ProtocolOffer & { version(): number };
  formats: ClientConfigFormats;
  renderers: ClientConfigRenderers;
  addresses: AddressLeases;
  /** Prometheus registry served at /metrics. */
  metricsRegistry: Registry;
  propagation: SettingsPropagation;
}

/**
 * Every domain service, built once from the CoreContext and the parts below them. Services
 * reach each other through this container at call time, so construction order does not matter.
 */
export interface Services {
  ctx: CoreContext;
  auth: AuthService;
  portRegistry: PortRegistry;
  servers: ServersService;
  users: UsersService;
  subAdmins: SubAdminsService;
  ports: PortsService;
  settings: SettingsService;
  nodes: NodesService;
  stats: StatsService;
  clientConfigs: ClientConfigService;
  /** Webhook endpoints (the engine that detects and delivers lives on the Core). */
  webhooks: WebhooksService;
  addresses: AddressLeases;
  metricsRegistry: Registry;
}

export function createServices(ctx: CoreContext, deps: ServiceDependencies): Services {
  const services = { ctx, addresses: deps.addresses, metricsRegistry: deps.metricsRegistry } as Services;
  services.auth = new AuthService(ctx);
  services.portRegistry = new PortRegistry();
  services.servers = new ServersService((spec) => defaultPortsOf(ctx.config, spec));
  services.users = new UsersService(ctx, services, new UserViews(ctx, services, deps.offer, deps.formats));
  services.subAdmins = new SubAdminsService(ctx, services);
  services.ports = new PortsService(ctx, services);
  services.settings = new SettingsService(ctx, services, deps.propagation);
  services.nodes = new NodesService(ctx, services);
  services.stats = new StatsService(ctx, services);
  services.clientConfigs = new ClientConfigService(deps.renderers);
  services.webhooks = new WebhooksService(ctx);
  return services;
}
