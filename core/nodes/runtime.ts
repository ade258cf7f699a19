import type { Core } from '../bootstrap';
import { NodeRecord } from '../db';
import { Firewall } from '../firewall';
import { SshHost } from '../hosts/ssh-host';
import type { Logger } from '../logger';
import type { RegisteredPlugin } from '../plugin/registry';
import { clientPoolOf, loadPluginsOn, type PluginSet } from '../protocols/start';
import { protocolOfPluginName, protocolSpec, type ProtocolId } from '../protocols/table';
import type { Reconciler } from '../reconciler/reconciler';
import { nodeServerId } from '../services/servers';
import { nodeSshOptions } from './credentials';
import { nodePluginDir } from './layout';
import { FIREWALL_REQUIREMENTS, PANEL_REQUIREMENTS, pluginRequirements } from '../requirements';
import type { NodeRequirement } from './packages';

export interface NodeRuntimeOptions {
  /** Manage each node's nftables table `inet polygate`; default: unless POLYGATE_FIREWALL=off. */
  firewall?: boolean;
  /** How often nodes are checked over a fresh connection (pinned host key, reachability); default 30 s, 0 = never. */
  healthIntervalMs?: number;
  /** Limit for reaching a node (connect + handshake + authentication); default 15 s. */
  connectTimeoutMs?: number;
  /**
   * Settings laid over the shared plugin settings on one node, by plugin name. Nodes are
   * separate machines and need none; tests whose nodes share one filesystem use it for names
   * that must differ (WireGuard's interface, whose UAPI socket lives in /var/run/wireguard).
   */
  pluginConfigFor?: (serverId: string) => Record<string, Record<string, unknown>>;
}

/** A node whose plugins are registered: its one control connection and its firewall. */
export interface AttachedNode {
  nodeId: number;
  serverId: string;
  host: SshHost;
  root: string;
  firewall: Firewall | null;
}

type NodeRow = Pick<NodeRecord, 'id' | 'ip_address' | 'ssh_port' | 'ssh_username' | 'ssh_key_username' | 'ssh_secret' | 'ssh_private_key' | 'ssh_host_key' | 'install_root' | 'status'>;

/** Says the host key changed; the connection layer words it "host key mismatch for …". */
export const isHostKeyMismatch = (message: string): boolean => /host key mismatch/i.test(message);

/**
 * The panel's side of every provisioned node: the same plugins as the main server, loaded
 * through one `SshHost` per node (pinned host key, the panel's own key), the node's firewall
 * kept equal to its port claims, and a health check that turns a changed host key into
 * `error` (never silently trusted) and an unreachable node into `offline`.
 */
export class NodeRuntime {
  private readonly attached = new Map<number, AttachedNode>();
  private readonly log: Logger;
  private readonly unsubscribe: Array<() => void> = [];
  private healthTimer: NodeJS.Timeout | undefined;
  private firewallQueue: Promise<unknown> = Promise.resolve();
  readonly firewallEnabled: boolean;
  readonly connectTimeoutMs: number;
  private readonly pluginConfigFor: NodeRuntimeOptions['pluginConfigFor'];
  private closed = false;

  constructor(
    private readonly core: Core,
    private readonly set: PluginSet,
    readonly reconciler: Reconciler,
    options: NodeRuntimeOptions = {},
  ) {
    this.log = core.ctx.logger.child({ component: 'nodes' });
    this.firewallEnabled = options.firewall ?? core.ctx.config.firewall !== 'off';
    this.connectTimeoutMs = options.connectTimeoutMs ?? 15_000;
    this.pluginConfigFor = options.pluginConfigFor;
    const refresh = () => {
      for (const id of this.attached.keys()) void this.applyFirewall(id).catch((err: Error) => this.log.warn({ nodeId: id, err: err.message }, 'node firewall sync failed; retried on the next change'));
    };
    this.unsubscribe.push(core.ctx.events.on('ports.changed', refresh));
    const every = options.healthIntervalMs ?? 30_000;
    if (every > 0) {
      this.healthTimer = setInterval(() => void this.checkAll(), every);
      this.healthTimer.unref?.();
    }
  }

  /** Protocols a node runs: those of the plugins the main server runs. */
  protocols(): ProtocolId[] {
    return this.set.plugins.map((name) => protocolOfPluginName(name)?.id).filter((p): p is ProtocolId => p !== undefined);
  }

  /** Programs a node must have: the panel's own, its plugins' (as each declares them) and its firewall's. */
  requirements(): NodeRequirement[] {
    return [...PANEL_REQUIREMENTS, ...this.set.plugins.flatMap((name) => pluginRequirements(name)), ...(this.firewallEnabled ? FIREWALL_REQUIREMENTS : [])];
  }

  get(nodeId: number): AttachedNode | undefined {
    return this.attached.get(nodeId);
  }

