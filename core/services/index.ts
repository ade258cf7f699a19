import type { CoreContext } from '../context';
import type { OpenVpnProfileSource } from '../reconciler/profiles';
import { AuthService } from './auth';
import { NodesService } from './nodes';
import { PortRegistry } from './port-registry';
import { PortsService } from './ports';
import { ServersService } from './servers';
import { SettingsService } from './settings';
import { SubAdminsService } from './sub-admins';
import { UsersService } from './users';

/**
 * Every domain service, built once from the CoreContext. Services reach each other through
 * this container at call time, so construction order does not matter.
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
  /** Set by the daemon once the OpenVPN plugin runs; downloads answer 503 without it. */
  openvpnProfiles?: OpenVpnProfileSource;
}

export function createServices(ctx: CoreContext): Services {
  const services = { ctx } as Services;
  services.auth = new AuthService(ctx);
  services.portRegistry = new PortRegistry();
  services.servers = new ServersService();
  services.users = new UsersService(ctx, services);
  services.subAdmins = new SubAdminsService(ctx, services);
  services.ports = new PortsService(ctx, services);
  services.settings = new SettingsService(ctx, services);
  services.nodes = new NodesService(ctx, services);
  return services;
}
