import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../core/config';
import { webhookOptionsOf } from '../../core/webhooks/options';

/** Webhook settings live in the daemon's one configuration: variables, the config file, defaults, errors naming the variable. */
describe('webhook settings', () => {
  it('defaults, variables and POLYGATE_CONFIG_FILE give the engine its options; thresholds come sorted', () => {
    expect(webhookOptionsOf(loadConfig({}))).to.deep.include({ usagePercents: [80, 90], expiringDays: [3, 1], maxAttempts: 10, resellerPrivateTargets: false });
    const env = webhookOptionsOf(loadConfig({ POLYGATE_WEBHOOK_USAGE_PERCENTS: '95, 50,95', POLYGATE_WEBHOOK_RESELLER_PRIVATE_TARGETS: 'on' }));
    expect(env.usagePercents).to.deep.equal([50, 95]);
    expect(env.resellerPrivateTargets).to.equal(true);
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-webhook-settings-'));
    try {
      const file = path.join(dir, 'polygate.json');
      writeFileSync(file, JSON.stringify({ webhookExpiringDays: '1,7', webhookMaxAttempts: 3 }));
      expect(webhookOptionsOf(loadConfig({ POLYGATE_CONFIG_FILE: file }))).to.deep.include({ expiringDays: [7, 1], maxAttempts: 3 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a bad value stops the start with the variable named', () => {
    expect(() => loadConfig({ POLYGATE_WEBHOOK_USAGE_PERCENTS: '80,120' })).to.throw(ConfigError, /POLYGATE_WEBHOOK_USAGE_PERCENTS: must be a comma-separated list/);
    expect(() => loadConfig({ POLYGATE_WEBHOOK_MAX_ATTEMPTS: '0' })).to.throw(ConfigError, /POLYGATE_WEBHOOK_MAX_ATTEMPTS/);
  });
});
