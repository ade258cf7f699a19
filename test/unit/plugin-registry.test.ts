import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { z } from 'zod';
import { ManualClock } from '../../core/clock';
import { loadConfig } from '../../core/config';
import { LocalHost } from '../../core/hosts/local-host';
import { logger } from '../../core/logger';
import { compatibleApiVersion, PluginRegistry } from '../../core/plugin/registry';
import { defineProtocolPlugin, type PluginPki } from '../../core/plugin/types';
import { StatusBoard } from '../../core/status';
import { scriptedPluginDefinition } from '../fakes/scripted-plugin';

/** The registry's shape checks, version rule and "what runs where", with broken plugins on purpose. */

const unusedPki: PluginPki = {
  caCertificate: () => Promise.reject(new Error('no PKI in this test')),
  serverCertificate: () => Promise.reject(new Error('no PKI in this test')),
  clientCertificate: () => Promise.reject(new Error('no PKI in this test')),
};

function registry(): { registry: PluginRegistry; status: StatusBoard } {
  const status = new StatusBoard();
  const config = loadConfig({ POLYGATE_DATA_DIR: '/nonexistent-polygate-test' });
  const r = new PluginRegistry({ logger: logger.child({ test: 'registry' }), status, config, clock: new ManualClock() }, unusedPki, {
    pluginsDir: path.resolve(__dirname, '../fixtures/plugins'),
    callTimeoutMs: 500,
  });
  return { registry: r, status };
}
const at = (serverId: string) => ({ serverId, host: new LocalHost({ id: serverId }), stateDir: '/nonexistent-polygate-test/plugins' });

