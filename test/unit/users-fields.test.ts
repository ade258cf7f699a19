import { expect } from 'chai';
import { DomainError } from '../../core/errors';
import { applyUserFields, dataLimitBytes, expiryFromDateString, NEW_USER_DEFAULTS } from '../../core/services/users';
import { buildServerCatalog, effectiveServerIds, readResellerRow, readUserRow, toDate } from '../../core/services/user-view';
import { generateWireGuardKeyPair, wireGuardAddressFor, wireGuardPublicKeyOf } from '../../core/protocols/wireguard-material';

const NOW = new Date('2026-06-01T12:00:00.000Z');
const DAY_MS = 86_400_000;

const base = NEW_USER_DEFAULTS;

function invalidMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).to.be.instanceOf(DomainError);
    expect((e as DomainError).kind).to.equal('invalid');
    return (e as Error).message;
  }
  throw new Error('expected an invalid error');
}

describe('users: field rules (pure)', () => {
  it('expiryFromDateString: the first instant after the given UTC day; impossible dates refused', () => {
    expect(expiryFromDateString('2026-12-31').toISOString()).to.equal('2027-01-01T00:00:00.000Z');
    expect(expiryFromDateString('2028-02-29').toISOString()).to.equal('2028-03-01T00:00:00.000Z');
    for (const bad of ['2027-02-29', '2026-00-10', '2026-04-31', '1969-12-31', '2026-1-1', ' 2026-01-01', '2026-01-01 ']) {
      expect(invalidMessage(() => expiryFromDateString(bad)), bad).to.equal('Invalid expiry_date_str: expected YYYY-MM-DD.');
    }
  });

  it('dataLimitBytes: binary units', () => {
    expect(dataLimitBytes(1, 'MB')).to.equal(1_048_576);
    expect(dataLimitBytes(1, 'GB')).to.equal(1_073_741_824);
    expect(dataLimitBytes(1, 'TB')).to.equal(1_099_511_627_776);
    expect(dataLimitBytes(0.5, 'GB')).to.equal(536_870_912);
  });

  it('applyUserFields: a limit too large for exact byte counting is refused', () => {
    expect(invalidMessage(() => applyUserFields(base, { data_limit: 1e9, data_limit_unit: 'TB' }, NOW, true))).to.equal('Invalid data_limit: the limit is too large.');
  });

  it('applyUserFields: fixed_date keeps the current expiry unless told otherwise; expiry_date_str beats expiry_days', () => {
    const current = { ...base, expiry_date: new Date('2026-07-01T00:00:00Z') };
    expect(applyUserFields(current, { notes: 'x' }, NOW, false).expiry_date).to.deep.equal(current.expiry_date);
    expect(applyUserFields(current, { expiry_days: 3 }, NOW, false).expiry_date!.getTime()).to.equal(NOW.getTime() + 3 * DAY_MS);
    expect(applyUserFields(current, { expiry_days: 3, expiry_date_str: '2026-06-10' }, NOW, false).expiry_date!.toISOString()).to.equal('2026-06-11T00:00:00.000Z');
    expect(applyUserFields(current, { expiry_days: 0 }, NOW, false).expiry_date).to.equal(null);
  });

  it('applyUserFields: flexible_days ignores expiry inputs but still validates them', () => {
    const flex = applyUserFields(base, { activation_type: 'flexible_days', pending_activation_days: 5, expiry_days: 9 }, NOW, true);
    expect(flex).to.include({ activation_type: 'flexible_days', pending_activation_days: 5, expiry_date: null, first_connection_at: null });
    expect(invalidMessage(() => applyUserFields(base, { activation_type: 'flexible_days', pending_activation_days: 5, expiry_date_str: 'soon' }, NOW, true))).to.equal(
      'Invalid expiry_date_str: expected YYYY-MM-DD.',
    );
  });

  it('applyUserFields: leaving flexible_days for fixed_date keeps an expiry set at activation and the first connection', () => {
    const first = new Date('2026-05-01T00:00:00Z');
    const activated = { ...base, activation_type: 'flexible_days' as const, pending_activation_days: 30, first_connection_at: first, expiry_date: new Date(first.getTime() + 30 * DAY_MS) };
    const fixed = applyUserFields(activated, { activation_type: 'fixed_date' }, NOW, false);
    expect(fixed).to.include({ activation_type: 'fixed_date', pending_activation_days: null });
    expect(fixed.expiry_date).to.deep.equal(activated.expiry_date);
    expect(fixed.first_connection_at).to.deep.equal(first);
  });

  it('applyUserFields: nodes are de-duplicated, an empty list means "all", allowed_nodes is the fallback alias', () => {
    expect(applyUserFields(base, { nodes: ['main', 'node_1', 'main'] }, NOW, false).nodes).to.deep.equal(['main', 'node_1']);
    expect(applyUserFields({ ...base, nodes: ['main'] }, { nodes: [] }, NOW, false).nodes).to.equal(null);
    expect(applyUserFields(base, { allowed_nodes: ['node_2'] }, NOW, false).nodes).to.deep.equal(['node_2']);
    expect(applyUserFields(base, { nodes: ['main'], allowed_nodes: ['node_2'] }, NOW, false).nodes).to.deep.equal(['main']);
    expect(invalidMessage(() => applyUserFields(base, { allowed_nodes: [''] }, NOW, false))).to.equal('Invalid allowed_nodes: expected a list of server ids such as "main" or "node_1".');
  });

  it('applyUserFields: every printable ASCII character but space, quote and backslash is a valid password character', () => {
    const allowed = Array.from({ length: 0x7e - 0x21 + 1 }, (_, i) => String.fromCharCode(0x21 + i)).filter((c) => c !== '"' && c !== '\\').join('');
    expect(applyUserFields(base, { l2tp_password: allowed.slice(0, 64) }, NOW, false).protocols.l2tp.password).to.equal(allowed.slice(0, 64));
    expect(applyUserFields(base, { l2tp_password: allowed.slice(64) }, NOW, false).protocols.l2tp.password).to.equal(allowed.slice(64));
    for (const bad of ['"', '\\', ' ', '\x7f', '\x00', 'é']) {
      expect(() => applyUserFields(base, { cisco_password: `ab${bad}cd` }, NOW, false), JSON.stringify(bad)).to.throw(DomainError, 'Invalid cisco_password');
    }
  });
});

