import { Op, type Transaction } from 'sequelize';
import { conflict } from '../errors';
import { PortReservation, SubAdmin } from '../db';
import { protocolOfPluginName } from '../protocols/table';

export type TransportProtocol = 'tcp' | 'udp';

export interface PortClaim {
  server: string;
  port: number;
  protocol: TransportProtocol;
  /** `panel`, a protocol id (its listeners), `sub_admin:<id>:panel`, `sub_admin:<id>:subscription`. */
  owner: string;
}

/**
 * The one registry of (server, port, protocol) → owner. Every component that listens on a
 * port claims it here inside its own transaction, so OpenVPN on 443/tcp cannot collide with a
 * reseller's panel port or the panel itself; the unique index backs this up under races.
 */
export class PortRegistry {
  /** Claims every entry for its owner; a claim already held by the same owner is kept. */
  async claim(claims: readonly PortClaim[], transaction: Transaction): Promise<void> {
    for (const c of claims) {
      const existing = await PortReservation.findOne({
        where: { server_identifier: c.server, port: c.port, protocol: c.protocol },
        transaction,
      });
      if (existing) {
        if (existing.owner === c.owner) continue;
        throw conflict(`Port ${c.port}/${c.protocol} on ${c.server} is already used by ${await this.describe(existing.owner, transaction)}.`);
      }
      await PortReservation.create(
        { server_identifier: c.server, port: c.port, protocol: c.protocol, owner: c.owner },
        { transaction },
      );
    }
  }

  /** Who holds a port, or null. */
  async ownerOf(server: string, port: number, protocol: TransportProtocol, transaction?: Transaction): Promise<string | null> {
    const r = await PortReservation.findOne({ where: { server_identifier: server, port, protocol }, transaction, raw: true });
    return r?.owner ?? null;
  }

  /** Throws the 409 naming the owner when the port is held by anyone but `owner`. */
  async ensureFree(claim: PortClaim, transaction: Transaction): Promise<void> {
    const owner = await this.ownerOf(claim.server, claim.port, claim.protocol, transaction);
    if (owner && owner !== claim.owner) {
      throw conflict(`Port ${claim.port}/${claim.protocol} on ${claim.server} is already used by ${await this.describe(owner, transaction)}.`);
    }
  }

  async release(where: { owner: string; server?: string; port?: number; protocol?: TransportProtocol }, transaction: Transaction): Promise<void> {
    await PortReservation.destroy({
      where: {
        owner: where.owner,
        ...(where.server !== undefined ? { server_identifier: where.server } : {}),
        ...(where.port !== undefined ? { port: where.port } : {}),
        ...(where.protocol !== undefined ? { protocol: where.protocol } : {}),
      },
      transaction,
    });
  }

  async releaseOwnerPrefix(prefix: string, transaction: Transaction): Promise<void> {
    await PortReservation.destroy({ where: { owner: { [Op.like]: `${prefix}%` } }, transaction });
  }

  async list(transaction?: Transaction): Promise<PortClaim[]> {
    const rows = await PortReservation.findAll({ raw: true, transaction, order: [['server_identifier', 'ASC'], ['port', 'ASC']] });
    return rows.map((r) => ({ server: r.server_identifier, port: r.port, protocol: r.protocol, owner: r.owner }));
  }

  /** Human name of an owner for 409 messages. */
  async describe(owner: string, transaction?: Transaction): Promise<string> {
    if (owner === 'panel') return 'the panel';
    // A claim held by a protocol (its id) or by its daemon (the plugin name, e.g. `ocserv`).
    const spec = protocolOfPluginName(owner);
    if (spec) return owner === spec.id || owner === spec.pluginName && spec.pluginName === spec.id ? spec.displayName : `${spec.displayName} (${owner})`;
    const m = /^sub_admin:(\d+):(panel|subscription)$/.exec(owner);
    if (m) {
      const admin = await SubAdmin.findByPk(Number(m[1]), { raw: true, attributes: ['username'], transaction });
      return `sub-admin '${admin?.username ?? m[1]}' (${m[2]} port)`;
    }
    return owner;
  }
}
