import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import { bootstrapCore } from '../../core/bootstrap';
import { ConfigError, loadConfig } from '../../core/config';
import { randomKey } from '../../core/secrets';
import { PORTS_TABLE_PROTOCOL, PROTOCOLS } from '../../core/protocols/table';
import { createHarness } from '../helpers/harness';

const ROOT = path.resolve(__dirname, '..', '..');
const START_TIMEOUT_MS = 45_000;

interface Spawned {
  /** Resolves with the panel URL once the daemon says it runs; rejects if it exits first. */
  running: Promise<string>;
  exited: Promise<number | null>;
  output(): string;
  stop(): Promise<void>;
}

/** The real daemon (`core/main.ts`, as `npm start` runs it) on a temp data dir. */
function spawnDaemon(env: Record<string, string>): Spawned {
  const child = spawn(process.execPath, ['--import', 'tsx', 'core/main.ts'], {
    cwd: ROOT,
    env: {
      ...process.env,
      POLYGATE_HOST: '127.0.0.1',
      POLYGATE_FIREWALL: 'off',
      POLYGATE_RESELLER_LISTENERS: 'off',
      POLYGATE_LOG_LEVEL: 'warn',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const running = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`daemon did not start within ${START_TIMEOUT_MS} ms:\n${out}`)), START_TIMEOUT_MS);
    child.stdout.on('data', () => {
      const m = /polygate is running on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited with ${code}:\n${out}`));
    });
  });
  running.catch(() => {});
  return {
    running,
    exited,
    output: () => out,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

describe('start-up of the real daemon: a used port, POLYGATE_PLUGINS=, per-protocol ports', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  const tempDir = () => {
    const d = mkdtempSync(path.join(os.tmpdir(), 'polygate-startup-'));
    dirs.push(d);
    return d;
  };
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  describe('two daemons', () => {
    const adminKey = randomKey(32);
    let first: Spawned;
    let url: string;
    before(async () => {
      first = spawnDaemon({ POLYGATE_DATA_DIR: tempDir(), POLYGATE_PORT: '0', POLYGATE_ADMIN_API_KEY: adminKey, POLYGATE_PLUGINS: '' });
      url = await first.running;
    });
    after(() => first?.stop());

    const api = async (p: string, init: RequestInit = {}) => {
      const res = await fetch(`${url}/api/v1${p}`, { ...init, headers: { 'X-API-KEY': adminKey, 'Content-Type': 'application/json' } });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };

    it('POLYGATE_PLUGINS= (set, empty) loads no protocol plugin: health lists none, a user is offered no server', async () => {
      const health = await api('/health');
      expect(health.status).to.equal(200);
      const components = Object.keys(health.body.components as object);
      expect(components, 'the daemon is up and reports its parts').to.include('accounting');
      expect(components.filter((c) => c.startsWith('plugin:'))).to.deep.equal([]);
      const body: Record<string, unknown> = { username: 'nobody1', data_limit: 5 };
      for (const p of PROTOCOLS) body[p.api.enable] = true;
      const created = await api('/users', { method: 'POST', body: JSON.stringify(body) });
      expect(created.status, JSON.stringify(created.body)).to.equal(200);
      const detail = await api('/users/nobody1');
      expect(detail.status).to.equal(200);
      for (const p of PROTOCOLS) expect(detail.body[p.api.servers], p.api.servers).to.deep.equal([]);
    });

    it('a second daemon on the same port exits non-zero, naming POLYGATE_PORT and the port', async () => {
      const port = new URL(url).port;
      const second = spawnDaemon({ POLYGATE_DATA_DIR: tempDir(), POLYGATE_PORT: port, POLYGATE_ADMIN_API_KEY: randomKey(32), POLYGATE_PLUGINS: '' });
      const code = await Promise.race([second.exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), START_TIMEOUT_MS))]);
      if (code === 'timeout') await second.stop();
      expect(code, second.output()).to.be.a('number').and.not.equal(0);
      const out = second.output();
      expect(out).to.include('POLYGATE_PORT');
      expect(out).to.include(`port ${port} is already in use`);
      expect(out).not.to.include('Cannot read properties');
      expect(out, 'it stops before it reports running').not.to.include('polygate is running');
      // The first one is unharmed.
      expect((await api('/health')).status).to.equal(200);
    });
  });

  describe('configuration', () => {
    it('POLYGATE_PLUGINS: unset → the default plugin; empty or none → no plugin; a list → that list', () => {
      expect(loadConfig({}).plugins).to.deep.equal([PROTOCOLS[0]!.pluginName]);
      expect(loadConfig({ POLYGATE_PLUGINS: '' }).plugins).to.deep.equal([]);
      expect(loadConfig({ POLYGATE_PLUGINS: 'none' }).plugins).to.deep.equal([]);
      expect(loadConfig({ POLYGATE_PLUGINS: ' NONE ' }).plugins).to.deep.equal([]);
      expect(loadConfig({ POLYGATE_PLUGINS: 'wireguard, ocserv' }).plugins).to.deep.equal(['wireguard', 'ocserv']);
    });

    it('every protocol of the table has a POLYGATE_<PROTOCOL>_PORT setting, and a bad value names it', () => {
      for (const p of PROTOCOLS) {
        const name = `POLYGATE_${p.id.toUpperCase()}_PORT`;
        expect(() => loadConfig({ [name]: '70000' }), name).to.throw(ConfigError, name);
        expect(() => loadConfig({ [name]: 'abc' }), name).to.throw(ConfigError, name);
        expect(() => loadConfig({ [name]: '4000' }), name).not.to.throw();
      }
    });

    it('a default-ports protocol listens on its configured port (every transport of the shown port moves; other ports stay)', async () => {
      const env: Record<string, string> = {};
      PROTOCOLS.forEach((p, i) => (env[`POLYGATE_${p.id.toUpperCase()}_PORT`] = String(41000 + i)));
      const h = await createHarness('sqlite', env, { protocols: 'none' });
      try {
        const endpoints = await h.services.servers.endpoints();
        for (const [i, p] of PROTOCOLS.entries()) {
          const listeners = await h.services.servers.listenersOf(p.id, 'main');
          const shown = p.defaultPorts[0]!.port;
          const expected = p.defaultPorts.map((d) => ({ port: d.port === shown ? 41000 + i : d.port, protocol: d.protocol }));
          expect(listeners, p.id).to.deep.equal(expected);
          expect(endpoints.find((e) => e.protocol === p.id && e.serverId === 'main' && e.isDefault)?.port, p.id).to.equal(41000 + i);
        }
        const ports = await h.http.get('/api/v1/public/ports').set('X-API-KEY', h.adminKey);
        expect(ports.status).to.equal(200);
        const idx = PROTOCOLS.indexOf(PORTS_TABLE_PROTOCOL);
        expect(ports.body.default_ports.map((d: { public_port: number }) => d.public_port)).to.include(41000 + idx);
      } finally {
        await h.close();
      }
    });

    it('the ports-table protocol: the configured port replaces the stored one at start (its claim moves), unset keeps it', async () => {
      const dir = tempDir();
      const name = `POLYGATE_${PORTS_TABLE_PROTOCOL.id.toUpperCase()}_PORT`;
      const base = { POLYGATE_DATA_DIR: dir, POLYGATE_ADMIN_API_KEY: randomKey(32), POLYGATE_FIREWALL: 'off', POLYGATE_RESELLER_LISTENERS: 'off' };
      const claimsAfterStart = async (env: Record<string, string>) => {
        const core = await bootstrapCore(loadConfig({ ...base, ...env }));
        try {
          const claims = await core.services.portRegistry.list();
          const listener = await core.services.servers.mainDefaultListener();
          return { listener: listener.port, claimed: claims.filter((c) => c.owner === PORTS_TABLE_PROTOCOL.id && c.server === 'main').map((c) => c.port) };
        } finally {
          await core.close();
        }
      };
      const table = PORTS_TABLE_PROTOCOL.defaultPorts[0]!.port;
      expect(await claimsAfterStart({})).to.deep.equal({ listener: table, claimed: [table] });
      expect(await claimsAfterStart({ [name]: '11940' })).to.deep.equal({ listener: 11940, claimed: [11940] });
      expect(await claimsAfterStart({})).to.deep.equal({ listener: 11940, claimed: [11940] });
    });
  });
});
