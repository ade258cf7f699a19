import type { CoreContext } from '../context';
import { Setting, SubAdmin } from '../db';
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

export const SUPPORT_CONTACT_KEY = 'support_contact';
export const MAX_SUPPORT_CONTACT_LENGTH = 200;
/**
 * C0/C1 controls, line and paragraph separators and bidi overrides: the contact is one line of
 * text on a page that mixes right-to-left and left-to-right, where an override could make it
 * read as something else.
 */
const CONTACT_REFUSED = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]/;

/** A support contact as given through the API: trimmed; empty or null clears it (null). */
export function checkSupportContact(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value !== 'string') throw invalid("Field 'support_contact' must be a string or null.");
  const trimmed = value.trim();
  if (trimmed === '') return null;
  if (trimmed.length > MAX_SUPPORT_CONTACT_LENGTH || CONTACT_REFUSED.test(trimmed)) {
    throw invalid(`Field 'support_contact' must be at most ${MAX_SUPPORT_CONTACT_LENGTH} characters on one line, without control characters.`);
  }
  return trimmed;
}

/** What `GET /support_contact` tells a key about its own contact. */
export interface SupportContactView {
  /** The main admin's: the global contact; a reseller's: its own (null = it uses the global one). */
  support_contact: string | null;
  /** What this key's customers see: the reseller's own, else the global one. */
  effective_support_contact: string | null;
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

  private async globalSupportContact(): Promise<string | null> {
    return (await Setting.findByPk(SUPPORT_CONTACT_KEY, { raw: true }))?.value || null;
  }

  /**
   * The contact a reseller's customers (or, for null, the main admin's) are shown: the
   * reseller's own, else the global one. For the public pages: no principal, the token or
   * the listener already said whose customer is asking.
   */
  async supportContactFor(subAdminId: number | null): Promise<string | null> {
    if (subAdminId !== null) {
      const own = (await SubAdmin.findByPk(subAdminId, { raw: true, attributes: ['support_contact'] }))?.support_contact;
      if (own) return own;
    }
    return this.globalSupportContact();
  }

  async supportContact(principal: Principal): Promise<SupportContactView> {
    if (principal.kind === 'main') {
      const global = await this.globalSupportContact();
      return { support_contact: global, effective_support_contact: global };
    }
    const own = (await SubAdmin.findByPk(principal.subAdminId, { raw: true, attributes: ['support_contact'] }))?.support_contact ?? null;
    return { support_contact: own, effective_support_contact: own ?? (await this.globalSupportContact()) };
  }

  /** The main admin sets the global contact; a reseller only its own (the main admin edits a reseller's through sub_admins). */
  async updateSupportContact(principal: Principal, value: unknown): Promise<SupportContactView> {
    // A missing field is a mistake, not a request to clear: clearing is an explicit null or "".
    if (value === undefined) throw invalid("Field 'support_contact' is required (null or an empty string clears it).");
    const contact = checkSupportContact(value);
    if (principal.kind === 'main') {
      await this.ctx.db.transaction(async (transaction) => {
        const row = await Setting.findByPk(SUPPORT_CONTACT_KEY, { transaction });
        if (row) await row.update({ value: contact ?? '' }, { transaction });
        else await Setting.create({ key: SUPPORT_CONTACT_KEY, value: contact ?? '' }, { transaction });
      });
    } else {
      await this.ctx.db.transaction((transaction) => SubAdmin.update({ support_contact: contact }, { where: { id: principal.subAdminId }, transaction }));
    }
    this.ctx.logger.info({ scope: principal.kind === 'main' ? 'global' : `sub_admin:${principal.subAdminId}` }, 'support contact updated');
    return this.supportContact(principal);
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
