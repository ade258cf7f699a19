import path from 'node:path';
import { constants as osConstants } from 'node:os';
import type { Host, HostProcess, HostProcessExit } from '../../hosts/host';

/** Where a detached daemon keeps its pid, output and exit status on its host. */
export interface DetachedFiles {
  /** The daemon's pid, written by the keeper once it started it. */
  pidFile: string;
  /** The daemon's stdout and stderr (the previous run's is kept as `<logFile>.1`). */
  logFile: string;
}

/** A daemon run that belongs to its host, not to the panel process or the SSH channel. */
export interface DetachedProcess extends HostProcess {
  readonly pid: number;
  /** Changes whenever the daemon is started again, never across adoption: `<pid>.<start time>`. */
  readonly epoch: string;
  /** True when this run was already running and was taken over, not started. */
  readonly adopted: boolean;
  /** Stops watching without touching the daemon (the panel shuts down; the daemon keeps serving). */
  release(): void;
  /** The last lines the daemon printed. */
  tail(lines: number): Promise<string[]>;
}

// The keeper is the daemon's parent on its host: it starts the program in a new session with its
// output in a file (so neither a closed SSH channel nor a stopped panel reaches it), records the
// pid, reaps the program and records its exit status. The program's argv are positional
// parameters and are never parsed by the shell.
const KEEPER_SCRIPT = `#!/bin/sh
# polygate keeper: keeper PIDFILE LOGFILE EXITFILE -- program args...
pidfile=$1; log=$2; exitfile=$3; shift 4
if [ -f "$log" ]; then mv -f "$log" "$log.1"; fi
exec </dev/null >"$log" 2>&1
rm -f "$exitfile"
"$@" &
child=$!
echo "$child" >"$pidfile.tmp" && mv -f "$pidfile.tmp" "$pidfile"
wait "$child"
echo "$?" >"$exitfile.tmp" && mv -f "$exitfile.tmp" "$exitfile"
`;

// Exits 0 once the process is gone (or is a zombie, or its pid was reused: another start time),
// 3 after about a minute of it alive, so a watcher orphaned by a lost channel or a stopped panel
// ends by itself; the supervisor starts the next one.
const WATCH_SCRIPT = `pid=$1; start=$2; n=0
while [ "$n" -lt 120 ]; do
  s=$(cat "/proc/$pid/stat" 2>/dev/null) || exit 0
  set -- \${s##*) }
  [ "$1" = Z ] && exit 0
  [ "\${20}" = "$start" ] || exit 0
  sleep 0.5
  n=$((n + 1))
done
exit 3`;

const WATCH_STILL_ALIVE = 3;

interface ProcessFacts {
  state: string;
  startTime: string;
  argv: string[];
}

/** State, start time and argv of a live process on the host; null when there is none. */
async function inspect(host: Host, pid: number): Promise<ProcessFacts | null> {
  const r = await host.run(['cat', `/proc/${pid}/stat`, `/proc/${pid}/cmdline`], { timeoutMs: 15_000 });
  if (r.code !== 0) return null;
  const close = r.stdout.lastIndexOf(') ');
  const newline = r.stdout.indexOf('\n', close);
  if (close < 0 || newline < 0) return null;
  const fields = r.stdout.slice(close + 2, newline).split(' ');
  const state = fields[0] ?? '';
  const startTime = fields[19] ?? '';
  if (!state || state === 'Z' || !startTime) return null;
  const argv = r.stdout.slice(newline + 1).split('\0');
  if (argv.length && argv[argv.length - 1] === '') argv.pop();
  return { state, startTime, argv };
}

/** Same program and arguments; the program may have been found on PATH by the keeper. */
function sameArgv(running: readonly string[], wanted: readonly string[]): boolean {
  if (running.length !== wanted.length || !running.length) return false;
  const [r0, ...rRest] = running;
  const [w0, ...wRest] = wanted;
  if (r0 !== w0 && path.basename(r0!) !== path.basename(w0!)) return false;
  return rRest.every((a, i) => a === wRest[i]);
}

const keeperPath = (files: DetachedFiles) => path.posix.join(path.posix.dirname(files.pidFile), '.polygate-keeper.sh');
const exitFile = (files: DetachedFiles) => `${files.pidFile}.exit`;

