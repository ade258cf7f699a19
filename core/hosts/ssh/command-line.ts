import { invalid } from '../../errors';
import { checkArgv, checkEnv, checkPath } from '../checks';

/** Single-quotes one argument for a POSIX shell: `it's` → `'it'\''s'`. */
export function shellQuote(arg: string): string {
  if (arg.includes('\0')) throw invalid('shell arguments cannot contain NUL bytes');
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * The one place argv becomes a remote command line. sshd hands the line to the login
 * shell (`$SHELL -c`), so every element is single-quoted and the program replaces that
 * shell via `exec`. Requires a POSIX-compatible login shell (sh, bash, dash, ksh, zsh).
 */
export function remoteCommandLine(argv: readonly string[], options: { env?: Record<string, string>; cwd?: string; announcePid?: boolean } = {}): string {
  checkArgv(argv);
  const parts: string[] = [];
  if (options.announcePid) parts.push(`printf 'polygate-pid:%s\\n' "$$" >&2 &&`);
  if (options.cwd !== undefined) {
    checkPath(options.cwd);
    // A leading "-" would read as an option to cd.
    parts.push(`cd ${shellQuote(options.cwd.startsWith('-') ? `./${options.cwd}` : options.cwd)} &&`);
  }
  parts.push('exec');
  if (options.env && Object.keys(options.env).length > 0) {
    checkEnv(options.env);
    parts.push('env', ...Object.entries(options.env).map(([k, v]) => shellQuote(`${k}=${v}`)));
  }
  parts.push(...argv.map(shellQuote));
  return parts.join(' ');
}