describe('plugin registry', () => {
  it('versions: the same major with a minor no newer than core loads; anything else is refused', () => {
    expect(compatibleApiVersion('2.0', '2.0')).to.equal(true);
    expect(compatibleApiVersion('2.0', '2.3')).to.equal(true);
    expect(compatibleApiVersion('2.4', '2.3')).to.equal(false);
    expect(compatibleApiVersion('1.9', '2.3')).to.equal(false);
    for (const bad of [2, '2', 'v2.0', '', null]) expect(compatibleApiVersion(bad, '2.0'), String(bad)).to.equal(false);
  });

  it('broken plugins are registered unavailable with a reason that says what is wrong; the registry keeps working', async () => {
    const { registry: r } = registry();
    const cases: Array<[string, RegExp]> = [
      ['throws-on-load', /could not be loaded: syntax error in the plugin/],
      ['old-api', /built for plugin API version "1\.0".*speaks version 2\.0/],
      ['newer-minor', /built for plugin API version "2\.9"/],
      ['no-capabilities', /capabilities are missing/],
      ['missing-method', /without pollSessions, renderClientConfig \(capabilities\.clientConfig is set\)/],
      ['create-throws', /failed to start: state directory is not writable/],
      ['unavailable', /wireguard-go is not installed/],
      ['../../etc', /lowercase letters, digits and dashes/],
    ];
    for (const [name, reason] of cases) {
      const p = await r.load(name, at(`s_${name.replace(/\W/g, '')}`));
      expect(p.state, name).to.equal('unavailable');
      expect(p.reason, name).to.match(reason);
      expect(r.available().some((a) => a.serverId === p.serverId), name).to.equal(false);
    }
    const good = await r.load('good-minor', at('s_good'));
    expect(good.state).to.equal('available');
    expect(good.capabilities).to.include({ poll: 'sessions', gatesLogins: false });
  });

  it('a call that hangs is cut off by the time limit and reported, never a synchronous throw', async () => {
    const { registry: r } = registry();
    const hanging = defineProtocolPlugin({
      id: 'cisco',
      apiVersion: '2.0',
      capabilities: { gatesLogins: true, reportsEndedSessions: false, poll: 'sessions', takesListeners: false, settings: [], clientConfig: null },
      configSchema: z.object({}),
      create: () => ({
        availability: async () => ({ available: true as const }),
        apply: () => new Promise<void>(() => undefined),
        stop: async () => undefined,
        ports: async () => [],
        pollSessions: () => new Promise(() => undefined),
        disconnect: () => {
          throw new Error('boom');
        },
      }),
    });
    const p = await r.add(hanging, at('main'));
    const poll = await p.instance!.pollSessions().then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    expect(poll).to.match(/pollSessions\(\) took longer than 500 ms/);
    const cut = await p.instance!.disconnect({ username: 'x' }).then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    expect(cut).to.equal('boom');
  });

  it('what runs where: a protocol runs on a node only when it runs on main, unless the node says otherwise', async () => {
    const { registry: r } = registry();
    expect(r.offers('wireguard', 'main')).to.equal(false);
    expect(r.offers('wireguard', 'node_1')).to.equal(false);
    const v0 = r.version();
    const main = await r.add(scriptedPluginDefinition('wireguard', () => undefined), at('main'));
    expect(main.state).to.equal('available');
    expect(r.version()).to.not.equal(v0);
    expect(r.offers('wireguard', 'main')).to.equal(true);
    expect(r.offers('wireguard', 'node_1'), 'nodes run the plugins main runs').to.equal(true);
    let onNode: { available: { available: false; reason: string } | { available: true } } | undefined;
    await r.add(scriptedPluginDefinition('wireguard', (p) => (onNode = p)), at('node_2'));
    onNode!.available = { available: false, reason: 'not installed on node_2' };
    await r.refreshAvailability();
    expect(r.offers('wireguard', 'node_2')).to.equal(false);
    expect(r.offers('openvpn', 'main')).to.equal(false);
    expect(r.formatOf('wireguard')).to.equal(null);
  });

  it('customer facts: from the server\'s own instance, else main\'s; none while the plugin is down or when it fails', async () => {
    const { registry: r } = registry();
    expect(await r.customerFactsOf('cisco', 'main')).to.deep.equal([]);
    let main: import('../fakes/scripted-plugin').ScriptedPlugin | undefined;
    let node: import('../fakes/scripted-plugin').ScriptedPlugin | undefined;
    await r.add(scriptedPluginDefinition('cisco', (p) => (main = p)), at('main'));
    await r.add(scriptedPluginDefinition('cisco', (p) => (node = p)), at('node_2'));
    main!.facts = [{ key: 'certificate_pin', label: 'Server certificate pin', value: 'pin-sha256:main' }];
    node!.facts = [{ key: 'certificate_pin', label: 'Server certificate pin', value: 'pin-sha256:node2' }];
    expect((await r.customerFactsOf('cisco', 'main')).map((f) => f.value)).to.deep.equal(['pin-sha256:main']);
    expect((await r.customerFactsOf('cisco', 'node_2')).map((f) => f.value)).to.deep.equal(['pin-sha256:node2']);
    expect((await r.customerFactsOf('cisco', 'node_1')).map((f) => f.value), 'a node without its own entry runs main\'s').to.deep.equal(['pin-sha256:main']);
    node!.facts = new Error('certificate not issued yet');
    expect(await r.customerFactsOf('cisco', 'node_2')).to.deep.equal([]);
    main!.available = { available: false, reason: 'ocserv is not installed' };
    await r.refreshAvailability();
    expect(await r.customerFactsOf('cisco', 'main')).to.deep.equal([]);
  });

  it('plugins learn the address customers dial: main\'s public host by default, a node\'s from core; their own settings from the config file', async () => {
    const { registry: r } = registry();
    let main: import('../fakes/scripted-plugin').ScriptedPlugin | undefined;
    let node: import('../fakes/scripted-plugin').ScriptedPlugin | undefined;
    await r.add(scriptedPluginDefinition('cisco', (p) => (main = p)), at('main'));
    await r.add(scriptedPluginDefinition('cisco', (p) => (node = p)), { ...at('node_4'), publicHost: '198.51.100.4' });
    expect(main!.ctx.publicHost).to.equal(loadConfig({ POLYGATE_DATA_DIR: '/nonexistent-polygate-test' }).publicHostResolved);
    expect(node!.ctx.publicHost).to.equal('198.51.100.4');

    const dir = mkdtempSync(path.join(tmpdir(), 'pg-plugin-config-'));
    try {
      const file = path.join(dir, 'polygate.json');
      writeFileSync(file, JSON.stringify({ pluginConfig: { ocserv: { dns: ['10.12.0.1'] } } }));
      expect(loadConfig({ POLYGATE_CONFIG_FILE: file }).pluginConfig).to.deep.equal({ ocserv: { dns: ['10.12.0.1'] } });
      writeFileSync(file, JSON.stringify({ pluginConfig: { ocserv: 'dns=1.1.1.1' } }));
      expect(() => loadConfig({ POLYGATE_CONFIG_FILE: file })).to.throw(/pluginConfig/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
