#!/usr/bin/env node
/**
 * `polygate`: the operator's CLI. It reads the daemon's own configuration (POLYGATE_* and
 * POLYGATE_CONFIG_FILE), so `polygate backup` backs up the panel the daemon serves; it talks to
 * a running daemon through the control socket in the data dir.
 */
import { Command, CommanderError } from 'commander';
import { packageVersion } from '../core/control';
import { rotateAdminKeyCommand } from './commands/admin-key';
import { backupCommand, restoreCommand } from './commands/backup';
import { doctorCommand } from './commands/doctor';
import { statusCommand } from './commands/status';
import type { GlobalOptions } from './config';
import { CliError, EXIT, EXIT_CODES_HELP } from './exit-codes';

export function buildProgram(): { program: Command; exitCode(): number } {
  const program = new Command('polygate')
    .description('Operate a polygate panel: backups, restore, the admin key, health checks.\nUses the daemon\'s configuration: POLYGATE_* variables and POLYGATE_CONFIG_FILE.')
    .version(packageVersion())
    .option('-c, --config <file>', 'JSON settings file (same as POLYGATE_CONFIG_FILE)')
    .option('-d, --data-dir <dir>', 'data directory (same as POLYGATE_DATA_DIR)')
    .addHelpText('after', EXIT_CODES_HELP)
    .showHelpAfterError('(run polygate --help for the commands)')
    .exitOverride();
  const global = (): GlobalOptions => program.opts<GlobalOptions>();
  let code: number = EXIT.ok;

  program
    .command('backup')
    .description('write one archive (tar.gz, mode 0600) with a consistent database snapshot, secret.key, the PKI and plugin state; safe while the daemon runs')
    .argument('<file>', 'archive to write, e.g. /root/polygate-$(date +%F).tar.gz')
    .action(async (file: string) => backupCommand(file, global()));

  program
    .command('restore')
    .description('verify an archive and restore it into the configured data dir (and database); refuses while a daemon runs on it')
    .argument('<file>', 'archive written by polygate backup')
    .option('--force', 'replace a data dir (or PostgreSQL database) that already holds a panel; the old data dir is moved aside, not deleted')
    .option('--verify-only', 'check manifest and checksums, restore nothing')
    .action(async (file: string, options: { force?: boolean; verifyOnly?: boolean }) => restoreCommand(file, options, global()));

  program
    .command('admin-key')
    .description('the main admin API key')
    .command('rotate')
    .description('replace the main admin key; prints the new key once (stdout). A running daemon drops the old key at once.')
    .action(async () => rotateAdminKeyCommand(global()));

  program
    .command('doctor')
    .description('check VPN programs, kernel features, ports, firewall and permissions, and say what to install for each missing one')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      code = await doctorCommand(options, global());
    });

  program
    .command('status')
    .description('is the daemon running: version, users, health of each component (plugins, firewall, accounting)')
    .option('--json', 'machine-readable output')
    .action(async (options: { json?: boolean }) => {
      code = await statusCommand(options, global());
    });

  return { program, exitCode: () => code };
}

/** Runs the CLI on `argv` and resolves with the exit code (never exits itself). */
export async function runCli(argv: string[]): Promise<number> {
  const { program, exitCode } = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode();
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here too, with code 0.
      return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (e instanceof CliError) {
      process.stderr.write(`polygate: ${e.message}\n`);
      return e.exitCode;
    }
    process.stderr.write(`polygate: ${(e as Error).message}\nThis is unexpected; rerun with the same settings and report the message if it persists.\n`);
    return EXIT.failed;
  }
}

if (require.main === module) {
  runCli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    () => process.exit(EXIT.failed),
  );
}
