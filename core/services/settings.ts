import type { CoreContext } from '../context';
import { Setting } from '../db';
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

/** Pushes a changed setting to every plugin that uses it and says which nodes took it. */
export interface SettingsPropagation {
  /** Applies the setting now; resolves with the node server ids whose plugins applied it. */
  applySetting(key: string): Promise<string[]>;
}

/** Server-wide VPN settings (for now the IPsec pre-shared key); main admin only. */
export class SettingsService {
  constructor(
    protected readonly ctx: CoreContext,
    protected readonly services: Services,
    private readonly propagation: SettingsPropagation,
  ) {}

  /** The current PSK (for plugins), or null before first start wrote one. */
  async ipsecPsk(): Promise<string | null> {
    return (await Setting.findByPk(IPSEC_PSK_KEY, { raw: true }))?.value || null;
  }

  async get(principal: Principal): Promise<ServerSettings> {
    requireMainAdmin(principal);
    const row = await Setting.findByPk(IPSEC_PSK_KEY, { raw: true });
    return { ipsec_psk: row?.value ?? '' };
  }

  /**
   * Stores a new PSK and has the reconciler apply it to every plugin that uses it, on the main
   * server and the nodes; the answer counts the nodes whose plugins actually took it.
   */
  async updateIpsecPsk(principal: Principal, newPsk: string | null | undefined): Promise<{ nodesUpdated: number }> {
    requireMainAdmin(principal);
    const psk = checkPsk(newPsk);
    await this.ctx.db.transaction(async (transaction) => {
      const row = await Setting.findByPk(IPSEC_PSK_KEY, { transaction });
      if (row) {
        row.value = psk;
        // Saving the same PSK again still counts as an update: the reconciler re-pushes it.
        row.changed('value', true);
        await row.save({ transaction });
      } else {
        await Setting.create({ key: IPSEC_PSK_KEY, value: psk }, { transaction });
      }
    });
    this.ctx.events.emit('settings.changed', { key: IPSEC_PSK_KEY });
    const nodes = await this.propagation.applySetting(IPSEC_PSK_KEY);
    this.ctx.logger.info({ nodesUpdated: nodes.length }, 'IPsec PSK updated');
    return { nodesUpdated: nodes.length };
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
