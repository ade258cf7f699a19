import { expect } from 'chai';
import { readdirSync } from 'node:fs';
import { LocalHost } from '../../core/hosts/local-host';
import type { Host, RunOptions, RunResult } from '../../core/hosts/host';
import { checkNodeRoot, DEFAULT_NODE_ROOT } from '../../core/nodes/layout';
import { ensurePackages } from '../../core/nodes/packages';

/*
 * What provisioning installs on a node: only the packages whose programs are missing, looked
 * up for real on this machine (LocalHost). apt-get itself is intercepted and recorded, never
 * run: tests must not install anything.
 */

/** This machine, except that apt-get is answered here (code `aptCode`) and recorded. */
function recordingHost(aptCode = 0): Host & { apt: Array<{ argv: readonly string[]; env?: Record<string, string> }> } {
  const real = new LocalHost({ id: 'node_test' });
  const apt: Array<{ argv: readonly string[]; env?: Record<string, string> }> = [];
  return Object.assign(Object.create(real) as Host, {
    id: 'node_test',
    apt,
    run: (argv: readonly string[], options?: RunOptions): Promise<RunResult> => {
      if (argv[0] === 'apt-get') {
        apt.push({ argv, env: options?.env });
        return Promise.resolve({ code: aptCode, stdout: '', stderr: aptCode ? 'E: Unable to locate package' : '' });
      }
      return real.run(argv, options);
    },
  });
}

describe('node packages (real lookups on this machine, apt-get recorded, never run)', () => {
  it('everything present: no apt-get at all, and the packages are named as present', async () => {
    const host = recordingHost();
    const out = await ensurePackages(host, [
      { program: 'sh', debianPackages: ['dash'] },
      { program: '/bin/sh', debianPackages: ['dash'] },
    ]);
    expect(out).to.deep.equal({ present: ['dash'], installed: [] });
    expect(host.apt).to.deep.equal([]);
  });

  it('a missing program: update, then install of exactly its package, non-interactive and without recommends', async () => {
    const host = recordingHost();
    const out = await ensurePackages(host, [
      { program: 'sh', debianPackages: ['dash'] },
      { program: 'polygate-no-such-program', debianPackages: ['polygate-fake-a'] },
      { program: '/nonexistent/polygate-daemon', debianPackages: ['polygate-fake-b'] },
    ]);
    expect(out).to.deep.equal({ present: ['dash'], installed: ['polygate-fake-a', 'polygate-fake-b'] });
    expect(host.apt.map((c) => c.argv)).to.deep.equal([
      ['apt-get', 'update'],
      ['apt-get', 'install', '-y', '--no-install-recommends', 'polygate-fake-a', 'polygate-fake-b'],
    ]);
    expect(host.apt.every((c) => c.env?.DEBIAN_FRONTEND === 'noninteractive')).to.equal(true);
  });

  it('a program name is never read by the shell as code', async () => {
    const host = recordingHost();
    const out = await ensurePackages(host, [{ program: '$(touch /tmp/polygate-pwned-$$)', debianPackages: ['x'] }]);
    expect(out.installed).to.deep.equal(['x']);
    expect(readdirSync('/tmp').filter((f) => f.startsWith('polygate-pwned-'))).to.deep.equal([]);
  });

  it('apt-get failing is an error naming it (provisioning then stops with that reason)', async () => {
    const host = recordingHost(100);
    let error: Error | undefined;
    await ensurePackages(host, [{ program: 'polygate-no-such-program', debianPackages: ['polygate-fake-a'] }]).catch((e: Error) => (error = e));
    expect(error?.message).to.match(/^apt-get exited with code 100 on node_test: E: Unable to locate package/);
  });

  it('the node root: absolute, two levels at least, plain characters, short enough for unix sockets', () => {
    expect(checkNodeRoot(DEFAULT_NODE_ROOT)).to.equal('/var/lib/polygate-node');
    expect(checkNodeRoot('/tmp/pg-lab-abc/node1/')).to.equal('/tmp/pg-lab-abc/node1');
    for (const bad of ['/', '/opt', 'relative/dir', '/var/../etc', '/var/lib/a b', '/var/lib/$(id)', `/var/${'x'.repeat(80)}`]) {
      expect(() => checkNodeRoot(bad), bad).to.throw(/POLYGATE_NODE_ROOT/);
    }
  });
});
