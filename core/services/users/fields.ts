import { z } from 'zod';
import { invalid } from '../../errors';
import { USERNAME_PATTERN } from '../../plugin/kit/validate';
import { PROTOCOLS, type EnableField, type PasswordField, type ProtocolId } from '../../protocols/table';
import { generatePassword } from '../../secrets';
import { DATA_LIMIT_UNITS, RESET_STRATEGIES, UNIT_BYTES, type ActivationType, type DataLimitResetStrategy, type DataLimitUnit, type UserProtocolState, type UserRow, type UserListItem } from '../user-view';

/**
 * The rules of create and edit as pure functions: which fields exist (from the protocol table
 * for the per-protocol ones), their ranges, and the values derived from them.
 */

/** Fields create and edit share (API names). Types are already checked by zod at the edge. */
/** Every protocol's enable flag and password, by the API's names (from the protocol table). */
export type ProtocolFieldsInput = Partial<Record<EnableField, boolean>> & Partial<Record<PasswordField, string>>;

export interface UserFieldsInput extends ProtocolFieldsInput {
  max_clients?: number;
  activation_type?: ActivationType;
  pending_activation_days?: number | null;
  expiry_date_str?: string | null;
  expiry_days?: number | null;
  data_limit?: number | null;
  data_limit_unit?: DataLimitUnit;
  data_limit_reset_strategy?: DataLimitResetStrategy;
  nodes?: string[] | null;
  notes?: string | null;
  /** Main admin only: the reseller the user belongs to (null = the main admin's own). Ignored for sub-admin keys. */
  sub_admin_id?: number | null;
}

export interface CreateUsersInput extends UserFieldsInput {
  username?: string;
  /** 1..1000 random names; 0 or null = single mode. Wins over `username` when both are sent. */
  bulk_count?: number | null;
}

export interface UpdateUserInput extends UserFieldsInput {
  /** Legacy alias of `nodes` (used when `nodes` is absent). */
  allowed_nodes?: string[] | null;
  is_active?: boolean;
}

export type ListAllResult =
  | { kind: 'main'; main_admin: { users: UserListItem[] }; sub_admins: { id: number; username: string; users: UserListItem[] }[] }
  | { kind: 'sub_admin'; users: UserListItem[] };

/** The one username rule (the plugin kit's): a user's name is a VPN login on every daemon. */
export { USERNAME_PATTERN };
/** `GET /users/list_all` would shadow a user of that name. */
export const RESERVED_USERNAMES = new Set(['list_all']);
export const MAX_BULK_COUNT = 1000;
export const MAX_CLIENTS_LIMIT = 1000;
export const MAX_DAYS = 36_500;
export const MAX_NOTES_LENGTH = 4096;
export const DAY_MS = 86_400_000;

export const NOT_FOUND = 'User not found or permission denied';
export const NOT_FOUND_REVOKE = 'User not found or permission denied.';
export const EMPTY_BODY = 'Request body must be JSON and not empty';
export const USER_EXISTS = 'User already exists.';

/** Printable ASCII except whitespace, `"` and `\`: these passwords end up in VPN secrets files. */
export const PASSWORD_PATTERN = /^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/;

/**
 * The sentence for each ranged field: the zod schemas below (the edge, and what the OpenAPI
 * document shows as bounds) and the checks of applyUserFields (direct service callers) say
 * the same thing.
 */
export const FIELD_MESSAGES = {
  bulk_count: `Invalid bulk_count: must be a whole number from 1 to ${MAX_BULK_COUNT}.`,
  max_clients: `Invalid max_clients: must be a whole number from 1 to ${MAX_CLIENTS_LIMIT}.`,
  pending_activation_days: `Invalid pending_activation_days: must be a whole number of days from 1 to ${MAX_DAYS}.`,
  expiry_days: `Invalid expiry_days: must be a whole number of days from 0 (no expiry) to ${MAX_DAYS}.`,
  data_limit: 'Invalid data_limit: must be 0 (unlimited) or a positive number.',
  // Not an id at all is answered as an id nobody has (the service's sentence for 999999).
  sub_admin_id: 'Unknown sub_admin_id.',
  username: "Invalid username: use 3-32 characters from letters, digits, '_', '.' and '-'.",
  expiry_date_str: 'Invalid expiry_date_str: expected YYYY-MM-DD.',
  notes: `Invalid notes: at most ${MAX_NOTES_LENGTH} characters.`,
  password: (field: string) => `Invalid ${field}: use 1-64 printable ASCII characters without spaces, double quotes or backslashes.`,
} as const;

