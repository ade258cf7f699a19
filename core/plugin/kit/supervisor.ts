import { EventEmitter } from 'node:events';
import { z } from 'zod';
import type { Host, HostProcess, HostProcessExit } from '../../hosts/host';
import type { Logger } from '../../logger';
import { adoptDetached, startDetached, type DetachedFiles, type DetachedProcess } from './detached';

/** How one run of the supervised program ended. */
export interface SupervisedExit extends HostProcessExit {
  pid: number | undefined;
  /** How long it ran, ms. */
  uptimeMs: number;
  /** The last lines it printed (stdout + stderr), for the log and /health. */
  tail: string[];
  /** True when it ended because stop() asked it to. */
  requested: boolean;
}

export interface SupervisorEvents {
  /** A run began: started now, or (`adopted`) found running from before and taken over. */
  spawn: [pid: number | undefined, run: { adopted: boolean; epoch: string | undefined }];
  /** A run ended (requested or not); a restart is scheduled unless stop() was called. */
  exit: [SupervisedExit];
  /** One line the program printed (stdout or stderr). */
  output: [line: string];
}

export interface ProcessSupervisorOptions {
  host: Host;
  /** Program and arguments, e.g. `['openvpn', '--config', '/…/server-1194udp.conf']`. */
  argv: readonly string[];
  /** For logs, e.g. `openvpn 1194/udp`. */
  name: string;
  logger?: Logger;
  /** Runs before every start (write the config, remove a stale socket…); a failure counts as a failed start. */
  beforeStart?: () => Promise<void>;
  /** First restart delay; doubles after each quick failure, capped at `maxBackoffMs`. Defaults 1 s and 30 s. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A run that lasted this long resets the backoff. Default 60 s. */
  stableAfterMs?: number;
  /** stop(): SIGTERM, then SIGKILL after this long. Default 10 s. */
  stopTimeoutMs?: number;
  /** Output lines kept for the exit report. Default 20. */
  tailLines?: number;
  /**
   * Run the program detached: its host keeps it (a small keeper script is its parent, its pid
   * and output go to these files), so neither a panel restart nor a lost SSH channel stops it.
   * start() then adopts a live run of the same argv instead of starting a second one, and
   * detach() lets the panel go without stopping it.
   */
  detached?: DetachedFiles;
  /** Limit for a detached start to report its pid. Default 15 s. */
  startTimeoutMs?: number;
}

/**
 * Keeps one long-running program alive on a host: starts it with `host.spawn`, restarts it
 * with exponential backoff (capped) whenever it exits, and logs each exit with its code or
 * signal and the last lines it printed. stop() terminates it and waits, bounded.
 *
 * @example
 * const sup = new ProcessSupervisor({ host, name: 'openvpn 1194/udp', argv: ['openvpn', '--config', conf] });
 * sup.start();
 * …
 * await sup.stop();
 */
export class ProcessSupervisor extends EventEmitter<SupervisorEvents> {
  private readonly options: Required<Omit<ProcessSupervisorOptions, 'logger' | 'beforeStart' | 'detached'>> &
    Pick<ProcessSupervisorOptions, 'logger' | 'beforeStart' | 'detached'>;
  private proc: HostProcess | null = null;
  private detachedRun: DetachedProcess | null = null;
  private running = false;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private tail: string[] = [];
  private partial = '';
  private startedAt = 0;
  private stopRequested = false;
  private runDone: Promise<void> = Promise.resolve();
  /** Completed runs that were not requested to stop. */
  restarts = 0;
  lastExit: SupervisedExit | undefined;

  constructor(options: ProcessSupervisorOptions) {
    super();
    this.options = {
      initialBackoffMs: 1_000,
      maxBackoffMs: 30_000,
      stableAfterMs: 60_000,
      stopTimeoutMs: 10_000,
      tailLines: 20,
      startTimeoutMs: 15_000,
      ...options,
    };
  }

  /** Pid of the current run, if one is running. */
  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get isRunning(): boolean {
    return this.proc !== null;
  }

  /**
   * Names the current run of a detached daemon: it changes when the daemon is started again and
   * stays across adoption, so counters a plugin keys by it survive a panel restart and restart
   * from zero with the daemon. Undefined when nothing runs or the program is not detached.
   */
  get epoch(): string | undefined {
    return this.detachedRun?.epoch;
  }

  /** True when the current run was found running and taken over rather than started. */
  get adopted(): boolean {
    return this.detachedRun?.adopted ?? false;
  }

