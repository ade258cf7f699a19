import type { Host } from '../../hosts/host';
import type { Availability } from '../types';

/**
 * Collects why a daemon cannot run on a host, so `availability()` names everything missing at
 * once (the operator installs it all in one go, not one package per restart).
 *
 * @example
 * const probe = new AvailabilityProbe(ctx.host);
 * await probe.answers(['openvpn', '--version'], /OpenVPN 2\.\d/);
 * await probe.exists('/dev/net/tun');
 * return probe.verdict();
 */
export class AvailabilityProbe {
  private readonly missing: string[] = [];

  constructor(
    private readonly host: Host,
    private readonly timeoutMs = 15_000,
  ) {}

  /** The program runs and its output (stdout + stderr) matches `expect`. */
  async answers(argv: string[], expect: RegExp): Promise<void> {
    try {
      const r = await this.host.run(argv, { timeoutMs: this.timeoutMs });
      if (!expect.test(r.stdout + r.stderr)) this.missing.push(`${argv[0]} did not answer ${argv.slice(1).join(' ')} (code ${r.code})`);
    } catch (e) {
      this.missing.push((e as Error).message);
    }
  }

  /** A file or device the daemon needs is there. */
  async exists(path: string): Promise<void> {
    if (!(await this.host.exists(path).catch(() => false))) this.missing.push(`${path} does not exist on ${this.host.id}`);
  }

  verdict(): Availability {
    return this.missing.length ? { available: false, reason: this.missing.join('; ') } : { available: true };
  }
}