/** A whole number in [min, max] whose every refusal but a wrong type is `message`. */
export const wholeNumber = (min: number, max: number, message: string) =>
  z.number().int({ error: message }).min(min, { error: message }).max(max, { error: message });

/** A number of at least `min` (fractions allowed) whose every refusal but a wrong type is `message`. */
export const numberAtLeast = (min: number, message: string) => z.number().min(min, { error: message });

/**
 * Bounds, integer-ness and patterns of the create/edit fields, as zod schemas: the routers
 * build their inputs from these, so the server refuses at the edge exactly what the document says.
 */
export const USER_FIELD_SCHEMAS = {
  bulk_count: wholeNumber(0, MAX_BULK_COUNT, FIELD_MESSAGES.bulk_count),
  max_clients: wholeNumber(1, MAX_CLIENTS_LIMIT, FIELD_MESSAGES.max_clients),
  pending_activation_days: wholeNumber(1, MAX_DAYS, FIELD_MESSAGES.pending_activation_days),
  expiry_days: wholeNumber(0, MAX_DAYS, FIELD_MESSAGES.expiry_days),
  data_limit: numberAtLeast(0, FIELD_MESSAGES.data_limit),
  sub_admin_id: wholeNumber(1, Number.MAX_SAFE_INTEGER, FIELD_MESSAGES.sub_admin_id),
  // Empty is "no username" (the service answers the contract's "Username is required.").
  username: z.string().regex(new RegExp(`^(${USERNAME_PATTERN.source.slice(1, -1)})?$`), { error: FIELD_MESSAGES.username }),
  // Empty is "no expiry"; the calendar check (no 2026-02-30) stays in expiryFromDateString.
  expiry_date_str: z.string().regex(/^(\d{4}-\d{2}-\d{2})?$/, { error: FIELD_MESSAGES.expiry_date_str }),
  notes: z.string().max(MAX_NOTES_LENGTH, { error: FIELD_MESSAGES.notes }),
  password: (field: string) => z.string().regex(PASSWORD_PATTERN, { error: FIELD_MESSAGES.password(field) }),
};

/** The user attributes create and edit decide; everything else is derived or bookkeeping. */
export type EditableUser = Omit<UserRow, 'id' | 'username' | 'sub_admin_id' | 'upload_bytes' | 'download_bytes' | 'material'>;

/** New users get the first protocol of the table (the contract's default) and nothing else. */
const defaultProtocols = (): Record<ProtocolId, UserProtocolState> =>
  Object.fromEntries(PROTOCOLS.map((p, i) => [p.id, { enabled: i === 0, password: null }])) as Record<ProtocolId, UserProtocolState>;

export const NEW_USER_DEFAULTS: EditableUser = {
  is_active: true,
  max_clients: 1,
  activation_type: 'fixed_date',
  pending_activation_days: null,
  expiry_date: null,
  first_connection_at: null,
  data_limit: 0,
  data_limit_unit: 'GB',
  data_limit_bytes: 0,
  data_limit_reset_strategy: 'no_reset',
  protocols: defaultProtocols(),
  nodes: null,
  notes: null,
};

/** Keys of UpdateUserInput that count as "something to change" (the path's username does not). */
export const UPDATE_FIELDS: readonly (keyof UpdateUserInput)[] = [
  'max_clients',
  'activation_type',
  'pending_activation_days',
  'expiry_date_str',
  'expiry_days',
  'data_limit',
  'data_limit_unit',
  'data_limit_reset_strategy',
  ...PROTOCOLS.flatMap((p) => [p.api.enable, ...(p.api.password ? [p.api.password] : [])] as (keyof UpdateUserInput)[]),
  'nodes',
  'allowed_nodes',
  'notes',
  'sub_admin_id',
  'is_active',
];

export const isWhole = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

/**
 * `YYYY-MM-DD` → the first instant after that day (00:00 UTC of the next day): a user whose
 * expiry date is 2026-12-31 may connect through the whole of that date, and is expired from
 * 2027-01-01T00:00:00Z on.
 */
export function expiryFromDateString(value: string): Date {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(value);
  if (m) {
    const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
    const day = new Date(Date.UTC(y, mo - 1, d));
    if (y >= 1970 && day.getUTCFullYear() === y && day.getUTCMonth() === mo - 1 && day.getUTCDate() === d) {
      return new Date(Date.UTC(y, mo - 1, d + 1));
    }
  }
  throw invalid(FIELD_MESSAGES.expiry_date_str);
}

