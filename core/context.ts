import type { Clock } from './clock';
import type { Config } from './config';
import type { Database } from './db';
import type { DomainEvents } from './events';
import type { Logger } from './logger';
import type { SecretBox } from './secrets';
import type { StatusBoard } from './status';

/** Live session facts the API shows (`is_online`, `active_connections`); fed by accounting. */
export interface LiveView {
  connectionsOf(username: string): number;
  totalConnections(): number;
}

export const emptyLiveView: LiveView = { connectionsOf: () => 0, totalConnections: () => 0 };

/** Firewall as services see it: a declarative "open exactly these ports" plus a status. */
export interface FirewallPort {
  server: string;
  port: number;
  protocol: 'tcp' | 'udp';
  owner: string;
}

/** What every core service is built from; assembled once in `core/daemon.ts`. */
export interface CoreContext {
  db: Database;
  config: Config;
  logger: Logger;
  events: DomainEvents;
  clock: Clock;
  secrets: SecretBox;
  live: LiveView;
  status: StatusBoard;
}
