import { notFound, unavailable } from '../errors';
import type { PluginRegistry } from '../plugin/registry';
import type { ServersService } from '../services/servers';

/** Renders one OpenVPN client profile for an endpoint named like `main_udp` or `node_1_tcp_443`. */
export interface OpenVpnProfileSource {
  renderProfile(username: string, endpointName: string): Promise<string>;
}

/** Profiles come from the OpenVPN plugin on the endpoint's server, dialing its public address. */
export class PluginProfileSource implements OpenVpnProfileSource {
  constructor(
    private readonly plugins: PluginRegistry,
    private readonly servers: ServersService,
    private readonly publicHost: string,
  ) {}

  async renderProfile(username: string, endpointName: string): Promise<string> {
    const endpoint = (await this.servers.openVpnEndpoints()).find((e) => e.name === endpointName);
    if (!endpoint) throw notFound('Not found');
    const plugin = this.plugins.get('openvpn', endpoint.serverId);
    if (!plugin?.instance?.renderClientConfig || plugin.state !== 'available') {
      throw unavailable(`OpenVPN profiles are not available: the OpenVPN plugin is not running on ${endpoint.serverId}${plugin?.reason ? ` (${plugin.reason})` : ''}.`);
    }
    return plugin.instance.renderClientConfig(username, [
      { host: endpoint.address ?? this.publicHost, port: endpoint.port, protocol: endpoint.protocol },
    ]);
  }
}