export function dataLimitBytes(limit: number, unit: DataLimitUnit): number {
  return Math.round(limit * UNIT_BYTES[unit]);
}

function checkPassword(field: string, value: string | undefined): void {
  if (value !== undefined && !PASSWORD_PATTERN.test(value)) {
    throw invalid(FIELD_MESSAGES.password(field));
  }
}

/**
 * Applies create/edit fields to a user's current values and returns the new ones (pure; throws
 * `invalid` naming the field). Derived values follow: data_limit_bytes from limit × unit,
 * expiry from the activation type.
 */
export function applyUserFields(base: EditableUser, input: UpdateUserInput, now: Date, isNew: boolean): EditableUser {
  const next: EditableUser = { ...base };

  if (input.is_active !== undefined) next.is_active = input.is_active;

  if (input.max_clients !== undefined) {
    if (!isWhole(input.max_clients, 1, MAX_CLIENTS_LIMIT)) throw invalid(FIELD_MESSAGES.max_clients);
    next.max_clients = input.max_clients;
  }

  if (input.data_limit !== undefined) {
    const limit = input.data_limit ?? 0;
    if (!(limit >= 0) || !Number.isFinite(limit)) throw invalid(FIELD_MESSAGES.data_limit);
    next.data_limit = limit;
  }
  if (input.data_limit_unit !== undefined) {
    if (!DATA_LIMIT_UNITS.includes(input.data_limit_unit)) throw invalid(`Invalid data_limit_unit: must be one of ${DATA_LIMIT_UNITS.join(', ')}.`);
    next.data_limit_unit = input.data_limit_unit;
  }
  next.data_limit_bytes = dataLimitBytes(next.data_limit, next.data_limit_unit);
  if (!Number.isSafeInteger(next.data_limit_bytes)) throw invalid('Invalid data_limit: the limit is too large.');

  if (input.data_limit_reset_strategy !== undefined) {
    if (!RESET_STRATEGIES.includes(input.data_limit_reset_strategy)) {
      throw invalid(`Invalid data_limit_reset_strategy: must be one of ${RESET_STRATEGIES.join(', ')}.`);
    }
    next.data_limit_reset_strategy = input.data_limit_reset_strategy;
  }

  // Validate the expiry inputs whenever they are sent, even where the activation type makes
  // them irrelevant: a typo should not pass silently.
  let expiryFromDate: Date | null | undefined;
  if (input.expiry_date_str !== undefined) {
    expiryFromDate = input.expiry_date_str === null || input.expiry_date_str === '' ? null : expiryFromDateString(input.expiry_date_str);
  }
  let expiryFromDays: Date | null | undefined;
  if (input.expiry_days !== undefined) {
    if (input.expiry_days !== null && !isWhole(input.expiry_days, 0, MAX_DAYS)) {
      throw invalid(FIELD_MESSAGES.expiry_days);
    }
    expiryFromDays = input.expiry_days ? new Date(now.getTime() + input.expiry_days * DAY_MS) : null;
  }
  if (input.pending_activation_days !== undefined && input.pending_activation_days !== null && !isWhole(input.pending_activation_days, 1, MAX_DAYS)) {
    throw invalid(FIELD_MESSAGES.pending_activation_days);
  }

  const activation = input.activation_type ?? base.activation_type;
  if (activation !== 'fixed_date' && activation !== 'flexible_days') throw invalid('Invalid activation_type: must be fixed_date or flexible_days.');
  if (activation === 'flexible_days') {
    const days = input.pending_activation_days !== undefined ? input.pending_activation_days : base.pending_activation_days;
    if (days === null || days === undefined) throw invalid('pending_activation_days is required for flexible_days activation (a whole number of days, at least 1).');
    const switching = isNew || base.activation_type !== 'flexible_days';
    next.activation_type = 'flexible_days';
    next.pending_activation_days = days;
    if (switching) {
      // A user switched to flexible_days starts over on hold: its days count from the next first connection.
      next.expiry_date = null;
      next.first_connection_at = null;
    } else if (days !== base.pending_activation_days && base.first_connection_at) {
      next.expiry_date = new Date(base.first_connection_at.getTime() + days * DAY_MS);
    }
  } else {
    next.activation_type = 'fixed_date';
    next.pending_activation_days = null;
    // The contract: expiry_date_str first, then expiry_days; neither keeps the current expiry (none for a new user).
    if (expiryFromDate !== undefined) next.expiry_date = expiryFromDate;
    else if (expiryFromDays !== undefined) next.expiry_date = expiryFromDays;
    else if (isNew) next.expiry_date = null;
  }

  next.protocols = { ...base.protocols };
  const given = input as Record<string, unknown>;
  for (const p of PROTOCOLS) {
    const state = { ...base.protocols[p.id] };
    const enable = given[p.api.enable];
    if (typeof enable === 'boolean') state.enabled = enable;
    if (p.api.password) {
      const password = given[p.api.password] as string | undefined;
      checkPassword(p.api.password, password);
      if (password !== undefined) state.password = password;
    }
    next.protocols[p.id] = state;
  }

  const nodes = input.nodes !== undefined ? input.nodes : input.allowed_nodes;
  if (nodes !== undefined) {
    const field = input.nodes !== undefined ? 'nodes' : 'allowed_nodes';
    if (nodes !== null && nodes.some((n) => typeof n !== 'string' || n.length === 0 || n.length > 32)) throw invalid(`Invalid ${field}: expected a list of server ids such as "main" or "node_1".`);
    // An empty list means the same as no list (every server the owner may use), as for a reseller's allowed_servers.
    next.nodes = nodes && nodes.length > 0 ? [...new Set(nodes)] : null;
  }

  if (input.notes !== undefined) {
    if (input.notes !== null && input.notes.length > MAX_NOTES_LENGTH) throw invalid(FIELD_MESSAGES.notes);
    next.notes = input.notes === '' ? null : input.notes;
  }
  return next;
}

