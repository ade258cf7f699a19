import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import type { ScriptedSession } from '../fakes/scripted-plugin';

/**
 * Crash safety, with a real process: a small daemon (test/fixtures/accounting-daemon.ts) is
 * SIGKILLed while a tick sits between poll and commit — once before its transaction opens,
 * once inside it with every statement already run — then restarted on the same database.
 * Totals must come out exact: nothing lost, nothing counted twice.
 */

const FIXTURE = path.join(__dirname, '..', 'fixtures', 'accounting-daemon.ts');
const START_TIMEOUT_MS = 60_000;
const REPLY_TIMEOUT_MS = 30_000;

interface Usage {
  users: Record<string, { up: number; down: number }>;
  resellers: Record<string, number>;
  daily: Record<string, { rx: number; tx: number }>;
}

class Daemon {
  private readonly waiters: Array<{ event: string; resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }> = [];
  private stderr = '';
  readonly exited: Promise<void>;

  private constructor(readonly child: ChildProcess) {
    child.stderr?.on('data', (d) => (this.stderr += String(d)));
    child.on('message', (m: Record<string, unknown>) => {
      if (m.event === 'error') {
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(new Error(String(m.message)));
        }
        return;
      }
      const i = this.waiters.findIndex((w) => w.event === m.event);
      if (i < 0) return;
      const [w] = this.waiters.splice(i, 1);
      clearTimeout(w!.timer);
      w!.resolve(m);
    });
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.exited.then(() => {
      for (const w of this.waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new Error(`daemon exited while waiting for '${w.event}'\n${this.stderr}`));
      }
    });
  }

  static async start(dir: string): Promise<Daemon> {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE], {
      cwd: path.resolve(__dirname, '..', '..'),
      env: {
        ...process.env,
        POLYGATE_DATABASE_URL: `sqlite:${path.join(dir, 'polygate.sqlite')}`,
        POLYGATE_TEST_SESSIONS_FILE: path.join(dir, 'sessions.json'),
        POLYGATE_LOG_LEVEL: 'silent',
      },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    const d = new Daemon(child);
    await d.wait('ready', START_TIMEOUT_MS);
    return d;
  }

  wait(event: string, timeoutMs = REPLY_TIMEOUT_MS): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no '${event}' from the daemon within ${timeoutMs} ms\n${this.stderr}`)), timeoutMs);
      this.waiters.push({ event, resolve, reject, timer });
    });
  }

  async request(message: Record<string, unknown>, reply: string): Promise<Record<string, unknown>> {
    const answer = this.wait(reply);
    this.child.send(message);
    return answer;
  }

  async tick(): Promise<void> {
    const m = await this.request({ cmd: 'tick' }, 'ticked');
    expect((m.report as { committed: boolean }).committed, 'tick committed').to.equal(true);
  }

  async usage(): Promise<Usage> {
    return (await this.request({ cmd: 'usage' }, 'usage')) as unknown as Usage;
  }

  /** Starts a tick that stops between poll and commit, then SIGKILLs the process there. */
  async crashBeforeCommit(stage: 'before-transaction' | 'inside-transaction'): Promise<void> {
    await this.request({ cmd: 'tick', pause: stage }, 'paused');
    this.kill();
    await bounded(this.exited, 10_000, 'the killed daemon to exit');
  }

  kill(): void {
    if (this.child.pid !== undefined && this.child.exitCode === null && this.child.signalCode === null) {
      process.kill(this.child.pid, 'SIGKILL');
    }
  }
}

function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

describe('accounting crash safety (SIGKILL between poll and commit)', function () {
  this.timeout(240_000);
  let dir: string;
  let daemon: Daemon | undefined;
  const sessions = (...list: ScriptedSession[]) => writeFileSync(path.join(dir, 'sessions.json'), JSON.stringify({ sessions: list }));

  beforeEach(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'polygate-crash-'));
  });
  afterEach(async () => {
    if (daemon) {
      daemon.kill();
      await bounded(daemon.exited, 10_000, 'the daemon to exit').catch(() => undefined);
      daemon = undefined;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('totals are exact after kills before and inside the commit, with live sessions and disconnect events in flight', async () => {
    sessions({ key: 'k1', username: 'alice', rx: 100, tx: 1000 }, { key: 'k2', username: 'bob', rx: 50, tx: 500 });
    daemon = await Daemon.start(dir);
    await daemon.tick();
    expect((await daemon.usage()).users).to.deep.include({ alice: { up: 100, down: 1000 }, bob: { up: 50, down: 500 } });

    // Counters grow, carol's short session ends (its event is durable), then the daemon dies
    // after polling, before committing.
    sessions({ key: 'k1', username: 'alice', rx: 300, tx: 3000 }, { key: 'k2', username: 'bob', rx: 80, tx: 800 });
    await daemon.request({ cmd: 'end', session: { key: 'k3', username: 'carol', rx: 70, tx: 700 } }, 'ended');
    await daemon.crashBeforeCommit('before-transaction');

    daemon = await Daemon.start(dir);
    let u = await daemon.usage();
    expect(u.users, 'nothing of the killed tick was committed').to.deep.equal({
      alice: { up: 100, down: 1000 },
      bob: { up: 50, down: 500 },
      carol: { up: 0, down: 0 },
    });
    sessions({ key: 'k1', username: 'alice', rx: 400, tx: 4000 }, { key: 'k2', username: 'bob', rx: 90, tx: 900 });
    await daemon.tick();
    await daemon.tick();
    u = await daemon.usage();
    expect(u.users, 'live sessions resume from the journal; the pending event is counted once').to.deep.equal({
      alice: { up: 400, down: 4000 },
      bob: { up: 90, down: 900 },
      carol: { up: 70, down: 700 },
    });

    // Second crash: inside the transaction, every statement already executed.
    sessions({ key: 'k1', username: 'alice', rx: 450, tx: 4500 });
    await daemon.request({ cmd: 'end', session: { key: 'k2', username: 'bob', rx: 95, tx: 950 } }, 'ended');
    await daemon.crashBeforeCommit('inside-transaction');

    daemon = await Daemon.start(dir);
    u = await daemon.usage();
    expect(u.users, 'the half-done transaction left no trace').to.deep.equal({
      alice: { up: 400, down: 4000 },
      bob: { up: 90, down: 900 },
      carol: { up: 70, down: 700 },
    });
    sessions({ key: 'k1', username: 'alice', rx: 500, tx: 5000 });
    await daemon.tick();
    await daemon.tick();
    u = await daemon.usage();
    expect(u.users).to.deep.equal({
      alice: { up: 500, down: 5000 },
      bob: { up: 95, down: 950 },
      carol: { up: 70, down: 700 },
    });
    expect(u.daily, 'the daily history matches the counters').to.deep.equal({
      alice: { rx: 500, tx: 5000 },
      bob: { rx: 95, tx: 950 },
      carol: { rx: 70, tx: 700 },
    });
    expect(u.resellers, "alice's reseller is charged exactly her bytes").to.deep.equal({ res1: 5500 });
  });
});
