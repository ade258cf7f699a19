import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';

/*
 * Issue 12, finding 5 (first half): the tRPC client type-checked only with esModuleInterop and
 * @types/node, because no declarations were built and a consumer compiled the server's
 * sources. This builds the package with the repo's own tsconfig.json (into a temp dir, so the
 * shared dist/ is untouched), makes it an installed package by name (a node_modules symlink,
 * as `npm install ../polygate` makes), and type-checks a consumer with `tsc --init`'s strict
 * defaults (ESM, nodenext, verbatimModuleSyntax, exactOptionalPropertyTypes, `types: []`, so
 * no @types/node and no esModuleInterop tweak). Wrong inputs must be compile errors, so a
 * client whose types collapsed to `any` fails too.
 */

const run = promisify(execFile);
const REPO = path.resolve(__dirname, '..', '..');
const TSC = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');

const CONSUMER = `import { createPolygateClient, type AppRouter } from 'polygate/client';

const panel = createPolygateClient({ url: 'http://127.0.0.1:8080', apiKey: 'key' });
export type Router = AppRouter;

export async function demo(): Promise<number> {
  const created = await panel.users.create.mutate({ username: 'alice', data_limit: 5, data_limit_unit: 'GB' });
  const names: string[] = created.created_users;
  const alice = await panel.users.get.query({ username: names[0] ?? 'alice' });
  const status: 'active' | 'disabled' | 'limited' | 'expired' | 'on_hold' = alice.status;
  void status;
  const nodes = await panel.nodes.list.query();
  void nodes.nodes.length;
  // @ts-expect-error max_clients is a number
  await panel.users.create.mutate({ username: 'bob', max_clients: 'two' });
  // @ts-expect-error no such procedure
  await panel.users.rename.mutate({ username: 'bob' });
  // @ts-expect-error the output has no such field
  void alice.password_hash;
  return alice.max_clients;
}
`;

describe('the typed client in a fresh consumer project (default strict tsconfig, no extra @types)', function () {
  this.timeout(240_000);
  let tmp: string;

  before(() => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'polygate-consumer-'));
  });
  after(() => {
    if (tmp && !process.env.POLYGATE_KEEP_TMP) rmSync(tmp, { recursive: true, force: true });
  });

  it('package.json exposes ./client with types, and the build emits its declarations', () => {
    const pkg = JSON.parse(readFileSync(path.join(REPO, 'package.json'), 'utf8'));
    const entry = pkg.exports?.['./client'];
    expect(entry, 'package.json exports["./client"]').to.be.an('object');
    expect(entry.types).to.match(/^\.\/dist\/api\/client\.d\.ts$/);
    expect(entry.default).to.match(/^\.\/dist\/api\/client\.js$/);
    const tsconfig = readFileSync(path.join(REPO, 'tsconfig.json'), 'utf8');
    expect(tsconfig, 'tsconfig.json builds declarations').to.match(/"declaration":\s*true/);
  });

  it('type-checks `import { createPolygateClient } from "polygate/client"` with tsc --init defaults; wrong inputs are errors', async () => {
    // The package as installed: the repo's package.json, a dist built by the repo's tsconfig, its dependencies.
    const pkgDir = path.join(tmp, 'polygate');
    mkdirSync(pkgDir);
    writeFileSync(path.join(pkgDir, 'package.json'), readFileSync(path.join(REPO, 'package.json')));
    symlinkSync(path.join(REPO, 'node_modules'), path.join(pkgDir, 'node_modules'), 'dir');
    const build = await run(process.execPath, [TSC, '-p', path.join(REPO, 'tsconfig.json'), '--outDir', path.join(pkgDir, 'dist'), '--tsBuildInfoFile', path.join(tmp, 'build.tsbuildinfo')], { cwd: REPO }).then(
      () => '',
      // Work in progress elsewhere in the tree may not compile; tsc still emits, and what matters here is the client.
      (e: { stdout?: string }) => e.stdout ?? '',
    );
    const clientErrors = build.split('\n').filter((l) => /^api\/(client|routers|trpc|context)/.test(l));
    expect(clientErrors, 'build errors in the client or routers').to.deep.equal([]);
    expect(existsSync(path.join(pkgDir, 'dist', 'api', 'client.d.ts')), 'dist/api/client.d.ts').to.equal(true);

    const consumer = path.join(tmp, 'consumer');
    mkdirSync(path.join(consumer, 'node_modules'), { recursive: true });
    symlinkSync(pkgDir, path.join(consumer, 'node_modules', 'polygate'), 'dir');
    writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    writeFileSync(path.join(consumer, 'index.ts'), CONSUMER);
    await run(process.execPath, [TSC, '--init'], { cwd: consumer });
    const config = readFileSync(path.join(consumer, 'tsconfig.json'), 'utf8');
    expect(config, 'tsc --init defaults: strict, no @types').to.match(/"strict": true/).and.match(/"types": \[\]/);
    expect(config).to.not.match(/^\s*"esModuleInterop"/m);

    const check = await run(process.execPath, [TSC, '-p', consumer, '--noEmit'], { cwd: consumer }).then(
      () => ({ code: 0, out: '' }),
      (e: { code?: number; stdout?: string }) => ({ code: e.code ?? 1, out: e.stdout ?? '' }),
    );
    expect(check.out.trim(), 'tsc output for the consumer').to.equal('');
    expect(check.code).to.equal(0);
  });
});
