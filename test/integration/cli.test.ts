import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { runChecks } from '../../cli/commands/doctor';
import { loadConfig } from '../../core/config';
import type { DaemonHandle } from '../../core/daemon';
import { api, newPanel, runCliProcess, startPanel, type Panel } from './backup-helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const version = (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

describe('the polygate CLI', function () {
  this.timeout(60_000);

  describe('against a running daemon', () => {
    let panel: Panel;
    let daemon: DaemonHandle;
    before(async () => {
      panel = await newPanel('sqlite');
      daemon = await startPanel(panel);
    });
    after(async () => {
      await daemon?.stop();
    });

    it('status: running, its version, user count and every component; --json for scripts', async () => {
      const key = daemon.core.generatedAdminKey!;
      for (const username of ['s-one', 's-two']) expect((await api(daemon.url, 'POST', '/api/v1/users', key, { username })).status).to.equal(200);
      const [r, text] = await Promise.all([runCliProcess(['--config', panel.configFile, 'status', '--json']), runCliProcess(['--config', panel.configFile, 'status'])]);
      expect(r.code, r.stderr).to.equal(0);
      const s = JSON.parse(r.stdout) as { running: boolean; version: string; users: number; url: string; pid: number; components: Record<string, { state: string }> };
      expect(s.running).to.equal(true);
      expect(s.version).to.equal(version);
      expect(s.users).to.equal(2);
      expect(s.url).to.equal(daemon.url);
      expect(s.pid).to.equal(process.pid);
      expect(s.components).to.have.property('firewall');
      expect(text.stdout).to.match(new RegExp(`polygate ${version} is running .* on ${daemon.url.replace(/[.]/g, '\\.')}`));
      expect(text.stdout).to.match(/users: 2/);
    });

    it('admin-key rotate: prints the new key once; the old key, cached by the daemon, stops working at once, without a restart', async () => {
      const oldKey = daemon.core.generatedAdminKey!;
      // Authenticate first, so the daemon holds the old key in its cache.
      expect((await api(daemon.url, 'GET', '/api/v1/health', oldKey)).status).to.equal(200);
      expect(existsSync(path.join(panel.dataDir, 'admin-api-key'))).to.equal(true);
      const r = await runCliProcess(['--config', panel.configFile, 'admin-key', 'rotate']);
      expect(r.code, r.stderr).to.equal(0);
      const lines = r.stdout.split('\n').filter(Boolean);
      expect(lines, 'stdout carries the key and nothing else').to.have.length(1);
      const newKey = lines[0]!;
      expect(newKey).to.match(/^[A-Za-z0-9_-]{43}$/);
      expect(r.stderr).to.not.include(newKey);
      expect(r.stderr).to.match(/running daemon dropped the old key/);
      expect((await api(daemon.url, 'GET', '/api/v1/health', oldKey)).status, 'old key refused').to.equal(401);
      expect((await api(daemon.url, 'GET', '/api/v1/health', newKey)).status, 'new key accepted').to.equal(200);
      expect(existsSync(path.join(panel.dataDir, 'admin-api-key')), 'the stale key file is gone').to.equal(false);
    });
  });

  it('status of a stopped panel exits 3 and still counts its users; admin-key rotate then applies at the next start', async () => {
    const panel = await newPanel('sqlite');
    let daemon = await startPanel(panel);
    expect((await api(daemon.url, 'POST', '/api/v1/users', daemon.core.generatedAdminKey!, { username: 'offline1' })).status).to.equal(200);
    await daemon.stop();
    const s = await runCliProcess(['--config', panel.configFile, 'status']);
    expect(s.code, s.stdout + s.stderr).to.equal(3);
    expect(s.stdout).to.match(/not running/);
    expect(s.stdout).to.match(/holds 1 user/);
    const r = await runCliProcess(['--config', panel.configFile, 'admin-key', 'rotate']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stderr).to.match(/no daemon runs on this data dir/);
    daemon = await startPanel(panel);
    try {
      expect((await api(daemon.url, 'GET', '/api/v1/health', r.stdout.trim())).status).to.equal(200);
    } finally {
      await daemon.stop();
    }
  });

  it('admin-key rotate refuses when POLYGATE_ADMIN_API_KEY sets the key (the daemon would put it back at start)', async () => {
    const panel = await newPanel('sqlite', { adminApiKey: 'configured-admin-key-0123456789' });
    const daemon = await startPanel(panel);
    await daemon.stop();
    const r = await runCliProcess(['--config', panel.configFile, 'admin-key', 'rotate']);
    expect(r.code).to.equal(4);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.match(/POLYGATE_ADMIN_API_KEY/);
  });

  it('errors name what to do, with the documented exit codes (usage 2, no panel 2, help lists the codes)', async () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'pg-cli-empty-'));
    // Independent processes: run side by side.
    const [help, unknown, bad, none] = await Promise.all([
      runCliProcess(['--help']),
      runCliProcess(['no-such-command']),
      runCliProcess(['status'], { POLYGATE_PORT: 'eighty' }),
      runCliProcess(['--data-dir', path.join(empty, 'nothing'), 'backup', path.join(empty, 'b.tar.gz')]),
    ]);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/Exit codes:[\s\S]*4 {2}refused[\s\S]*5 {2}the backup archive/);
    expect(unknown.code).to.equal(2);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/POLYGATE_PORT/);
    expect(none.code).to.equal(2);
    expect(none.stderr).to.match(/no panel database .* POLYGATE_DATA_DIR/);
    expect(existsSync(path.join(empty, 'nothing')), 'nothing created').to.equal(false);
  });

  describe('doctor', () => {
    it('names each missing program with the Debian package to install, only failing for what enabled plugins need', async () => {
      const bin = mkdtempSync(path.join(os.tmpdir(), 'pg-doctor-bin-'));
      for (const name of ['openvpn', 'openssl', 'ip']) {
        writeFileSync(path.join(bin, name), '#!/bin/sh\n');
        chmodSync(path.join(bin, name), 0o755);
      }
      const config = loadConfig({ POLYGATE_DATA_DIR: path.join(bin, 'data'), POLYGATE_PLUGINS: 'openvpn,wireguard', POLYGATE_FIREWALL: 'off', POLYGATE_PORT: '0' });
      const checks = await runChecks(config, { programDirs: [bin] });
      const byName = new Map(checks.filter((c) => c.group === 'binaries').map((c) => [c.name, c]));
      expect(byName.get('openvpn')!.state).to.equal('ok');
      expect(byName.get('openvpn')!.detail).to.equal(path.join(bin, 'openvpn'));
      expect(byName.get('wg')!.state).to.equal('missing');
      expect(byName.get('wg')!.fix).to.match(/apt-get install .*wireguard-tools/);
      // Not enabled: shown with its package, but no failure.
      expect(byName.get('ocserv')!.state).to.equal('info');
      expect(byName.get('ocserv')!.fix).to.match(/ocserv/);
      expect(byName.get('xl2tpd')!.state).to.equal('info');
      expect(byName.get('nft')!.state, 'POLYGATE_FIREWALL=off needs no nft').to.equal('info');
    });

    it('exits 6 when the panel port is taken by another program, and says which setting moves it', async () => {
      const squatter = net.createServer();
      await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
      const port = (squatter.address() as AddressInfo).port;
      try {
        const panel = await newPanel('sqlite', { port });
        const r = await runCliProcess(['--config', panel.configFile, 'doctor', '--json']);
        expect(r.code, r.stderr).to.equal(6);
        const report = JSON.parse(r.stdout) as { checks: { group: string; name: string; state: string; fix?: string }[] };
        const panelPort = report.checks.find((c) => c.group === 'ports' && c.name === `${port}/tcp (panel)`)!;
        expect(panelPort.state).to.equal('missing');
        expect(panelPort.fix).to.match(/POLYGATE_PORT/);
      } finally {
        squatter.close();
      }
    });
  });
});
