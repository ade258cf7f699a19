import { Op } from 'sequelize';
import { User } from '../db';

export interface DirectoryEntry {
  id: number;
  subAdminId: number | null;
}

/**
 * username → (id, reseller) for turning tracker usernames into the ids the batched writer
 * uses. Loaded once, then kept current by `users.changed`/`users.deleted` and by looking up
 * names it has not seen.
 */
export class UserDirectory {
  private readonly entries = new Map<string, DirectoryEntry | null>();
  private loaded = false;

  async resolve(usernames: Iterable<string>): Promise<Map<string, DirectoryEntry>> {
    if (!this.loaded) await this.loadAll();
    const missing: string[] = [];
    for (const name of usernames) if (name && !this.entries.has(name)) missing.push(name);
    if (missing.length) await this.load(missing);
    const out = new Map<string, DirectoryEntry>();
    for (const name of usernames) {
      const e = this.entries.get(name);
      if (e) out.set(name, e);
    }
    return out;
  }

  /** Names whose row may have changed: looked up again next time. */
  invalidate(usernames: readonly string[]): void {
    for (const n of usernames) this.entries.delete(n);
  }

  clear(): void {
    this.entries.clear();
    this.loaded = false;
  }

  private async loadAll(): Promise<void> {
    const rows = await User.findAll({ raw: true, attributes: ['id', 'username', 'sub_admin_id'] });
    this.entries.clear();
    for (const r of rows) this.entries.set(r.username, { id: r.id, subAdminId: r.sub_admin_id ?? null });
    this.loaded = true;
  }

  private async load(names: string[]): Promise<void> {
    for (let i = 0; i < names.length; i += 1000) {
      const part = names.slice(i, i + 1000);
      const rows = await User.findAll({ raw: true, attributes: ['id', 'username', 'sub_admin_id'], where: { username: { [Op.in]: part } } });
      for (const n of part) this.entries.set(n, null);
      for (const r of rows) this.entries.set(r.username, { id: r.id, subAdminId: r.sub_admin_id ?? null });
    }
  }
}
