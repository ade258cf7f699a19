import { expect } from 'chai';
import { createLogger } from '../../core/logger';

/*
 * The logger itself keeps secrets out (issue 8, finding 5), whatever a caller hands it: the
 * error serializer drops Sequelize's statement, parameters, field values and instances (on the
 * error and on its parent/original), and redaction covers every secret-bearing key.
 */

function capture() {
  const lines: string[] = [];
  const log = createLogger('trace', { write: (l: string) => void lines.push(l) });
  return { log, text: () => lines.join('') };
}

describe('log redaction and the error serializer', () => {
  it('a database error logs its message and code, never its SQL, parameters, values, fields or instance', () => {
    const { log, text } = capture();
    const secrets = ['S3cret-Pass_1', 'wgPrivKeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', 'tok_0123456789abcdef'];
    const driver = Object.assign(new Error('SQLITE_ERROR: unrecognized token'), {
      code: 'SQLITE_ERROR',
      sql: `INSERT INTO users (openvpn_password, wg_private_key) VALUES ('${secrets[0]}', '${secrets[1]}')`,
    });
    const err = Object.assign(new Error('SQLITE_ERROR: unrecognized token'), {
      name: 'SequelizeDatabaseError',
      parent: driver,
      original: driver,
      sql: driver.sql,
      parameters: [secrets[0], secrets[1]],
      bind: [secrets[2]],
      fields: { token: secrets[2] },
      detail: `Key (token)=(${secrets[2]}) already exists.`,
      errors: [{ message: 'token must be unique', value: secrets[2], instance: { openvpn_password: secrets[0] } }],
    });
    log.error({ err, where: 'POST /users' }, 'unexpected error');
    log.error({ error: err }, 'same under "error"');
    const out = text();
    for (const s of secrets) expect(out, s).to.not.include(s);
    const first = JSON.parse(out.split('\n')[0]!) as { err: Record<string, unknown> };
    expect(first.err).to.include({ message: 'SQLITE_ERROR: unrecognized token', name: 'SequelizeDatabaseError' });
    expect((first.err.cause as Record<string, unknown>).code).to.equal('SQLITE_ERROR');
  });

  it('secret keys are redacted at the top level and one level down', () => {
    const { log, text } = capture();
    const values = {
      openvpn_password: 'ov-pass-123',
      l2tp_password: 'l2-pass-123',
      cisco_password: 'ci-pass-123',
      wg_private_key: 'wg-key-123',
      token: 'token-123',
      api_key: 'apikey-123',
      key_hash: 'hash-123',
      password_hash: 'phash-123',
      ssh_password: 'ssh-123',
      ipsec_psk: 'psk-123',
    };
    log.info(values, 'top level');
    log.info({ user: values }, 'nested');
    const out = text();
    for (const v of Object.values(values)) expect(out, v).to.not.include(v);
    expect(out).to.include('[redacted]');
  });
});
