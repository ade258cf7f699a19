import type { CoreContext } from '../context';
import { NodeRecord, Setting } from '../db';
import { forbidden, invalid } from '../errors';
import type { Principal } from '../principal';
import type { Services } from './index';

/** Same key as core/bootstrap.ts creates at first start (not imported: bootstrap imports the services). */
export const IPSEC_PSK_KEY = 'ipsec_psk';
export const MAX_PSK_LENGTH = 128;

const INVALID_PSK = 'Invalid PSK. Cannot be empty or contain double quotes.';
/** Printable ASCII without `"`: the PSK is written inside double quotes in ipsec.secrets. */
const PSK_PATTERN = /^[\x20\x21\x23-\x7e]+$/;

export interface ServerSettings {
  ipsec_psk: string;
}

/** Server-wide VPN settings (for now the IPsec pre-shared key); main admin only. */
export class SettingsService {
  constructor(
    protected readonly ctx: CoreContext,
    protected readonly services: Services,
  ) {}

  async get(principal: Principal): Promise<ServerSettings> {
    requireMainAdmin(principal);
    const row = await Setting.findByPk(IPSEC_PSK_KEY, { raw: true });
    return { ipsec_psk: row?.value ?? '' };
  }

  /**
   * Stores a new PSK. The reconciler pushes it to the main server and the nodes on
   * 'settings.changed'; the answer counts the nodes that are reachable now (status active).
   */
  async updateIpsecPsk(principal: Principal, newPsk: string | null | undefined): Promise<{ nodesUpdated: number }> {
    requireMainAdmin(principal);
    const psk = checkPsk(newPsk);
    const nodesUpdated = await this.ctx.db.transaction(async (transaction) => {
      const row = await Setting.findByPk(IPSEC_PSK_KEY, { transaction });
      if (row) {
        row.value = psk;
        // Saving the same PSK again still counts as an update: the reconciler re-pushes it.
        row.changed('value', true);
        await row.save({ transaction });
      } else {
        await Setting.create({ key: IPSEC_PSK_KEY, value: psk }, { transaction });
      }
      return NodeRecord.count({ where: { status: 'active' }, transaction });
    });
    this.ctx.logger.info({ nodesActive: nodesUpdated }, 'IPsec PSK updated');
    this.ctx.events.emit('settings.changed', { key: IPSEC_PSK_KEY });
    return { nodesUpdated };
  }
}

function checkPsk(value: string | null | undefined): string {
  if (typeof value !== 'string' || !PSK_PATTERN.test(value)) throw invalid(INVALID_PSK);
  if (value.length > MAX_PSK_LENGTH) throw invalid(`Invalid PSK. It must be at most ${MAX_PSK_LENGTH} characters.`);
  return value;
}

function requireMainAdmin(principal: Principal): void {
  if (principal.kind !== 'main') throw forbidden('Permission denied: Main admin API key required.');
}
