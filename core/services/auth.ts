import { unauthorized } from '../errors';
import type { CoreContext } from '../context';
import { ApiKey, SubAdmin } from '../db';
import type { Principal } from '../principal';
import { hashesEqual, sha256Hex } from '../secrets';

/**
 * Turns an `X-API-KEY` into a Principal. Keys are stored as SHA-256 hashes only; the lookup
 * is by hash and the final comparison is constant-time. Answers are cached per hash and the
 * cache is dropped whenever a reseller changes, so deactivation takes effect at once.
 *
 * A lookup that was in flight while a reseller changed may have read the old row; it is
 * answered but not stored (the generation it started under is gone), or a deactivated
 * reseller's key could stay valid until the next change.
 */
export class AuthService {
  private cache = new Map<string, Principal | null>();
  /** Bumped by every drop of the cache; a lookup stores its answer only if it is unchanged. */
  private generation = 0;

  constructor(private readonly ctx: CoreContext) {
    const drop = () => this.invalidate();
    ctx.events.on('sub_admins.changed', drop);
    ctx.events.on('sub_admins.deleted', drop);
  }

  async authenticate(apiKey: string | undefined | null): Promise<Principal> {
    if (!apiKey) throw unauthorized('API key is missing');
    const hash = sha256Hex(apiKey);
    let principal = this.cache.get(hash);
    if (principal === undefined) {
      const generation = this.generation;
      principal = await this.lookup(hash);
      if (generation === this.generation) {
        if (this.cache.size > 10_000) this.cache.clear();
        this.cache.set(hash, principal);
      }
    }
    if (!principal) throw unauthorized('Invalid or inactive API key');
    return principal;
  }

  /** Protected so a test can slow it down to race a reseller change. */
  protected async lookup(hash: string): Promise<Principal | null> {
    const key = await ApiKey.findOne({ where: { key_hash: hash }, raw: true });
    if (!key || !hashesEqual(key.key_hash, hash)) return null;
    if (key.kind === 'main') return { kind: 'main' };
    if (key.sub_admin_id == null) return null;
    const admin = await SubAdmin.findByPk(key.sub_admin_id, { raw: true, attributes: ['id', 'username', 'is_active'] });
    if (!admin || !admin.is_active) return null;
    return { kind: 'sub_admin', subAdminId: admin.id, username: admin.username };
  }

  /** Stores the main admin key's hash (replacing any previous one). */
  async setMainAdminKey(apiKey: string): Promise<void> {
    await this.ctx.db.transaction(async (transaction) => {
      await ApiKey.destroy({ where: { kind: 'main' }, transaction });
      await ApiKey.create({ key_hash: sha256Hex(apiKey), kind: 'main', sub_admin_id: null }, { transaction });
    });
    this.invalidate();
  }

  async hasMainAdminKey(): Promise<boolean> {
    return (await ApiKey.count({ where: { kind: 'main' } })) > 0;
  }

  invalidate(): void {
    this.generation++;
    this.cache.clear();
  }
}
