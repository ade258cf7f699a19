import type { Logger } from '../logger';
import type { ProtocolId } from '../plugin/types';
import { parseNodeServerId } from '../services/servers';
import type { TickReport } from './engine';
import type { UserDirectory } from './user-directory';
import type { TickWrite } from './writer';

/*
 * A tick's sums: the bytes every poll and disconnect event added, per source and user, turned
 * into the rows the writer commits (per user, per day, per reseller, per node).
 */

/** What one user's counters moved by in this tick. */
export interface ChangedUsage {
  username: string;
  rx: number;
  tx: number;
}

/** Per-tick sums: username → source → bytes. */
export class Usage {
  readonly bySource = new Map<string, { protocol: ProtocolId; serverId: string; users: Map<string, [number, number]> }>();
  add(sourceId: string, protocol: ProtocolId, serverId: string, user: string, rx: number, tx: number): void {
    if (rx === 0 && tx === 0) return;
    let s = this.bySource.get(sourceId);
    if (!s) this.bySource.set(sourceId, (s = { protocol, serverId, users: new Map() }));
    const cur = s.users.get(user);
    if (cur) {
      cur[0] += rx;
      cur[1] += tx;
    } else {
      s.users.set(user, [rx, tx]);
    }
  }
}

/** Resolves usernames and fills the per-user, per-day, reseller and node parts of the write. */
export async function buildUsage(usage: Usage, directory: UserDirectory, logger: Logger, write: TickWrite, report: Pick<TickReport, 'bytes' | 'usersChanged'>): Promise<Map<number, ChangedUsage>> {
  const names = new Set<string>();
  for (const s of usage.bySource.values()) for (const u of s.users.keys()) names.add(u);
  const ids = await directory.resolve(names);
  const perUser = new Map<number, ChangedUsage>();
  const perReseller = new Map<number, number>();
  const perNode = new Map<number, number>();
  let unknownBytes = 0;
  for (const s of usage.bySource.values()) {
    const nodeId = parseNodeServerId(s.serverId);
    for (const [username, [rx, tx]] of s.users) {
      const entry = ids.get(username);
      if (nodeId !== null) perNode.set(nodeId, (perNode.get(nodeId) ?? 0) + rx + tx);
      report.bytes += rx + tx;
      if (!entry) {
        unknownBytes += rx + tx;
        continue;
      }
      write.daily.push({ userId: entry.id, serverId: s.serverId, protocol: s.protocol, rx, tx });
      const cur = perUser.get(entry.id);
      if (cur) {
        cur.rx += rx;
        cur.tx += tx;
      } else {
        perUser.set(entry.id, { username, rx, tx });
      }
      if (entry.subAdminId != null) perReseller.set(entry.subAdminId, (perReseller.get(entry.subAdminId) ?? 0) + rx + tx);
    }
  }
  if (unknownBytes) logger.warn({ bytes: unknownBytes }, 'traffic of usernames that are not (or no longer) users; not charged to anyone');
  for (const [userId, u] of perUser) write.users.push({ userId, rx: u.rx, tx: u.tx });
  for (const [id, bytes] of perReseller) write.resellers.push({ id, bytes });
  for (const [id, bytes] of perNode) write.nodes.push({ id, bytes });
  report.usersChanged = perUser.size;
  return perUser;
}