/** Passwords a protocol needs and nobody gave are generated (and then shown in the detail). */
export function fillMissingPasswords(user: EditableUser): void {
  for (const p of PROTOCOLS) {
    const state = user.protocols[p.id];
    if (p.api.password && state.enabled && !state.password) user.protocols[p.id] = { ...state, password: generatePassword() };
  }
}

export function editableOf(row: UserRow): EditableUser {
  const out = {} as EditableUser;
  for (const key of Object.keys(NEW_USER_DEFAULTS) as (keyof EditableUser)[]) (out as unknown as Record<string, unknown>)[key] = row[key];
  out.protocols = { ...row.protocols };
  return out;
}

/**
 * Fresh passwords for every enabled protocol that has one, as column → value: a revoke ends
 * everything the old subscription page showed, and it showed these.
 */
export function renewedPasswords(user: EditableUser): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of PROTOCOLS) if (p.columns.password && user.protocols[p.id].enabled) out[p.columns.password] = generatePassword();
  return out;
}

/** Row values as written through the model: `nodes` as JSON text, protocols in their columns. */
export function toAttributes(user: EditableUser): Record<string, unknown> {
  const { protocols, ...rest } = user;
  const out: Record<string, unknown> = { ...rest, nodes: user.nodes ? JSON.stringify(user.nodes) : null };
  for (const p of PROTOCOLS) {
    out[p.columns.enable] = protocols[p.id].enabled;
    if (p.columns.password) out[p.columns.password] = protocols[p.id].password;
  }
  return out;
}

/**
 * Material a protocol needs for a user who has it enabled and none yet (WireGuard keys),
 * as column → value; empty when nothing is missing.
 */
export function missingMaterial(user: EditableUser, current: Record<string, string | null> | null): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of PROTOCOLS) {
    if (!user.protocols[p.id].enabled || !p.generateMaterial) continue;
    const columns = [...Object.values(p.material.clientOnly), ...Object.values(p.material.public)].filter((c) => c !== p.addressColumn);
    if (current && columns.every((c) => current[c])) continue;
    Object.assign(out, p.generateMaterial());
  }
  return out;
}

export const sameValue = (a: unknown, b: unknown): boolean => {
  if (a instanceof Date || b instanceof Date) return (a as Date | null)?.getTime?.() === (b as Date | null)?.getTime?.();
  if (Array.isArray(a) || Array.isArray(b)) return JSON.stringify(a) === JSON.stringify(b);
  return a === b;
};


export function checkUsername(username: string): void {
  if (!USERNAME_PATTERN.test(username)) {
    throw invalid(FIELD_MESSAGES.username);
  }
  if (RESERVED_USERNAMES.has(username)) throw invalid(`Invalid username: '${username}' is reserved.`);
}