async function readPid(host: Host, file: string): Promise<number | null> {
  const text = (await host.readFile(file).catch(() => null))?.toString('utf8').trim();
  return text && /^\d{1,10}$/.test(text) ? Number(text) : null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The run of `argv` recorded in `files.pidFile` when it is still alive with the same argv;
 * null otherwise (never started, died, or its pid now belongs to another program).
 */
export async function adoptDetached(host: Host, argv: readonly string[], files: DetachedFiles): Promise<DetachedProcess | null> {
  const pid = await readPid(host, files.pidFile);
  if (pid === null) return null;
  const facts = await inspect(host, pid);
  if (!facts || !sameArgv(facts.argv, argv)) return null;
  return watch(host, pid, facts.startTime, files, true);
}

/**
 * Starts `argv` under the keeper on `host`, detached from the panel, and resolves once its pid
 * is known. Rejects when the program did not start (its first output lines say why).
 */
export async function startDetached(host: Host, argv: readonly string[], files: DetachedFiles, startTimeoutMs = 15_000): Promise<DetachedProcess> {
  const keeper = keeperPath(files);
  await host.mkdirp(path.posix.dirname(files.pidFile));
  await host.writeFileAtomic(keeper, KEEPER_SCRIPT, 0o755);
  await host.remove(files.pidFile);
  await host.remove(exitFile(files));
  const r = await host.run(['setsid', '-f', 'sh', keeper, files.pidFile, files.logFile, exitFile(files), '--', ...argv], { timeoutMs: startTimeoutMs });
  if (r.code !== 0) throw new Error(`could not start ${argv[0]} on ${host.id}: ${(r.stderr || r.stdout).trim().slice(0, 300)}`);
  const deadline = Date.now() + startTimeoutMs;
  for (let wait = 20; Date.now() < deadline; wait = Math.min(wait * 2, 250)) {
    const pid = await readPid(host, files.pidFile);
    if (pid !== null) {
      const facts = await inspect(host, pid);
      if (facts) return watch(host, pid, facts.startTime, files, false);
      const tail = await tailOf(host, files.logFile, 5);
      throw new Error(`${argv[0]} on ${host.id} exited at once${tail.length ? `: ${tail.join(' | ')}` : ''}`);
    }
    await sleep(wait);
  }
  throw new Error(`${argv[0]} on ${host.id} did not report its pid within ${startTimeoutMs} ms`);
}

async function tailOf(host: Host, logFile: string, lines: number): Promise<string[]> {
  const r = await host.run(['tail', '-n', String(lines), logFile], { timeoutMs: 15_000 }).catch(() => null);
  if (!r || r.code !== 0) return [];
  return r.stdout.split('\n').map((l) => l.replace(/\r$/, '').slice(0, 1000)).filter(Boolean);
}

function signalName(code: number): string | null {
  if (code <= 128) return null;
  const n = code - 128;
  return Object.entries(osConstants.signals).find(([, v]) => v === n)?.[0] ?? null;
}

function watch(host: Host, pid: number, startTime: string, files: DetachedFiles, adopted: boolean): DetachedProcess {
  let released = false;
  let current: HostProcess | undefined;
  let resolveExit!: (exit: HostProcessExit) => void;
  const exited = new Promise<HostProcessExit>((resolve) => {
    resolveExit = resolve;
  });

  const finish = async () => {
    const text = (await host.readFile(exitFile(files)).catch(() => null))?.toString('utf8').trim();
    const code = text && /^\d{1,3}$/.test(text) ? Number(text) : null;
    const signal = code !== null ? signalName(code) : null;
    resolveExit(code === null ? { code: null, signal: null } : signal ? { code: null, signal } : { code, signal: null });
  };

  void (async () => {
    let failures = 0;
    while (!released) {
      current = host.spawn(['sh', '-c', WATCH_SCRIPT, 'polygate-watch', String(pid), startTime]);
      const result = await current.exited;
      current = undefined;
      if (released) return;
      if (result.code === WATCH_STILL_ALIVE) {
        failures = 0;
        continue;
      }
      if (result.code === 0) {
        // A watcher's 0 is only trusted when the process is really gone (not a lost channel).
        const facts = await inspect(host, pid).catch(() => undefined);
        if (facts === undefined) continue;
        if (!facts || facts.startTime !== startTime) return void (await finish());
        continue;
      }
      // The channel carrying the watcher is gone (SSH drop): the daemon is presumed alive and
      // is looked at again once the host answers.
      failures = Math.min(failures + 1, 6);
      await sleep(250 * 2 ** failures);
    }
  })();

  // Only this run is signalled: a pid the host has since given to another program is left alone.
  const kill = (signal: NodeJS.Signals = 'SIGTERM') => {
    void (async () => {
      const facts = await inspect(host, pid);
      if (facts?.startTime !== startTime) return;
      await host.run(['kill', '-s', signal.replace(/^SIG/, ''), '--', String(pid)], { timeoutMs: 15_000 });
    })().catch(() => undefined);
  };

  return {
    pid,
    epoch: `${pid}.${startTime}`,
    adopted,
    exited,
    kill,
    release: () => {
      released = true;
      current?.kill('SIGKILL');
    },
    tail: (lines) => tailOf(host, files.logFile, lines),
  };
}
