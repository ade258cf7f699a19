import { expect } from 'chai';
import { createHarness, forEachDatabase, type Harness } from '../helpers/harness';

forEachDatabase((kind) => {
  describe(`health and envelope [${kind}]`, () => {
    let h: Harness;
    before(async () => {
      h = await createHarness(kind);
    });
    after(() => h.close());

    it('GET /api/v1/health answers "Panel is online" with a microsecond UTC timestamp', async () => {
      const res = await h.http.get('/api/v1/health').set('X-API-KEY', h.adminKey);
      expect(res.status).to.equal(200);
      expect(res.body.success).to.equal(true);
      expect(res.body.message).to.equal('Panel is online');
      expect(res.body.timestamp).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$/);
    });

    it('GET /healthz needs no key', async () => {
      const res = await h.http.get('/healthz');
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.equal({ success: true });
    });

    it('a missing key is 401 "API key is missing"; an unknown key is 401 "Invalid or inactive API key"', async () => {
      let res = await h.http.get('/api/v1/health');
      expect(res.status).to.equal(401);
      expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
      res = await h.http.get('/api/v1/health').set('X-API-KEY', '');
      expect(res.body).to.deep.equal({ success: false, message: 'API key is missing' });
      res = await h.http.get('/api/v1/health').set('X-API-KEY', 'INVALID_KEY');
      expect(res.status).to.equal(401);
      expect(res.body).to.deep.equal({ success: false, message: 'Invalid or inactive API key' });
    });

    it('unknown routes are a 404 envelope', async () => {
      for (const path of ['/api/v1/nope', '/nope']) {
        const res = await h.http.get(path).set('X-API-KEY', h.adminKey);
        expect(res.status).to.equal(404);
        expect(res.body.success).to.equal(false);
        expect(res.body.message).to.be.a('string');
      }
    });
  });
});
