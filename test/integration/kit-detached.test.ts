import { expect } from 'chai';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LocalHost } from '../../core/hosts/local-host';
import { ProcessSupervisor, type SupervisedExit } from '../../core';
import { until } from '../helpers/vpn-lab';

/*
 * Detached daemons on a real host (this machine): a supervised program outlives its supervisor
 * (the panel going away), a new supervisor adopts it with the same pid and epoch instead of
 * starting another, a pid that now names another program is not adopted, a daemon that dies is
 * restarted with a new epoch, and stop() ends it with its exit status read from the keeper.
 */

const alive = (pid: number) => fs.readFile(`/proc/${pid}/stat`, 'utf8').then((s) => !/\) Z /.test(s), () => false);

describe('kit: detached daemons (real processes)', function () {
  this.timeout(60_000);
  const host = new LocalHost();
  let dir: string;
  const started: number[] = [];

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'polygate-detached-'));
  });
  afterEach(async () => {
    for (const pid of started.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await fs.rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  });

  const supervisor = (argv: string[]) =>
    new ProcessSupervisor({
      host,
      argv,
      name: 'sleeper',
      initialBackoffMs: 50,
      stopTimeoutMs: 3_000,
      detached: { pidFile: path.join(dir, 'sleeper.pid'), logFile: path.join(dir, 'sleeper.log') },
    });

  it('outlives detach(), is adopted by the next supervisor with the same epoch, and stop() ends it', async () => {
    const argv = ['sh', '-c', 'echo ready; while :; do sleep 1; done', 'sleeper'];
    const first = supervisor(argv);
    const runs: Array<{ adopted: boolean; epoch: string | undefined }> = [];
    first.on('spawn', (_pid, run) => runs.push(run));
    first.start();
    await until(() => first.isRunning, 'first run', 10_000, 20);
    const pid = first.pid!;
    started.push(pid);
    const epoch = first.epoch;
    expect(epoch).to.match(/^\d+\.\d+$/);
    expect(runs).to.deep.equal([{ adopted: false, epoch }]);
    await first.detach();
    await new Promise((r) => setTimeout(r, 300));
    expect(await alive(pid), 'the daemon survives its supervisor').to.equal(true);

    const second = supervisor(argv);
    const exits: SupervisedExit[] = [];
    second.on('exit', (e) => exits.push(e));
    second.start();
    await until(() => second.isRunning, 'adoption', 10_000, 20);
    expect(second.pid).to.equal(pid);
    expect(second.epoch).to.equal(epoch);
    expect(second.adopted).to.equal(true);

    await second.stop();
    expect(await alive(pid)).to.equal(false);
    expect(exits).to.have.length(1);
    expect(exits[0]!.requested).to.equal(true);
    expect(exits[0]!.signal).to.equal('SIGTERM');
    expect(exits[0]!.tail).to.include('ready');
  });

  it('a daemon that dies is restarted with a new epoch; a recorded pid running another program is not adopted', async () => {
    const argv = ['sleep', '601'];
    const sup = supervisor(argv);
    sup.start();
    await until(() => sup.isRunning, 'first run', 10_000, 20);
    const firstPid = sup.pid!;
    const firstEpoch = sup.epoch;
    started.push(firstPid);
    process.kill(firstPid, 'SIGKILL');
    await until(() => sup.isRunning && sup.pid !== firstPid, 'restart', 15_000, 20);
    started.push(sup.pid!);
    expect(sup.epoch).to.not.equal(firstEpoch);
    expect(sup.restarts).to.equal(1);
    expect(sup.lastExit?.signal).to.equal('SIGKILL');
    await sup.detach();

    // The pid file now names a process with other arguments: it must be started, not adopted.
    const other = supervisor(['sleep', '602']);
    other.start();
    await until(() => other.isRunning, 'fresh start', 10_000, 20);
    started.push(other.pid!);
    expect(other.adopted).to.equal(false);
    expect(other.pid).to.not.equal(sup.pid);
    await other.stop();
  });
});
