import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { loadConfig } from '../../core/config';
import { requirePrerequisite } from '../helpers/prereq';

/**
 * scripts/install.sh and scripts/uninstall.sh run against a temporary root (`--root`), which
 * also skips system packages (apt-get) and systemctl, modprobe and sysctl: nothing on this
 * machine outside the temporary directory changes. `--skip-npm` skips `npm ci` in the release
 * (it needs the registry); the smoke test borrows this tree's node_modules instead.
 */

const REPO = path.resolve(__dirname, '..', '..');
const INSTALL = path.join(REPO, 'scripts', 'install.sh');
const UNINSTALL = path.join(REPO, 'scripts', 'uninstall.sh');
const UNIT = path.join(REPO, 'scripts', 'polygate.service');
const NODE = realpathSync(process.execPath);

const run = (script: string, args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> =>
  spawnSync('bash', [script, ...args], { encoding: 'utf8', env: { ...process.env, DESTDIR: '', ...env } });

const mode = (file: string) => (statSync(file).mode & 0o777).toString(8);

/** KEY=value lines as systemd's EnvironmentFile reads them (comments and blanks skipped). */
function envFile(file: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

function has(program: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', program]).status === 0;
}

describe('install.sh / uninstall.sh against a temporary root', function () {
  this.timeout(60_000);
  let root: string;
  const releases = () => readdirSync(path.join(root, 'opt/polygate/releases')).sort();
  const install = (...args: string[]) => {
    const r = run(INSTALL, ['--root', root, '--skip-npm', '--node', NODE, ...args]);
    expect(r.status, `install.sh ${args.join(' ')}:\n${r.stdout}\n${r.stderr}`).to.equal(0);
    return r;
  };

  before(function () {
    requirePrerequisite(this, existsSync(path.join(REPO, 'dist/core/main.js')), 'dist/ is not built (npm run build): install.sh copies the build');
  });
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'polygate-install-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('shellcheck finds nothing in either script', function () {
    requirePrerequisite(this, has('shellcheck'), 'shellcheck is not installed (apt-get install shellcheck)');
    const r = spawnSync('shellcheck', ['--severity=style', INSTALL, UNINSTALL], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).to.equal('');
    expect(r.status).to.equal(0);
  });

  it('lays out app, data, configuration, unit and CLI with their modes', () => {
    const out = install('--protocols', 'openvpn,wireguard,cisco,l2tp', '--port', '8443').stdout;
    expect(out).to.include('skipping system packages');
    const version = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8')).version as string;
    const current = path.join(root, 'opt/polygate/current');
    expect(lstatSync(current).isSymbolicLink()).to.equal(true);
    expect(readlinkSync(current)).to.match(new RegExp(`^releases/${version.replace(/\./g, '\\.')}-\\d{14}$`));
    for (const f of ['dist/core/main.js', 'dist/cli/main.js', 'package.json', 'package-lock.json', 'binding.gyp', 'native/src', 'docs/install.md']) {
      expect(existsSync(path.join(current, f)), f).to.equal(true);
    }
    expect(existsSync(path.join(current, 'test')), 'tests are not installed').to.equal(false);
    expect(existsSync(path.join(current, 'node_modules')), '--skip-npm').to.equal(false);

    expect(mode(path.join(root, 'etc/polygate'))).to.equal('700');
    expect(mode(path.join(root, 'etc/polygate/polygate.env'))).to.equal('600');
    expect(mode(path.join(root, 'var/lib/polygate'))).to.equal('700');
    expect(mode(path.join(root, 'etc/systemd/system/polygate.service'))).to.equal('644');
    expect(mode(path.join(root, 'usr/local/bin/polygate'))).to.equal('755');
    expect(mode(path.join(current, 'dist/core/main.js'))).to.match(/^6[04][04]$/);

    // The configuration written is one the daemon accepts, with the chosen protocols' plugins.
    const env = envFile(path.join(root, 'etc/polygate/polygate.env'));
    expect(env).to.include({ POLYGATE_DATA_DIR: '/var/lib/polygate', POLYGATE_PORT: '8443', POLYGATE_PLUGINS: 'openvpn,wireguard,ocserv,l2tp-ipsec' });
    const config = loadConfig(env);
    expect(config.plugins).to.deep.equal(['openvpn', 'wireguard', 'ocserv', 'l2tp-ipsec']);
    expect(config.dataDir).to.equal('/var/lib/polygate');

    const unit = readFileSync(path.join(root, 'etc/systemd/system/polygate.service'), 'utf8');
    expect(unit).to.include(`ExecStart=${NODE} /opt/polygate/current/dist/core/main.js`);
    expect(unit).to.include('EnvironmentFile=/etc/polygate/polygate.env');
    expect(unit).to.match(/^Restart=on-failure$/m);
    expect(readFileSync(path.join(root, 'usr/local/bin/polygate'), 'utf8')).to.include(`exec ${NODE} --env-file=/etc/polygate/polygate.env /opt/polygate/current/dist/cli/main.js "$@"`);
    expect(readFileSync(path.join(root, 'etc/modules-load.d/polygate.conf'), 'utf8').split('\n').filter((l) => l && !l.startsWith('#'))).to.deep.equal(['l2tp_ppp', 'ppp_generic', 'tun', 'wireguard']);
    expect(readFileSync(path.join(root, 'etc/sysctl.d/90-polygate.conf'), 'utf8')).to.match(/^net\.ipv4\.ip_forward = 1$/m);
  });

  it('the installed unit passes systemd-analyze verify (and a broken one would not)', function () {
    requirePrerequisite(this, has('systemd-analyze'), 'systemd-analyze is not installed (apt-get install systemd)');
    install('--protocols', 'openvpn');
    const unit = path.join(root, 'etc/systemd/system/polygate.service');
    // verify needs no running systemd; it checks the ExecStart binary (this Node) exists.
    const ok = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8', cwd: root });
    expect(ok.stdout + ok.stderr, 'systemd-analyze verify says nothing about the unit').to.equal('');
    expect(ok.status).to.equal(0);
    const broken = path.join(root, 'broken', 'polygate.service');
    mkdirSync(path.dirname(broken));
    writeFileSync(broken, readFileSync(unit, 'utf8').replace('ProtectHome=yes', 'ProtectHome=yse'));
    const bad = spawnSync('systemd-analyze', ['verify', broken], { encoding: 'utf8', cwd: root });
    expect(bad.stdout + bad.stderr, 'the same check on a unit with a bad value is not silent').to.match(/polygate\.service:\d+: Failed to parse protect home value/);
  });

  it('the installed release starts with the env file (node --env-file, as the CLI wrapper does) and stops on SIGTERM', async function () {
    this.timeout(30_000);
    install('--protocols', 'openvpn');
    const current = realpathSync(path.join(root, 'opt/polygate/current'));
    symlinkSync(path.join(REPO, 'node_modules'), path.join(current, 'node_modules'));
    const dataDir = path.join(root, 'var/lib/polygate');
    // The environment wins over --env-file: the daemon stays inside the temporary root, off the VPN daemons and the firewall.
    const child = spawn(NODE, [`--env-file=${path.join(root, 'etc/polygate/polygate.env')}`, path.join(current, 'dist/core/main.js')], {
      env: { PATH: process.env.PATH, POLYGATE_DATA_DIR: dataDir, POLYGATE_PORT: '0', POLYGATE_HOST: '127.0.0.1', POLYGATE_PLUGINS: 'none', POLYGATE_FIREWALL: 'off', POLYGATE_RESELLER_LISTENERS: 'off', POLYGATE_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no start within 20 s:\n${output}`)), 20_000);
        child.stdout.on('data', () => {
          const m = /polygate is running on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
          if (m) {
            clearTimeout(timer);
            resolve(m[1]!);
          }
        });
        child.on('exit', (code) => reject(new Error(`exited ${code}:\n${output}`)));
      });
      const status = await new Promise<number>((resolve, reject) => get(`${url}/healthz`, (res) => resolve(res.statusCode ?? 0)).on('error', reject));
      expect(status).to.equal(200);
      expect(mode(dataDir)).to.equal('700');
      expect(mode(path.join(dataDir, 'secret.key'))).to.equal('600');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, output).to.equal(0);
  });

  it('an upgrade keeps data and configuration, switches the release, and keeps the last three', () => {
    install('--protocols', 'openvpn', '--port', '8080');
    const envPath = path.join(root, 'etc/polygate/polygate.env');
    writeFileSync(envPath, `${readFileSync(envPath, 'utf8')}POLYGATE_PUBLIC_URL=https://panel.example.test\n`);
    const envBefore = readFileSync(envPath, 'utf8');
    const data = path.join(root, 'var/lib/polygate');
    writeFileSync(path.join(data, 'polygate.sqlite'), 'the database');
    writeFileSync(path.join(data, 'secret.key'), 'the key', { mode: 0o600 });
    const first = readlinkSync(path.join(root, 'opt/polygate/current'));

    const out = install('--protocols', 'openvpn,wireguard', '--port', '9999').stdout;
    expect(out).to.include('kept /etc/polygate/polygate.env');
    expect(readFileSync(envPath, 'utf8'), "the operator's configuration is untouched").to.equal(envBefore);
    expect(envFile(`${envPath}.dist`)).to.include({ POLYGATE_PORT: '9999', POLYGATE_PLUGINS: 'openvpn,wireguard' });
    expect(readFileSync(path.join(data, 'polygate.sqlite'), 'utf8')).to.equal('the database');
    expect(readFileSync(path.join(data, 'secret.key'), 'utf8')).to.equal('the key');
    const second = readlinkSync(path.join(root, 'opt/polygate/current'));
    expect(second).to.not.equal(first);
    expect(releases()).to.deep.equal([first, second].map((r) => path.basename(r)).sort());

    install();
    install();
    expect(releases()).to.have.length(3);
    expect(releases(), 'the oldest is dropped first').to.not.include(path.basename(first));
    expect(releases()).to.include(path.basename(readlinkSync(path.join(root, 'opt/polygate/current'))));
  });

  it('uninstall keeps data and configuration; --purge removes them; nothing else is touched', () => {
    install('--protocols', 'openvpn');
    writeFileSync(path.join(root, 'var/lib/polygate/polygate.sqlite'), 'the database');
    mkdirSync(path.join(root, 'etc/other'), { recursive: true });
    writeFileSync(path.join(root, 'etc/other/keep.conf'), 'not ours');

    const r = run(UNINSTALL, ['--root', root]);
    expect(r.status, r.stdout + r.stderr).to.equal(0);
    for (const gone of ['opt/polygate', 'etc/systemd/system/polygate.service', 'usr/local/bin/polygate', 'etc/modules-load.d/polygate.conf', 'etc/sysctl.d/90-polygate.conf']) {
      expect(existsSync(path.join(root, gone)), gone).to.equal(false);
    }
    expect(readFileSync(path.join(root, 'var/lib/polygate/polygate.sqlite'), 'utf8')).to.equal('the database');
    expect(existsSync(path.join(root, 'etc/polygate/polygate.env'))).to.equal(true);

    const purged = run(UNINSTALL, ['--root', root, '--purge']);
    expect(purged.status, purged.stdout + purged.stderr).to.equal(0);
    expect(existsSync(path.join(root, 'var/lib/polygate'))).to.equal(false);
    expect(existsSync(path.join(root, 'etc/polygate'))).to.equal(false);
    expect(readFileSync(path.join(root, 'etc/other/keep.conf'), 'utf8')).to.equal('not ours');
  });

  it('DESTDIR works as --root does, for both scripts', () => {
    const r = run(INSTALL, ['--skip-npm', '--node', NODE], { DESTDIR: root });
    expect(r.status, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.include(`installed under ${realpathSync(root)}`);
    expect(existsSync(path.join(root, 'opt/polygate/current/dist/core/main.js'))).to.equal(true);
    expect(existsSync(path.join(root, 'etc/systemd/system/polygate.service'))).to.equal(true);
    const u = run(UNINSTALL, [], { DESTDIR: root });
    expect(u.status, u.stdout + u.stderr).to.equal(0);
    expect(existsSync(path.join(root, 'opt/polygate'))).to.equal(false);
    expect(existsSync(path.join(root, 'etc/polygate/polygate.env'))).to.equal(true);
  });

  it('refuses what it cannot do, saying why, before writing anything', () => {
    for (const [args, message] of [
      [['--protocols', 'openvpn,pptp'], "unknown protocol 'pptp'"],
      [['--port', '70000'], '--port must be 1-65535'],
      [['--prefix', 'relative/dir'], '--prefix must be an absolute path'],
      [['--frobnicate'], 'unknown option: --frobnicate'],
    ] as const) {
      const r = run(INSTALL, ['--root', root, '--skip-npm', '--node', NODE, ...args]);
      expect(r.status, args.join(' ')).to.equal(1);
      expect(r.stderr).to.include(message);
    }
    const old = path.join(root, 'old-node');
    writeFileSync(old, '#!/bin/sh\necho 18.19.1\n', { mode: 0o755 });
    const r = run(INSTALL, ['--root', root, '--skip-npm', '--node', old]);
    expect(r.status).to.equal(1);
    expect(r.stderr).to.include('polygate needs Node.js >= 20.19').and.include('nodejs.org');
    expect(readdirSync(root).sort(), 'nothing was installed').to.deep.equal(['old-node']);
  });
});