  /** Starts the program (no-op when already supervising). */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.stopRequested = false;
    this.failures = 0;
    this.launch();
  }

  /** Stops supervising: SIGTERM, SIGKILL after stopTimeoutMs, then waits (bounded) for the exit. */
  async stop(): Promise<void> {
    this.running = false;
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    const proc = this.proc;
    if (!proc) {
      await this.runDone;
      return;
    }
    this.stopRequested = true;
    proc.kill('SIGTERM');
    const exited = await within(proc.exited, this.options.stopTimeoutMs);
    if (!exited) {
      this.options.logger?.warn({ name: this.options.name, pid: proc.pid }, 'did not exit after SIGTERM; sending SIGKILL');
      proc.kill('SIGKILL');
      if (!(await within(proc.exited, 5_000))) {
        this.options.logger?.error({ name: this.options.name, pid: proc.pid }, 'did not exit after SIGKILL');
      }
    }
    await within(this.runDone, 1_000);
  }

  /**
   * Stops supervising and leaves a detached daemon running (the panel is shutting down; the next
   * start adopts it). A program that is not detached is stopped.
   */
  async detach(): Promise<void> {
    if (!this.options.detached) return this.stop();
    this.running = false;
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    this.detachedRun?.release();
    this.options.logger?.info({ name: this.options.name, pid: this.detachedRun?.pid }, 'left running');
    this.detachedRun = null;
    this.proc = null;
  }

  /** Restarts now (e.g. after a config change), without backoff. */
  async restart(): Promise<void> {
    await this.stop();
    this.start();
  }

  private launch(): void {
    this.restartTimer = null;
    if (!this.running) return;
    this.runDone = this.runOnce();
  }

  private async runOnce(): Promise<void> {
    const { host, argv, name, logger, detached } = this.options;
    let adopted: DetachedProcess | null = null;
    if (detached) {
      adopted = await adoptDetached(host, argv, detached).catch((err: Error) => {
        logger?.warn({ name, err: err.message }, 'could not look for a running daemon to adopt; starting one');
        return null;
      });
      if (!this.running) return adopted?.release();
    }
    if (!adopted) {
      try {
        await this.options.beforeStart?.();
      } catch (err) {
        logger?.error({ name, err: (err as Error).message }, 'preparing the start failed');
        this.scheduleRestart(0);
        return;
      }
      if (!this.running) return;
    }
    this.tail = [];
    this.partial = '';
    this.startedAt = Date.now();
    let proc: HostProcess;
    try {
      if (detached) {
        const run = adopted ?? (await startDetached(host, argv, detached, this.options.startTimeoutMs));
        this.detachedRun = run;
        proc = run;
        if (!this.running) return void (await this.stopAfterLostRace(run));
      } else {
        proc = host.spawn(argv, { onOutput: (chunk) => this.collect(chunk) });
      }
    } catch (err) {
      logger?.error({ name, err: (err as Error).message }, 'could not start');
      this.scheduleRestart(0);
      return;
    }
    this.proc = proc;
    logger?.info({ name, pid: proc.pid, adopted: Boolean(adopted) }, adopted ? 'adopted the running daemon' : 'started');
    this.emit('spawn', proc.pid, { adopted: Boolean(adopted), epoch: this.detachedRun?.epoch });
    const result = await proc.exited;
    this.proc = null;
    const run = this.detachedRun;
    if (run === proc) this.detachedRun = null;
    if (this.partial) this.pushLine(this.partial);
    if (run === proc) for (const line of await run.tail(this.options.tailLines).catch(() => [])) this.pushLine(line);
    const exit: SupervisedExit = {
      ...result,
      pid: proc.pid,
      uptimeMs: Date.now() - this.startedAt,
      tail: [...this.tail],
      requested: this.stopRequested,
    };
    this.lastExit = exit;
    if (exit.requested) {
      logger?.info({ name, pid: exit.pid, code: exit.code, signal: exit.signal }, 'stopped');
    } else {
      this.restarts++;
      logger?.warn(
        { name, pid: exit.pid, code: exit.code, signal: exit.signal, error: exit.error, uptimeMs: exit.uptimeMs, tail: exit.tail },
        `exited unexpectedly (${describeExit(exit)})`,
      );
    }
    this.emit('exit', exit);
    if (!exit.requested) this.scheduleRestart(exit.uptimeMs);
  }

  /** stop() came while a detached start was under way: the run it made is ended too. */
  private async stopAfterLostRace(run: DetachedProcess): Promise<void> {
    this.detachedRun = null;
    run.kill('SIGTERM');
    if (!(await within(run.exited, this.options.stopTimeoutMs))) run.kill('SIGKILL');
    run.release();
  }

  private scheduleRestart(uptimeMs: number): void {
    if (!this.running) return;
    if (uptimeMs >= this.options.stableAfterMs) this.failures = 0;
    const delay = Math.min(this.options.initialBackoffMs * 2 ** this.failures, this.options.maxBackoffMs);
    this.failures = Math.min(this.failures + 1, 30);
    this.options.logger?.info({ name: this.options.name, delayMs: delay }, 'restart scheduled');
    this.restartTimer = setTimeout(() => this.launch(), delay);
  }

  private collect(chunk: string): void {
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    for (const l of lines) this.pushLine(l);
    if (this.partial.length > 4096) {
      this.pushLine(this.partial);
      this.partial = '';
    }
  }

  private pushLine(line: string): void {
    const l = line.replace(/\r$/, '').slice(0, 1000);
    if (!l) return;
    this.options.logger?.debug({ name: this.options.name, line: l }, 'output');
    this.emit('output', l);
    this.tail.push(l);
    if (this.tail.length > this.options.tailLines) this.tail.shift();
  }
}

export function describeExit(exit: HostProcessExit): string {
  if (exit.error) return exit.error;
  if (exit.signal) return `killed by ${exit.signal}`;
  return `exit code ${exit.code}`;
}

async function within<T>(p: Promise<T>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const r = await Promise.race([p.then(() => true as const), timeout]);
  clearTimeout(timer);
  return r;
}

/**
 * The restart backoff settings every supervised daemon's plugin offers, spread into its config
 * schema: `z.object({ ...supervisorBackoffConfig, … })`.
 */
export const supervisorBackoffConfig = {
  restartInitialMs: z.number().int().min(10).max(60_000).default(1_000),
  restartMaxMs: z.number().int().min(100).max(600_000).default(30_000),
};

/**
 * How long a daemon controlled through its own tools may take to start and to answer one
 * command (occtl, swanctl), spread into the config schema beside `supervisorBackoffConfig`.
 */
export const daemonTimeoutConfig = {
  startTimeoutMs: z.number().int().min(100).max(600_000).default(20_000),
  commandTimeoutMs: z.number().int().min(100).max(120_000).default(10_000),
};