  /** The node's control connection: its stored credentials, its pinned host key. */
  hostFor(node: NodeRow, extra: { keepaliveIntervalMs?: number } = {}): SshHost {
    return new SshHost(nodeServerId(node.id), nodeSshOptions(this.core.ctx.secrets, node, { timeoutMs: this.connectTimeoutMs, ...extra }));
  }

  /**
   * Registers the plugins on the node (each checks its own availability there) through
   * `host`, which the runtime owns from now on. Returns them as registered.
   */
  async attach(node: NodeRow, host: SshHost = this.hostFor(node)): Promise<RegisteredPlugin[]> {
    if (!node.install_root) throw new Error(`node_${node.id} has no install root recorded (was it provisioned?)`);
    const serverId = nodeServerId(node.id);
    const previous = this.attached.get(node.id);
    if (previous && previous.host !== host) await previous.host.close().catch(() => undefined);
    const root = node.install_root;
    const firewall = this.firewallEnabled ? new Firewall({ host, logger: this.core.ctx.logger, processUid: null }) : null;
    this.attached.set(node.id, { nodeId: node.id, serverId, host, root, firewall });
    this.placeDigests(serverId, host, root);
    // Customers dial the node's own address: plugins put it in certificates and profiles.
    const overrides = this.pluginConfigFor?.(serverId) ?? {};
    const set: PluginSet = {
      plugins: this.set.plugins,
      pluginConfig: Object.fromEntries(this.set.plugins.map((name) => [name, { ...(this.set.pluginConfig?.[name] ?? {}), ...(overrides[name] ?? {}) }])),
    };
    return loadPluginsOn(this.core, set, { serverId, host, publicHost: node.ip_address, stateDirOf: (p) => nodePluginDir(root, p) });
  }

  /**
   * One reconciler pass, then the node's firewall; returns what failed on this node (plugins
   * unavailable there, an apply that failed, the firewall), empty when it all runs.
   */
  async syncNode(nodeId: number): Promise<string[]> {
    const node = this.attached.get(nodeId);
    if (!node) return [`node_${nodeId} is not attached`];
    await this.reconciler.syncNow().catch(() => undefined);
    // A slow node is not waited for by the pass (the others go on); this node's job waits for it.
    await this.reconciler.hostSettled(node.serverId);
    const failures: string[] = [];
    for (const protocol of this.protocols()) {
      const entry = this.core.plugins.get(protocol, node.serverId);
      if (!entry || entry.state !== 'available') {
        failures.push(`${protocol}: ${entry?.reason ?? 'not loaded'}`);
        continue;
      }
      const state = this.reconciler.syncStateOf(entry.id);
      if (state?.state === 'degraded') failures.push(`${protocol}: ${state.reason}`);
    }
    try {
      await this.applyFirewall(nodeId);
    } catch (err) {
      failures.push(`firewall: ${(err as Error).message}`);
    }
    return failures;
  }

  /** Opens on the node exactly what the port registry says it listens on, and masquerades its pools. */
  applyFirewall(nodeId: number): Promise<void> {
    const run = this.firewallQueue.catch(() => undefined).then(async () => {
      const node = this.attached.get(nodeId);
      if (!node?.firewall) return;
      const claims = (await this.core.services.portRegistry.list()).filter((c) => c.server === node.serverId);
      const pools = new Set(
        this.core.plugins
          .available()
          .filter((p) => p.serverId === node.serverId)
          .map((p) => clientPoolOf(this.core.ctx.config, protocolSpec(p.protocol))),
      );
      await node.firewall.apply({ openPorts: claims.map((c) => ({ port: c.port, protocol: c.protocol, owner: c.owner })), nat: [...pools].map((sourceCidr) => ({ sourceCidr })) });
      const state = node.firewall.state();
      if (!state.managed) throw new Error(`the node's firewall cannot be managed: ${state.reason}`);
    });
    this.firewallQueue = run;
    return run;
  }

  /**
   * Stops using a node: its plugins are stopped when `stopDaemons` (deletion), otherwise left
   * running unwatched (`detach`), and stay
   * registered as unavailable with `reason` (a node that is not served must not fall back to
   * "offered like the main server" while it still exists; `forget` drops them once it is gone).
   * The control connection is handed back open (deletion still needs it) unless closed here.
   */
  async detach(nodeId: number, options: { stopDaemons: boolean; closeHost: boolean; reason: string }): Promise<AttachedNode | undefined> {
    const node = this.attached.get(nodeId);
    this.attached.delete(nodeId);
    const serverId = nodeServerId(nodeId);
    for (const protocol of this.protocols()) {
      const entry = this.core.plugins.get(protocol, serverId);
      if (!entry) continue;
      // Not deleting: the node's daemons keep serving; the plugin only stops watching them.
      const leave = entry.instance && (options.stopDaemons ? entry.instance.stop() : entry.instance.detach?.());
      await leave?.catch((err: Error) => this.log.warn({ plugin: entry.id, err: err.message }, options.stopDaemons ? 'stopping a node plugin failed' : 'leaving a node plugin failed'));
      this.core.plugins.markUnavailable(protocol, serverId, options.reason);
    }
    if (node && options.closeHost) await node.host.close().catch(() => undefined);
    return node;
  }