describe('users: row reading and server lists (pure)', () => {
  it('toDate reads SQLite text dates, Date objects and rejects garbage', () => {
    expect(toDate('2026-06-01 12:00:00.000 +00:00')!.toISOString()).to.equal('2026-06-01T12:00:00.000Z');
    expect(toDate(new Date('2026-06-01T12:00:00Z'))!.toISOString()).to.equal('2026-06-01T12:00:00.000Z');
    expect(toDate(null)).to.equal(null);
    expect(toDate('not a date')).to.equal(null);
  });

  it('readUserRow normalizes SQLite (0/1, text) and PostgreSQL (BIGINT strings) rows to the same shape', () => {
    const sqlite = readUserRow({ id: 3, username: 'u', sub_admin_id: null, is_active: 1, enable_wg: 0, upload_bytes: 5, download_bytes: 6, data_limit_bytes: 7, nodes: '["main"]', expiry_date: '2026-06-01 12:00:00.000 +00:00' });
    const pg = readUserRow({ id: 3, username: 'u', sub_admin_id: null, is_active: true, enable_wg: false, upload_bytes: '5', download_bytes: '6', data_limit_bytes: '7', nodes: '["main"]', expiry_date: new Date('2026-06-01T12:00:00Z') });
    expect(sqlite).to.deep.equal(pg);
    expect(readUserRow({ id: 1, username: 'u', nodes: 'garbage' }).nodes).to.equal(null);
  });

  it('effectiveServerIds: user pins ∩ reseller allowed ∩ servers that exist', () => {
    const server = (id: string, address: string | null) => ({ id, name: id, address });
    const everywhere = { offers: () => true };
    const catalog = buildServerCatalog([server('main', null), server('node_1', '192.0.2.1'), server('node_2', '192.0.2.2')], [], 'vpn.example', everywhere);
    expect(catalog.servers.map((s) => `${s.id}@${s.address}`)).to.deep.equal(['main@vpn.example', 'node_1@192.0.2.1', 'node_2@192.0.2.2']);
    const reseller = readResellerRow({ id: 1, username: 'r', is_active: true, allowed_servers: '["main","node_2","node_9"]', used_traffic_bytes: 0 });
    expect([...effectiveServerIds(null, null, catalog)]).to.deep.equal(['main', 'node_1', 'node_2']);
    expect([...effectiveServerIds(null, reseller, catalog)]).to.deep.equal(['main', 'node_2']);
    expect([...effectiveServerIds(['node_1', 'node_2'], reseller, catalog)]).to.deep.equal(['node_2']);
    expect([...effectiveServerIds(['node_9'], null, catalog)]).to.deep.equal([]);
  });
});

describe('users: WireGuard keys and addresses', () => {
  it('generates raw 32-byte X25519 keys in base64 whose public half matches the private one', () => {
    const a = generateWireGuardKeyPair();
    const b = generateWireGuardKeyPair();
    for (const k of [a.privateKey, a.publicKey]) expect(Buffer.from(k, 'base64')).to.have.length(32);
    expect(wireGuardPublicKeyOf(a.privateKey)).to.equal(a.publicKey);
    expect(a.privateKey).to.not.equal(b.privateKey);
  });

  it('matches a known RFC 7748 X25519 test vector', () => {
    // RFC 7748 §6.1, Alice's private and public key.
    const priv = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64');
    const pub = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64');
    expect(wireGuardPublicKeyOf(priv)).to.equal(pub);
  });

  it('addresses: host part = 2 + id inside 10.66.0.0/16, never the broadcast address', () => {
    expect(wireGuardAddressFor(1)).to.equal('10.66.0.3/32');
    expect(wireGuardAddressFor(253)).to.equal('10.66.0.255/32');
    expect(wireGuardAddressFor(254)).to.equal('10.66.1.0/32');
    expect(wireGuardAddressFor(65532)).to.equal('10.66.255.254/32');
    expect(() => wireGuardAddressFor(65533)).to.throw(DomainError, 'exhausted');
    expect(() => wireGuardAddressFor(0)).to.throw(DomainError);
  });
});
