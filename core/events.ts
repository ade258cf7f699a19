import { EventEmitter } from 'node:events';

/**
 * Changes that other parts of core react to (enforcement re-evaluates, the reconciler syncs
 * plugins, listeners open reseller ports). Emitted after the transaction commits.
 */
export interface DomainEventMap {
  'users.changed': { usernames: string[] };
  'users.deleted': { usernames: string[] };
  /** Subscription token replaced; per-protocol credentials (certificates) must be re-issued. */
  'users.revoked': { username: string };
  'sub_admins.changed': { subAdminId: number };
  'sub_admins.deleted': { subAdminId: number };
  'ports.changed': Record<string, never>;
  'nodes.changed': { nodeId: number };
  'settings.changed': { key: string };
}

export class DomainEvents {
  private readonly emitter = new EventEmitter();
  constructor() {
    this.emitter.setMaxListeners(100);
  }
  emit<K extends keyof DomainEventMap>(name: K, payload: DomainEventMap[K]): void {
    this.emitter.emit(name, payload);
  }
  on<K extends keyof DomainEventMap>(name: K, listener: (payload: DomainEventMap[K]) => void): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }
}
