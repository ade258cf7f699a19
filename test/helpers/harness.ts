import type { AddressInfo } from 'node:net';
import { Client } from 'pg';
import request from 'supertest';
import type { Express } from 'express';
import { bootstrapCore, type Core } from '../../core/bootstrap';
import { ManualClock } from '../../core/clock';
import { loadConfig } from '../../core/config';
import { createApp } from '../../api/server';
import { createCallerFactory } from '../../api/trpc';
import { appRouter } from '../../api/routers';
import { randomKey } from '../../core/secrets';
import { PORTS_TABLE_PROTOCOL, PROTOCOLS, type ProtocolId } from '../../core/protocols/table';
import { addScriptedPlugin, type ScriptedPlugin } from '../fakes/scripted-plugin';

export type DatabaseKind = 'sqlite' | 'postgres';

const createAppCaller = createCallerFactory(appRouter);
/** A typed tRPC caller of the whole router, without HTTP. */
export type AppCaller = ReturnType<typeof createAppCaller>;

/** PostgreSQL URL for tests; `.ci/run` starts a server and sets it. */
export const postgresTestUrl = process.env.POLYGATE_TEST_PG_URL;

/**
 * Runs `body` once per database the suite must prove itself on: SQLite always, PostgreSQL
 * when POLYGATE_TEST_PG_URL is set (CI sets it; elsewhere the skip is printed, not silent).
 */
export function forEachDatabase(body: (kind: DatabaseKind) => void): void {
  body('sqlite');
  if (postgresTestUrl) {
    body('postgres');
  } else if (!warnedNoPg) {
    warnedNoPg = true;
    console.log('  (PostgreSQL runs skipped: POLYGATE_TEST_PG_URL is not set; .ci/run sets it)');
  }
}
let warnedNoPg = false;

let databaseCounter = 0;

/** A fresh database per harness, so suites (and parallel runs) never see each other's rows. */
export async function createPostgresDatabase(url: string): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `polygate_t_${process.pid}_${++databaseCounter}`;
  const admin = async (sql: string) => {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  await admin(`DROP DATABASE IF EXISTS ${name}`);
  await admin(`CREATE DATABASE ${name}`);
  const u = new URL(url);
  u.pathname = `/${name}`;
  // FORCE cannot end a superuser's backend (an autovacuum worker after heavy writes) for a
  // non-superuser owner: that one ends by itself, so try again briefly.
  const drop = async () => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } catch (err) {
        if (attempt >= 20 || !/must be a member of the role whose process is being terminated|is being accessed by other users/.test((err as Error).message)) throw err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  };
  return { url: u.toString(), drop };
}

export interface Harness {
  core: Core;
  /**
   * Scripted stand-ins for every protocol's plugin on the main server (no daemon runs), so
   * the API shows what it shows when all four protocols run. The ports-table protocol's
   * renders client configs. Empty with `{ protocols: 'none' }`.
   */
  plugins: Partial<Record<ProtocolId, ScriptedPlugin>>;
  services: Core['services'];
  app: Express;
  http: ReturnType<typeof request>;
  adminKey: string;
  clock: ManualClock;
  /** tRPC caller with a given API key (no HTTP). */
  caller(apiKey: string | undefined): AppCaller;
  /** Serves the app on 127.0.0.1 (a kernel-chosen port) until close(); answers the base URL. */
  listen(): Promise<string>;
  close(): Promise<void>;
}

/** A fresh daemon core on an empty database, with the HTTP app (not listening) for supertest. */
export interface HarnessOptions {
  /** `scripted` (default): a scripted plugin per protocol on main; `none`: no plugin at all. */
  protocols?: 'scripted' | 'none';
  /**
   * Keep what a real daemon keeps in its data dir (the secret key sealing stored secrets, the
   * CA), so a second harness on the same POLYGATE_DATA_DIR and database file is the same panel
   * started again. Default: throwaway secrets.
   */
  persistent?: boolean;
}

export async function createHarness(kind: DatabaseKind = 'sqlite', env: Record<string, string> = {}, options: HarnessOptions = {}): Promise<Harness> {
  let databaseUrl = 'sqlite::memory:';
  let dropDatabase = async () => {};
  if (kind === 'postgres') {
    if (!postgresTestUrl) throw new Error('POLYGATE_TEST_PG_URL is not set');
    const created = await createPostgresDatabase(postgresTestUrl);
    databaseUrl = created.url;
    dropDatabase = created.drop;
  }
  const adminKey = randomKey(32);
  const config = loadConfig({
    POLYGATE_DATABASE_URL: databaseUrl,
    POLYGATE_ADMIN_API_KEY: adminKey,
    POLYGATE_PUBLIC_URL: 'http://panel.example.test:8080',
    POLYGATE_DATA_DIR: '/nonexistent-polygate-test',
    POLYGATE_FIREWALL: 'off',
    POLYGATE_RESELLER_LISTENERS: 'off',
    ...env,
  });
  const clock = new ManualClock(new Date('2026-06-01T12:00:00Z'));
  // A test that names a data dir finds the CA there, as a daemon keeps it.
  const core = await bootstrapCore(config, { clock, ephemeral: !options.persistent, pkiDir: env.POLYGATE_DATA_DIR ? `${env.POLYGATE_DATA_DIR}/pki` : undefined });
  const app = createApp(core.services);
  const plugins: Harness['plugins'] = {};
  if ((options.protocols ?? 'scripted') === 'scripted') {
    for (const spec of PROTOCOLS) {
      const clientConfig = spec.id === PORTS_TABLE_PROTOCOL.id ? { extension: 'ovpn', mediaType: 'application/x-openvpn-profile' } : undefined;
      plugins[spec.id] = await addScriptedPlugin(core.plugins, spec.id, 'main', { clientConfig });
    }
  }
  const servers: import('node:http').Server[] = [];
  return {
    core,
    plugins,
    services: core.services,
    app,
    http: request(app),
    adminKey,
    clock,
    caller: (apiKey) => createAppCaller({ services: core.services, apiKey }),
    listen: async () => {
      const server = app.listen(0, '127.0.0.1');
      servers.push(server);
      await new Promise((resolve, reject) => server.once('listening', resolve).once('error', reject));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    close: async () => {
      for (const server of servers.splice(0)) {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
      await core.close();
      await dropDatabase();
    },
  };
}
