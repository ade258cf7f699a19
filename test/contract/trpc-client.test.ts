import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { expect } from 'chai';
import { TRPCClientError } from '@trpc/client';
import { createPolygateClient, type AppRouter } from '../../api/client';
import { createHarness, type Harness } from '../helpers/harness';

describe('typed tRPC client over real HTTP (/trpc)', () => {
  let h: Harness;
  let server: Server;
  let url: string;

  before(async () => {
    h = await createHarness('sqlite');
    server = h.app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await new Promise((r) => server.close(r));
    await h.close();
  });

  it('calls procedures with the admin key: health, create, get (the same services as REST)', async () => {
    const panel = createPolygateClient({ url, apiKey: h.adminKey });
    expect((await panel.health.check.query()).message).to.equal('Panel is online');
    const created = await panel.users.create.mutate({ username: 'typed_alice', data_limit: 5, data_limit_unit: 'GB' });
    expect(created.created_users).to.deep.equal(['typed_alice']);
    const alice = await panel.users.get.query({ username: 'typed_alice' });
    expect(alice.username).to.equal('typed_alice');
    expect(alice.data_limit_bytes).to.equal(5 * 1024 ** 3);
    const rest = await h.http.get('/api/v1/users/typed_alice').set('X-API-KEY', h.adminKey);
    expect(rest.body.username).to.equal('typed_alice');
  });

  it('a validation error reaches the client as the sentence REST answers, not a zod JSON array (issue 12)', async () => {
    const panel = createPolygateClient({ url, apiKey: h.adminKey });
    const cases: Array<[() => Promise<unknown>, string, Record<string, unknown>]> = [
      [() => panel.users.create.mutate({ username: 'typed_bob', max_clients: 0 }), 'Invalid max_clients: must be a whole number from 1 to 1000.', { username: 'typed_bob', max_clients: 0 }],
      [() => panel.users.create.mutate({ username: 'typed_bob', max_clients: 'two' as never }), "Field 'max_clients' must be a number, not a string.", { username: 'typed_bob', max_clients: 'two' }],
      [() => panel.users.create.mutate({ username: 'typed_bob', datalimit: 5 } as never), "Unknown field 'datalimit' (did you mean 'data_limit'?).", { username: 'typed_bob', datalimit: 5 }],
    ];
    for (const [call, message, body] of cases) {
      const rest = await h.http.post('/api/v1/users').set('X-API-KEY', h.adminKey).send(body);
      expect(rest.body, 'REST answer').to.deep.equal({ success: false, message });
      try {
        await call();
        expect.fail(`accepted: ${message}`);
      } catch (e) {
        expect(e).to.be.instanceOf(TRPCClientError);
        const err = e as TRPCClientError<AppRouter>;
        expect(err.message).to.equal(message);
        expect(err.data?.code).to.equal('BAD_REQUEST');
        expect(err.data?.httpStatus).to.equal(400);
      }
    }
  });

  it('a bad key fails with the domain message, never a stack', async () => {
    const panel = createPolygateClient({ url, apiKey: 'not-a-key' });
    try {
      await panel.health.check.query();
      expect.fail('a bad key was accepted');
    } catch (e) {
      expect(e).to.be.instanceOf(TRPCClientError);
      const err = e as TRPCClientError<never>;
      expect(err.message).to.equal('Invalid or inactive API key');
      expect(JSON.stringify(err.shape)).to.not.match(/stack|at .*\.ts/);
    }
  });
});
