import { notFound, unavailable } from '../errors';
import type { ClientEndpoint, ClientUser, CustomerFact } from '../plugin/types';
import { protocolSpec, type ProtocolId } from '../protocols/table';
import type { ClientConfigOffer, SubscriptionDetail, UserRow } from './user-view';

/** The running plugin that renders one protocol's client configs on one server. */
export interface ClientConfigRenderer {
  mediaType: string;
  render(user: ClientUser, endpoints: readonly ClientEndpoint[]): Promise<string>;
}

export interface ClientConfigRenderers {
  /** The renderer, or why there is none (plugin not loaded there, unavailable…). */
  rendererFor(protocol: ProtocolId, serverId: string): ClientConfigRenderer | { unavailable: string };
  /** Public values a client needs to trust the protocol's server there (a certificate pin, an IKEv2 identity); none while its plugin is down. */
  customerFactsOf?(protocol: ProtocolId, serverId: string): Promise<readonly CustomerFact[]>;
}

export interface RenderedClientConfig {
  fileName: string;
  mediaType: string;
  content: string;
}

/** The user as a client config sees it: its protocol password and every material the table names for it, private parts included. */
export function clientUserOf(row: UserRow, protocol: ProtocolId): ClientUser {
  const spec = protocolSpec(protocol);
  const material: Record<string, string> = {};
  for (const [name, column] of Object.entries({ ...spec.material.public, ...spec.material.clientOnly })) {
    const value = row.material[column];
    if (value) material[name] = value;
  }
  const password = row.protocols[protocol].password;
  return { username: row.username, ...(password ? { password } : {}), material };
}

/**
 * Client configs (`.ovpn` profiles, WireGuard `.conf` files…) for the subscription downloads,
 * rendered by the plugin that runs the endpoint's protocol on the endpoint's server.
 */
export class ClientConfigService {
  constructor(private readonly renderers: ClientConfigRenderers) {}

  /** What the subscription page shows beside a server's credentials (from the plugin that runs the protocol there). */
  async customerFacts(protocol: ProtocolId, serverId: string): Promise<readonly CustomerFact[]> {
    return (await this.renderers.customerFactsOf?.(protocol, serverId)) ?? [];
  }

  /** The download named `fileName` (`main_udp.ovpn`) of a user whose token checked out. */
  async render(subscription: SubscriptionDetail, fileName: string): Promise<RenderedClientConfig> {
    const named = (o: ClientConfigOffer) => `${o.endpoint.name}.${o.extension}` === fileName;
    const offer = subscription.clientConfigs.find(named);
    if (!offer) {
      const down = subscription.unavailableConfigs.find(named);
      if (down) throw unavailable(notRunning(down.protocol));
      throw notFound('Not found');
    }
    const renderer = this.renderers.rendererFor(offer.protocol, offer.endpoint.serverId);
    if ('unavailable' in renderer) throw unavailable(notRunning(offer.protocol));
    const { endpoint } = offer;
    const content = await renderer.render(clientUserOf(subscription.row, offer.protocol), [{ host: endpoint.address, port: endpoint.port, protocol: endpoint.transport }]);
    return { fileName, mediaType: renderer.mediaType, content };
  }
}

function notRunning(protocol: ProtocolId): string {
  const name = protocolSpec(protocol).displayName;
  return `${name} profiles are not available: the ${name} plugin is not running on this server.`;
}
