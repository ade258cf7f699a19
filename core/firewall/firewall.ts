import { DomainError } from '../errors';
import type { Host } from '../hosts/host';
import { logger as rootLogger, type Logger } from '../logger';
import {
  DEFAULT_TABLE,
  parseTableJson,
  renderRemoval,
  renderRuleset,
  validateDesired,
  type FirewallDesired,
  type LiveTable,
} from './nft-render';

export type FirewallState = { managed: true } | { managed: false; reason: string };

export interface FirewallOptions {
  /** Where nft runs: LocalHost on the main server, LocalHost({ netns }) in tests, SshHost on nodes. */
  host: Host;
  /** nft binary; default `nft` (found on PATH). */
  nftPath?: string;
  /** Our table in family `inet`; default `polygate`. */
  table?: string;
  logger?: Logger;
  /**
   * Uid of the daemon process, checked before trusting a local nft (default `process.getuid`).
   * Pass `null` when `host` is remote (SshHost): there the remote user's rights decide, and
   * `nft list tables` on the node tells.
   */
  processUid?: (() => number | undefined) | null;
  /** Limit per nft call; default 30 s. */
  timeoutMs?: number;
}

const NOT_CHECKED: FirewallState = { managed: false, reason: 'not checked yet (call detect() or apply())' };

/**
 * Keeps the nftables table `inet polygate` equal to the declared open ports and NAT rules,
 * and touches nothing else: other tables and rules survive every call.
 *
 * When nft is missing or we lack the rights (not root), the firewall is *unmanaged*: this
 * is logged once, `apply()` only records the desired state, and `state()` says why.
 *
 * @example
 * const fw = new Firewall({ host: new LocalHost() });
 * await fw.apply({ openPorts: [{ port: 1194, protocol: 'udp', owner: 'openvpn' }], nat: [{ sourceCidr: '10.8.0.0/24' }] });
 */
export class Firewall {
  private readonly host: Host;
  private readonly nft: string;
  private readonly table: string;
  private readonly log: Logger;
  private readonly processUid: (() => number | undefined) | null;
  private readonly timeoutMs: number;
  private current: FirewallState = NOT_CHECKED;
  private detected: Promise<FirewallState> | undefined;
  private warned = false;
  private desiredState: FirewallDesired | undefined;
  private lastApplied: string | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(options: FirewallOptions) {
    this.host = options.host;
    this.nft = options.nftPath ?? 'nft';
    this.table = options.table ?? DEFAULT_TABLE;
    // Renders once to validate the table name at construction, not at the first apply.
    renderRemoval({ table: this.table });
    this.log = (options.logger ?? rootLogger).child({ component: 'firewall', host: this.host.id });
    this.processUid = options.processUid === undefined ? () => process.getuid?.() : options.processUid;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  /** Last detected state; `{ managed: false, reason: 'not checked yet…' }` before the first check. */
  state(): FirewallState {
    return this.current;
  }

  /** The last state passed to `apply()` (recorded even when unmanaged). */
  desired(): FirewallDesired | undefined {
    return this.desiredState;
  }

  /**
   * Checks whether we can manage nftables on the host (cached; `force` checks again, e.g.
   * after nft was installed).
   */
  detect(force = false): Promise<FirewallState> {
    if (force || !this.detected) {
      this.detected = this.check().then((state) => {
        this.current = state;
        if (!state.managed && !this.warned) {
          this.warned = true;
          this.log.warn({ reason: state.reason }, 'firewall unmanaged: ports will not be opened by polygate');
        }
        if (state.managed) this.warned = false;
        return state;
      });
    }
    return this.detected;
  }

  /**
   * Makes our table exactly `desired`, in one nft transaction. Input is validated first
   * (`DomainError` `invalid` or `conflict`, before nft runs). Unmanaged: records and returns.
   * Returns whether rules were loaded.
   */
  async apply(desired: FirewallDesired): Promise<{ applied: boolean }> {
    const normalized = validateDesired(desired);
    const script = renderRuleset(normalized, { table: this.table });
    return this.serialize(async () => {
      this.desiredState = normalized;
      const state = await this.detect();
      if (!state.managed) return { applied: false };
      await this.load(script, 'apply');
      this.lastApplied = script;
      this.log.info({ openPorts: normalized.openPorts.length, nat: normalized.nat?.length ?? 0 }, 'firewall table applied');
      return { applied: true };
    });
  }

  /** Applies the last desired state again (e.g. after someone flushed the ruleset). */
  async reapply(): Promise<{ applied: boolean }> {
    return this.desiredState ? this.apply(this.desiredState) : { applied: false };
  }

  /** Deletes our table only (uninstall, or shutdown when configured to). No-op when unmanaged. */
  remove(): Promise<void> {
    return this.serialize(async () => {
      const state = await this.detect();
      if (!state.managed) return;
      await this.load(renderRemoval({ table: this.table }), 'remove');
      this.lastApplied = undefined;
      this.log.info('firewall table removed');
    });
  }

  /** What the kernel holds in our table now, with per-rule counters; null if it does not exist. */
  async inspect(): Promise<LiveTable | null> {
    const state = await this.detect();
    if (!state.managed) return null;
    const r = await this.host.run([this.nft, '-j', 'list', 'table', 'inet', this.table], { timeoutMs: this.timeoutMs });
    if (r.code !== 0) {
      if (/No such file or directory|does not exist/i.test(r.stderr)) return null;
      throw new DomainError('unavailable', `nft list table inet ${this.table} failed on ${this.host.id}: ${r.stderr.trim()}`);
    }
    return parseTableJson(r.stdout);
  }

  /** The script loaded by the last successful apply(), for status pages and debugging. */
  lastScript(): string | undefined {
    return this.lastApplied;
  }

  private async check(): Promise<FirewallState> {
    if (this.processUid) {
      const uid = this.processUid();
      if (uid !== undefined && uid !== 0) return { managed: false, reason: `not running as root (uid ${uid}); nftables needs root` };
    }
    let r;
    try {
      r = await this.host.run([this.nft, 'list', 'tables'], { timeoutMs: this.timeoutMs });
    } catch (e) {
      const err = e as Error & { reason?: string };
      if (err.reason === 'not_found' || (e as NodeJS.ErrnoException).code === 'ENOENT') {
        return { managed: false, reason: `nft not found on ${this.host.id} (${this.nft}); install nftables` };
      }
      return { managed: false, reason: `cannot run ${this.nft} on ${this.host.id}: ${err.message}` };
    }
    if (r.code !== 0) {
      const detail = r.stderr.trim().split('\n')[0] ?? '';
      // `ip netns exec` reports a missing program as exec failure with status 1 or 255.
      if (/exec of .* failed: No such file|not found/i.test(detail)) {
        return { managed: false, reason: `nft not found on ${this.host.id} (${this.nft}); install nftables` };
      }
      return { managed: false, reason: `\`nft list tables\` failed on ${this.host.id} (exit ${r.code}): ${detail}` };
    }
    return { managed: true };
  }

  private async load(script: string, what: string): Promise<void> {
    const r = await this.host.run([this.nft, '-f', '-'], { stdin: script, timeoutMs: this.timeoutMs });
    if (r.code !== 0) {
      throw new DomainError('unavailable', `firewall ${what} failed on ${this.host.id}: nft exited with ${r.code}: ${r.stderr.trim().slice(0, 1000)}`);
    }
  }

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
