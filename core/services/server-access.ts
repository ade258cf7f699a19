/**
 * The one answer to "may this user use that server?", used by authorize, the desired state
 * handed to plugins, enforcement and every view. A user pinned to servers (`nodes`) may use
 * only those; a reseller with a non-empty `allowed_servers` narrows that further. Both lists
 * empty (or unset) mean every server.
 */
export function mayUseServer(userServers: readonly string[] | null | undefined, resellerServers: readonly string[] | null | undefined, serverId: string): boolean {
  if (userServers && userServers.length > 0 && !userServers.includes(serverId)) return false;
  if (resellerServers && resellerServers.length > 0 && !resellerServers.includes(serverId)) return false;
  return true;
}

/** A JSON array of server ids from a TEXT column; anything unreadable counts as "not set". */
export function parseServerIds(v: unknown): string[] | null {
  if (v === null || v === undefined || v === '') return null;
  if (Array.isArray(v)) return v.filter((x): x is string => typeof x === 'string');
  try {
    const parsed: unknown = JSON.parse(String(v));
    return Array.isArray(parsed) ? parsed.filter((x): x is string => typeof x === 'string') : null;
  } catch {
    return null;
  }
}
