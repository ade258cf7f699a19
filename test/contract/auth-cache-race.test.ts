import { expect } from 'chai';
import { sha256Hex } from '../../core/secrets';
import type { Principal } from '../../core/principal';
import { createHarness, type Harness } from '../helpers/harness';

/*
 * The API-key cache must not store a lookup that raced a reseller change (issue 8, finding 7):
 * a key lookup that read the reseller as active, then a deactivation, then the lookup
 * finishing. With an injected delay between the read and the store, the stale answer would
 * otherwise keep the deactivated reseller's key valid until the next change.
 */
describe('API-key cache and reseller changes racing', () => {
  let h: Harness;
  before(async () => {
    h = await createHarness('sqlite');
  });
  after(() => h.close());

  it('a lookup in flight while the reseller is deactivated is not cached: the key is refused right after', async () => {
    const created = await h.http.post('/api/v1/sub_admins').set('X-API-KEY', h.adminKey).send({ username: 'racing_reseller', password: 'pass-123' });
    const { id, api_key: key } = created.body.sub_admin as { id: number; api_key: string };

    type Lookup = (hash: string) => Promise<Principal | null>;
    const auth = h.services.auth as unknown as { lookup: Lookup };
    const original = auth.lookup.bind(auth);
    let read!: () => void;
    const hasRead = new Promise<void>((r) => (read = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    auth.lookup = async (hash) => {
      const answer = await original(hash);
      if (hash === sha256Hex(key)) {
        read();
        await released; // the injected delay: the row was read as active, not yet stored
      }
      return answer;
    };
    try {
      const inFlight = h.services.auth.authenticate(key);
      await hasRead;
      const off = await h.http.put(`/api/v1/sub_admins/${id}`).set('X-API-KEY', h.adminKey).send({ is_active: false });
      expect(off.status).to.equal(200);
      release();
      expect((await inFlight).kind).to.equal('sub_admin'); // answered from what it read, but not stored
    } finally {
      auth.lookup = original;
    }
    const after = await h.http.get('/api/v1/users/list_all').set('X-API-KEY', key);
    expect(after.status).to.equal(401);
    expect(after.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
  });
});
