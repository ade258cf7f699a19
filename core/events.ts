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
  /**
   * An accounting tick committed usage. `usernames`: users whose counters moved;
   * `statusChanged`: users whose status the tick changed (limited, activated, reset). The tick
   * has already enforced on them; listeners recompute what depends on usage (desired state).
   */
  'usage.committed': { usernames: string[]; statusChanged: string[] };
  /** The panel's CA revoked or re-issued certificates: plugins get the new CRL. */
  'pki.changed': Record<string, never>;
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