  /**
   * Registers the node's protocols as unavailable with `reason` (being installed, failed): a
   * node whose plugins are not running is not offered to customers.
   */
  markUnserved(nodeId: number, reason: string): void {
    for (const protocol of this.protocols()) this.core.plugins.markUnavailable(protocol, nodeServerId(nodeId), reason);
  }

  /** Drops a deleted node's plugins from the registry. */
  forget(nodeId: number): void {
    for (const protocol of this.protocols()) this.core.plugins.remove(protocol, nodeServerId(nodeId));
    this.reconciler.placeDigests(nodeServerId(nodeId), null);
  }

  /**
   * The reconciler keeps, beside each plugin's state on the node, the digest of the state it
   * took: a drift check (node back from an outage, edited, or the periodic one) is one small
   * read per plugin instead of a full apply.
   */
  private placeDigests(serverId: string, host: SshHost, root: string): void {
    this.reconciler.placeDigests(serverId, { host, stateDirOf: (p) => nodePluginDir(root, p) });
  }

  /**
   * Reaches the node over a fresh connection, so the pinned host key is checked again: a
   * changed key marks the node `error` and takes its plugins out of service (customers are
   * not sent to a machine that may not be ours); an unreachable node is `offline` and comes
   * back `active` when it answers again.
   */
  async checkNode(nodeId: number): Promise<{ status: string; message: string | null }> {
    const node = await NodeRecord.findByPk(nodeId, { raw: true });
    if (!node) return { status: 'gone', message: null };
    if (!node.ssh_private_key || !['active', 'offline', 'error'].includes(node.status)) return { status: node.status, message: node.status_message };
    const serverId = nodeServerId(nodeId);
    let failure: string | null = null;
    const probe = this.hostFor(node, { keepaliveIntervalMs: 0 });
    try {
      const r = await probe.run(['true'], { timeoutMs: this.connectTimeoutMs });
      if (r.code !== 0) failure = `\`true\` exited with code ${r.code}`;
    } catch (err) {
      failure = (err as Error).message;
    } finally {
      await probe.close().catch(() => undefined);
    }
    let status = node.status;
    let message = node.status_message;
    if (failure !== null && isHostKeyMismatch(failure)) {
      status = 'error';
      message = `SSH host key changed, node taken out of service: ${failure}`;
      for (const protocol of this.protocols()) {
        if (this.core.plugins.get(protocol, serverId)) this.core.plugins.markUnavailable(protocol, serverId, message);
      }
      // The connection opened against the genuine key is dropped too: nothing more is sent there.
      const attached = this.attached.get(nodeId);
      this.attached.delete(nodeId);
      await attached?.host.close().catch(() => undefined);
      if (node.status !== 'error' || node.status_message !== message) this.log.error({ nodeId, reason: failure }, 'node SSH host key changed; the node is no longer used');
    } else if (failure !== null) {
      if (node.status === 'active') {
        status = 'offline';
        message = `Unreachable: ${failure}`;
      }
    } else if (node.status === 'offline') {
      status = 'active';
      message = null;
      await this.core.plugins.refreshAvailability();
    }
    if (status !== node.status || message !== node.status_message) {
      await NodeRecord.update({ status, status_message: message }, { where: { id: nodeId } });
      this.core.ctx.events.emit('nodes.changed', { nodeId });
    }
    return { status, message };
  }

  private async checkAll(): Promise<void> {
    if (this.closed) return;
    for (const id of [...this.attached.keys()]) {
      await this.checkNode(id).catch((err: Error) => this.log.warn({ nodeId: id, err: err.message }, 'node health check failed'));
    }
  }

  /** After a panel start: every provisioned node gets its plugins back (they check the node themselves). */
  async resume(): Promise<void> {
    const nodes = await NodeRecord.findAll({ raw: true, order: [['id', 'ASC']] });
    for (const node of nodes) {
      if (!node.ssh_private_key || !node.install_root || !['active', 'offline'].includes(node.status)) {
        this.markUnserved(node.id, node.status_message ?? `the node is ${node.status}`);
        continue;
      }
      try {
        await this.attach(node);
      } catch (err) {
        this.log.warn({ nodeId: node.id, err: (err as Error).message }, 'node could not be resumed');
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.unsubscribe.splice(0).forEach((off) => off());
    await this.firewallQueue.catch(() => undefined);
    for (const node of this.attached.values()) await node.host.close().catch(() => undefined);
    this.attached.clear();
  }
}
