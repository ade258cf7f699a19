import type { LiveView } from '../context';
import type { LiveConnectionRef } from '../enforcement/policy';
import type { ProtocolId } from '../plugin/types';

/** One live connection as the last successful poll of its source showed it. */
export interface LiveConnection extends LiveConnectionRef {
  protocol: ProtocolId;
  serverId: string;
  /** The key the plugin knows the connection by (for `disconnect({ sessionKey })`). */
  pluginKey: string;
  rx: number;
  tx: number;
  /** Poll round of the first poll of its source that listed it. */
  firstSeenRound: number;
}

/**
 * Who is connected where, as of each source's last successful poll (a source whose poll
 * fails keeps its previous picture rather than flapping everyone offline). Disconnect events
 * remove a connection at once, so a user who reconnects is not held back by its old session.
 * This is the LiveView behind `is_online` and `active_connections`.
 */
export class LiveSessions implements LiveView {
  private readonly bySource = new Map<string, Map<string, LiveConnection>>();
  private byUser = new Map<string, LiveConnection[]>();
  private total = 0;

  connectionsOf(username: string): number {
    return this.byUser.get(username)?.length ?? 0;
  }

  totalConnections(): number {
    return this.total;
  }

  connectionsByUser(): ReadonlyMap<string, readonly LiveConnection[]> {
    return this.byUser;
  }

  sessionsOf(username: string): readonly LiveConnection[] {
    return this.byUser.get(username) ?? [];
  }

  /** Live connections per source id (`protocol@server`). */
  countsBySource(): Map<string, { protocol: ProtocolId; serverId: string; count: number }> {
    const out = new Map<string, { protocol: ProtocolId; serverId: string; count: number }>();
    for (const [sourceId, conns] of this.bySource) {
      const first = conns.values().next().value as LiveConnection | undefined;
      if (first) out.set(sourceId, { protocol: first.protocol, serverId: first.serverId, count: conns.size });
    }
    return out;
  }

  get(sourceId: string, key: string): LiveConnection | undefined {
    return this.bySource.get(sourceId)?.get(key);
  }

  previous(sourceId: string): ReadonlyMap<string, LiveConnection> | undefined {
    return this.bySource.get(sourceId);
  }

  /** Replaces a source's connections with what its poll just showed; call `reindex()` after. */
  replaceSource(sourceId: string, connections: Map<string, LiveConnection>): void {
    this.bySource.set(sourceId, connections);
  }

  dropSource(sourceId: string): void {
    if (this.bySource.delete(sourceId)) this.reindex();
  }

  /** A disconnect event: the connection is gone now, whatever the next poll says. */
  remove(sourceId: string, key: string): LiveConnection | undefined {
    const conns = this.bySource.get(sourceId);
    const conn = conns?.get(key);
    if (!conn) return undefined;
    conns!.delete(key);
    const list = this.byUser.get(conn.username);
    if (list) {
      const i = list.indexOf(conn);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.byUser.delete(conn.username);
    }
    this.total--;
    return conn;
  }

  reindex(): void {
    const byUser = new Map<string, LiveConnection[]>();
    let total = 0;
    for (const conns of this.bySource.values()) {
      for (const c of conns.values()) {
        const list = byUser.get(c.username);
        if (list) list.push(c);
        else byUser.set(c.username, [c]);
        total++;
      }
    }
    this.byUser = byUser;
    this.total = total;
  }

  clear(): void {
    this.bySource.clear();
    this.byUser = new Map();
    this.total = 0;
  }
}
