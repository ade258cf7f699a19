import { expect } from 'chai';
import type { HostProcess, HostProcessExit, SpawnOptions } from '../../core/hosts/host';
import { UnusedHost } from '../fakes/unused-host';
import { until } from '../helpers/vpn-lab';
import { ProcessSupervisor, type SupervisedExit } from '../../core';

/*
 * The process supervisor with a fake host (no processes). Proves: it restarts a program that
 * exits, with doubling delays capped at the maximum, reset after a stable run; each exit is
 * reported with code/signal and the last output lines; stop() sends SIGTERM, escalates to
 * SIGKILL after its timeout, and never restarts afterwards; a failing beforeStart counts as
 * a failed start.
 */

class FakeProcess implements HostProcess {
  readonly signals: string[] = [];
  private resolveExit!: (e: HostProcessExit) => void;
  readonly exited = new Promise<HostProcessExit>((r) => {
    this.resolveExit = r;
  });
  constructor(
    readonly pid: number,
    readonly onOutput: ((chunk: string) => void) | undefined,
    /** Exits on these signals (others are ignored, like a stuck daemon). */
    private readonly obeys: string[],
  ) {}
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.signals.push(signal);
    if (this.obeys.includes(signal)) this.exit(null, signal);
  }
  exit(code: number | null, signal: string | null = null): void {
    this.resolveExit({ code, signal });
  }
}

class SpawnHost extends UnusedHost {
  override readonly id = 'fake';
  readonly procs: FakeProcess[] = [];
  readonly spawnTimes: number[] = [];
  obeys: string[] = ['SIGTERM', 'SIGKILL'];
  override spawn(argv: readonly string[], options?: SpawnOptions): HostProcess {
    expect(argv).to.deep.equal(['openvpn', '--config', '/etc/x.conf']);
    const p = new FakeProcess(1000 + this.procs.length, options?.onOutput, this.obeys);
    this.procs.push(p);
    this.spawnTimes.push(Date.now());
    return p;
  }
}

describe('kit: process supervisor (fake host)', () => {
  const argv = ['openvpn', '--config', '/etc/x.conf'];

  it('restarts after each exit with doubling, capped delays and reports code, signal and output tail', async () => {
    const host = new SpawnHost();
    const sup = new ProcessSupervisor({ host, argv, name: 'test', initialBackoffMs: 40, maxBackoffMs: 100, stableAfterMs: 10_000, tailLines: 3 });
    const exits: SupervisedExit[] = [];
    sup.on('exit', (e) => exits.push(e));
    sup.start();
    try {
      await until(() => host.procs.length === 1, 'first spawn', 3000, 5);
      expect(sup.pid).to.equal(1000);
      host.procs[0]!.onOutput!('line 1\nline 2\nline 3\nOptions error: --dev ');
      host.procs[0]!.onOutput!('pgtun0 busy\n');
      host.procs[0]!.exit(1);
      for (let i = 1; i <= 4; i++) {
        await until(() => host.procs.length === i + 1, `restart ${i}`, 3000, 5);
        if (i < 4) host.procs[i]!.exit(null, 'SIGKILL');
      }
      const gaps = host.spawnTimes.slice(1).map((t, i) => t - host.spawnTimes[i]!);
      // 40, 80, 100 (cap), 100: each at least the scheduled delay.
      // Uncapped, the last two would be 160 and 320 ms.
      expect(gaps[0]).to.be.within(35, 250);
      expect(gaps[1]).to.be.within(75, 250);
      expect(gaps[2]).to.be.within(95, 250);
      expect(gaps[3]).to.be.within(95, 250);
      expect(exits[0]).to.include({ code: 1, signal: null, pid: 1000, requested: false });
      expect(exits[0]!.tail).to.deep.equal(['line 2', 'line 3', 'Options error: --dev pgtun0 busy']);
      expect(exits[1]).to.include({ code: null, signal: 'SIGKILL', requested: false });
      expect(sup.restarts).to.equal(4);
    } finally {
      await sup.stop();
    }
  });

  it('a run that lasted stableAfterMs resets the backoff', async () => {
    const host = new SpawnHost();
    const sup = new ProcessSupervisor({ host, argv, name: 'test', initialBackoffMs: 50, maxBackoffMs: 1000, stableAfterMs: 150 });
    sup.start();
    try {
      await until(() => host.procs.length === 1, 'spawn', 3000, 5);
      host.procs[0]!.exit(1);
      await until(() => host.procs.length === 2, 'restart 1', 3000, 5);
      host.procs[1]!.exit(1); // quick failure: next delay doubles (100), then 200
      await until(() => host.procs.length === 3, 'restart 2', 3000, 5);
      await new Promise((r) => setTimeout(r, 200)); // stable now
      const before = Date.now();
      host.procs[2]!.exit(1);
      await until(() => host.procs.length === 4, 'restart 3', 3000, 5);
      expect(Date.now() - before).to.be.lessThan(150); // back to 50 ms, not 200
    } finally {
      await sup.stop();
    }
  });

  it('stop() sends SIGTERM, escalates to SIGKILL after its timeout, and never restarts', async () => {
    const host = new SpawnHost();
    host.obeys = ['SIGKILL']; // a stuck daemon
    const sup = new ProcessSupervisor({ host, argv, name: 'test', initialBackoffMs: 10, stopTimeoutMs: 100 });
    const exits: SupervisedExit[] = [];
    sup.on('exit', (e) => exits.push(e));
    sup.start();
    await until(() => host.procs.length === 1, 'spawn', 3000, 5);
    const started = Date.now();
    await sup.stop();
    expect(Date.now() - started).to.be.within(90, 1500);
    expect(host.procs[0]!.signals).to.deep.equal(['SIGTERM', 'SIGKILL']);
    expect(exits).to.have.length(1);
    expect(exits[0]).to.include({ requested: true, signal: 'SIGKILL' });
    await new Promise((r) => setTimeout(r, 60));
    expect(host.procs).to.have.length(1);
    expect(sup.isRunning).to.equal(false);
  });

  it('a failing beforeStart is retried with backoff and the program starts once it succeeds', async () => {
    const host = new SpawnHost();
    let calls = 0;
    const sup = new ProcessSupervisor({
      host,
      argv,
      name: 'test',
      initialBackoffMs: 10,
      beforeStart: async () => {
        if (++calls < 3) throw new Error('config not writable');
      },
    });
    sup.start();
    try {
      await until(() => host.procs.length === 1, 'spawn after two failed preparations', 3000, 5);
      expect(calls).to.equal(3);
    } finally {
      await sup.stop();
    }
  });
});
