/** What `polygate` exits with; `--help` prints this table, scripts and systemd timers rely on it. */
export const EXIT = {
  ok: 0,
  /** Unexpected failure (a bug or an environment problem the message names). */
  failed: 1,
  /** Bad arguments or configuration (POLYGATE_* settings, config file). */
  usage: 2,
  /** `status`: no daemon answers on the data dir. */
  notRunning: 3,
  /** Refused to act: a daemon runs on the data dir, or existing data would be replaced without --force. */
  refused: 4,
  /** The archive is damaged, altered or not a polygate backup. */
  invalidArchive: 5,
  /** `doctor` / `status`: something needed is missing or unhealthy. */
  problems: 6,
  /** A program the command needs (pg_dump, pg_restore) is not installed. */
  toolMissing: 7,
} as const;

export const EXIT_CODES_HELP = `
Exit codes:
  0  done / healthy
  1  unexpected failure (the message says what happened)
  2  bad arguments or configuration (the message names the setting)
  3  status: no daemon is running on the data dir
  4  refused: a daemon runs on the data dir, or --force is needed to replace existing data
  5  the backup archive is damaged, altered or not a polygate backup
  6  doctor/status: something needed is missing or unhealthy (see the report)
  7  a program the command needs is not installed (pg_dump, pg_restore)`;

/** An error the CLI reports as one message (what happened, what to do) and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}
