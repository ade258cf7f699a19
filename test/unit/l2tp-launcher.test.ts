import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { renderCharonLauncher, runIdOfEpoch, RUN_ID_RE } from '../../plugins/l2tp-ipsec/render';

/**
 * What makes charon adoptable: the launcher execs it in place (the keeper's pid is the
 * daemon's) with the launcher's own path as argv[0] (what adoption compares) and the
 * configuration in STRONGSWAN_CONF; and the run id in keys comes from the daemon's epoch.
 */
describe('l2tp-ipsec charon launcher and run id', () => {
  it('execs the program in place under the launcher\'s path with STRONGSWAN_CONF set (no private /run: that needs root)', async () => {
    const dir = path.join(tmpdir(), `pg-l2l-${randomBytes(3).toString('hex')}`);
    await fs.mkdir(dir);
    const launcher = path.join(dir, 'charon-launch');
    // tail without arguments waits on stdin: a stand-in for a daemon that stays up.
    await fs.writeFile(launcher, renderCharonLauncher({ charonPath: '/usr/bin/tail', strongswanConf: `${dir}/strongswan.conf`, privateRun: false }), { mode: 0o755 });
    const child = spawn(launcher, [], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      let cmdline = '';
      for (let i = 0; i < 50 && !cmdline.startsWith(launcher); i++) {
        await new Promise((r) => setTimeout(r, 20));
        cmdline = await fs.readFile(`/proc/${child.pid}/cmdline`, 'utf8').catch(() => '');
      }
      expect(cmdline.split('\0').filter(Boolean)).to.deep.equal([launcher]);
      expect(await fs.readlink(`/proc/${child.pid}/exe`), 'the same pid is the program').to.match(/tail$/);
      expect((await fs.readFile(`/proc/${child.pid}/environ`, 'utf8')).split('\0')).to.include(`STRONGSWAN_CONF=${dir}/strongswan.conf`);
    } finally {
      child.kill('SIGKILL');
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('enters a private mount namespace with its own /run when asked, and refuses paths that could be shell syntax', () => {
    const text = renderCharonLauncher({ charonPath: '/usr/lib/ipsec/charon', strongswanConf: '/var/lib/polygate/l2tp/strongswan.conf', privateRun: true });
    expect(text).to.match(/^#!\/bin\/bash\n/);
    expect(text).to.include("exec unshare --mount --propagation private -- /bin/bash -c 'mount -t tmpfs -o mode=0755 tmpfs /run && exec -a \"$0\" \"$1\"' \"$0\" '/usr/lib/ipsec/charon'");
    for (const bad of ["/usr/lib/ipsec/charon'; rm -rf /", 'charon', '/a b/charon', '/a/$(id)']) {
      expect(() => renderCharonLauncher({ charonPath: bad, strongswanConf: '/x/strongswan.conf', privateRun: true }), bad).to.throw(/charonPath/);
    }
  });

  it('names a run after its epoch: the same epoch gives the same id, a valid run id in keys and record names', () => {
    expect(runIdOfEpoch('4242.987654')).to.equal('e4242s987654');
    expect(RUN_ID_RE.test(runIdOfEpoch('1.1'))).to.equal(true);
    expect(RUN_ID_RE.test(runIdOfEpoch('4194304.18446744073709551615'))).to.equal(true);
    for (const bad of ['', '12', '1.2.3', 'a.1', '1.-2']) expect(() => runIdOfEpoch(bad), bad).to.throw(/epoch/);
  });
});
