import { isIP } from 'node:net';
import { Op, type InferAttributes } from 'sequelize';
import type { CoreContext } from '../context';
import { NodeRecord, PortAssignment, SubAdmin, User, type NodeStatus } from '../db';
import { forbidden, invalid, locked, notFound } from '../errors';
import { publicKeyOf, removeAuthorizedKey, SshHost, sshPreflight } from '../hosts/ssh-host';
import { JobQueue, type JobControl, type JobView } from '../jobs';
import { nodeSshOptions } from '../nodes/credentials';
import { checkNodeRoot, nodeMarkerFile } from '../nodes/layout';
import { provisionNode } from '../nodes/provision';
import type { NodeRuntime } from '../nodes/runtime';
import { Firewall } from '../firewall';
import { isMainAdmin, type Principal } from '../principal';
import { NODE_PORT_FIELD, PORTS_TABLE_PROTOCOL, type ProtocolId } from '../protocols/table';
import type { Services } from './index';
import { nodeServerId } from './servers';

export const MISSING_NODE_FIELDS_MESSAGE = 'Missing required fields: name, ip_address, ssh_password';
export const NODE_NOT_FOUND_MESSAGE = 'Node not found';
export const DELETION_IN_PROGRESS_MESSAGE = 'Deletion in progress...';
const MAIN_ADMIN_REQUIRED = 'Permission denied: Main admin API key required.';

/** The node↔panel control channels polygate implements (see docs/nodes.md). */
export const COMMUNICATION_METHODS = ['ssh'] as const;
export const COMMUNICATION_METHOD_MESSAGE =
  "Field 'communication_method' must be 'ssh': polygate controls nodes over the pinned SSH connection only (no tunnel or HTTP control link is implemented).";

export const NODE_JOB_KINDS = { provision: 'node.provision', sync: 'node.sync', delete: 'node.delete' } as const;

/**
 * What a node edit touches on the node itself: the ports-table protocol's listener (port/protocol), `ssh` (how we log
 * in), `users` (which users are synced), `communication` (the node↔main channel), `meta`
 * (panel-only facts such as the name).
 */
export type NodeServiceName = ProtocolId | 'ssh' | 'users' | 'communication' | 'meta';
/** The service a node's default listener belongs to: the ports-table protocol. */
const LISTENER_SERVICE = PORTS_TABLE_PROTOCOL.id;
/** Services whose change needs no work on the node. */
const PANEL_ONLY_SERVICES: readonly NodeServiceName[] = ['meta'];

export interface NodeInput {
  name?: string;
  ip_address?: string;
  ssh_password?: string;
  ssh_port?: number;
  ssh_username?: string;
  [NODE_PORT_FIELD]?: number;
  protocol?: 'udp' | 'tcp';
  sync_all_users?: boolean;
  communication_method?: string | null;
  is_tunnel?: boolean;
}

/** A node as the main admin sees it (never the SSH secret). */
export interface NodeDetails {
  id: number;
  name: string;
  ip_address: string;
  ssh_port: number;
  ssh_username: string;
  [NODE_PORT_FIELD]: number;
  protocol: 'udp' | 'tcp';
  status: NodeStatus;
  status_message: string | null;
  total_traffic_bytes: number;
  sync_all_users: boolean;
  communication_method: string | null;
  is_tunnel: boolean;
  created_at: Date;
}

/** A node as a reseller sees it. */
export interface NodeBrief {
  id: number;
  name: string;
  status: NodeStatus;
}

export interface NodeProvisionPayload {
  /** Host key seen by the preflight, for provisioning to pin (never trust on first use later). */
  hostKeySha256: string;
  /** Directory on the node for polygate's files, fixed when the node was created. */
  root?: string;
}
export interface NodeSyncPayload {
  services: NodeServiceName[];
}
export interface NodeDeletePayload {
  force: boolean;
}

const HOSTNAME_RE = /^[a-zA-Z0-9.-]{1,253}$/;
const SSH_USERNAME_RE = /^[a-z_][a-z0-9_-]{0,31}$/;
const MAX_NAME_LENGTH = 128;
const MAX_PASSWORD_LENGTH = 1024;
const MAX_COMMUNICATION_METHOD_LENGTH = 32;

/**
 * Nodes: remote servers the panel installs and drives over SSH. Creation checks the SSH
 * credentials for real before storing anything; provisioning, syncing and removal run as
 * background jobs on the node's own target (`node_<id>`), so they never overlap.
 */
export class NodesService {
  /** Limit for the create-time SSH check (connect, authenticate, `uname -a`). */
  sshPreflightTimeoutMs = 15_000;
  /** Limit for reaching a node during deletion; short, since force mode exists for dead nodes. */
  deleteSshTimeoutMs = 10_000;
  /** Limit for each connection provisioning opens. */
  provisionSshTimeoutMs = 20_000;
  /**
   * Where new nodes get polygate's files (POLYGATE_NODE_ROOT). Recorded per node at
   * provisioning, so deletion removes what was installed even if this changes later.
   */
  nodeRoot: string;

  private jobQueue: JobQueue | undefined;
  private nodeRuntime: NodeRuntime | null = null;

  constructor(
    protected readonly ctx: CoreContext,
    protected readonly services: Services,
  ) {
    this.nodeRoot = checkNodeRoot(ctx.config.nodeRoot);
  }

  /**
   * The queue running node jobs, created (and started: interrupted jobs marked failed, queued
   * ones resumed) on first use. The daemon should touch it at boot and `stop()` it on shutdown.
   */
  get jobs(): JobQueue {
    if (!this.jobQueue) {
      const queue = new JobQueue({ logger: this.ctx.logger });
      queue.register<NodeProvisionPayload>(NODE_JOB_KINDS.provision, (job, control) => this.runProvision(job, control));
      queue.register<NodeSyncPayload>(NODE_JOB_KINDS.sync, (job, control) => this.runSync(job, control));
      queue.register<NodeDeletePayload>(NODE_JOB_KINDS.delete, (job, control) => this.runDelete(job, control));
      this.jobQueue = queue;
      queue.start().catch((err: unknown) => this.ctx.logger.error({ err }, 'node job queue failed to start'));
    }
    return this.jobQueue;
  }

  /** The plugins-on-nodes side, attached while protocols run (`startProtocols`); null before. */
  get runtime(): NodeRuntime | null {
    return this.nodeRuntime;
  }

  attachRuntime(runtime: NodeRuntime | null): void {
    this.nodeRuntime = runtime;
  }

  /** Stops the queue if it was ever created (touching `jobs` at shutdown would start one). */
  async stopJobs(): Promise<void> {
    await this.jobQueue?.stop();
  }

  async list(principal: Principal): Promise<NodeDetails[] | NodeBrief[]> {
    if (!isMainAdmin(principal)) {
      const rows = await NodeRecord.findAll({ attributes: ['id', 'name', 'status'], order: [['id', 'ASC']], raw: true });
      return rows.map((r) => ({ id: r.id, name: r.name, status: r.status }));
    }
    const rows = await NodeRecord.findAll({ attributes: { exclude: ['ssh_secret', 'ssh_private_key'] }, order: [['id', 'ASC']], raw: true });
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      ip_address: r.ip_address,
      ssh_port: r.ssh_port,
      ssh_username: r.ssh_username,
      [NODE_PORT_FIELD]: r[NODE_PORT_FIELD],
      protocol: r.protocol,
      status: r.status,
      status_message: r.status_message,
      // raw rows bypass the model getter: BIGINT is a string on PostgreSQL.
      total_traffic_bytes: Number(r.total_traffic_bytes ?? 0),
      sync_all_users: Boolean(r.sync_all_users),
      communication_method: r.communication_method,
      is_tunnel: Boolean(r.is_tunnel),
      created_at: new Date(r.created_at),
    }));
  }

  /**
   * Checks SSH for real, then stores the node (password sealed), claims its OpenVPN port and
   * queues provisioning, all in one transaction. A failed check stores nothing.
   */
  async create(principal: Principal, input: NodeInput): Promise<{ nodeId: number; jobId: number }> {
    requireMainAdmin(principal);
    const name = input.name?.trim();
    const ipAddress = input.ip_address?.trim();
    const password = input.ssh_password;
    if (!name || !ipAddress || !password) throw invalid(MISSING_NODE_FIELDS_MESSAGE);
    const fields = validateNodeFields({ ...input, name, ip_address: ipAddress });
    const sshPort = fields.ssh_port ?? 22;
    const sshUsername = fields.ssh_username ?? 'root';
    const listenerPort = fields[NODE_PORT_FIELD] ?? PORTS_TABLE_PROTOCOL.defaultPorts[0]!.port;
    const protocol = fields.protocol ?? 'udp';

    const preflight = await sshPreflight({ host: ipAddress, port: sshPort, username: sshUsername, password, timeoutMs: this.sshPreflightTimeoutMs });
    const log = this.ctx.logger.child({ component: 'nodes' });
    log.info({ host: ipAddress, port: sshPort, username: sshUsername, uname: preflight.uname }, 'node SSH preflight passed');

    const jobs = this.jobs;
    const { nodeId, jobId } = await this.ctx.db.transaction(async (transaction) => {
      const node = await NodeRecord.create(
        {
          name,
          ip_address: ipAddress,
          ssh_port: sshPort,
          ssh_username: sshUsername,
          ssh_secret: this.ctx.secrets.seal(password),
          [NODE_PORT_FIELD]: listenerPort,
          protocol,
          sync_all_users: fields.sync_all_users ?? false,
          communication_method: fields.communication_method ?? 'ssh',
          is_tunnel: fields.is_tunnel ?? false,
          status: 'installing',
          status_message: null,
        },
        { transaction },
      );
      const server = nodeServerId(node.id);
      await this.services.portRegistry.claim([{ server, port: listenerPort, protocol, owner: LISTENER_SERVICE }], transaction);
      const payload: NodeProvisionPayload = { hostKeySha256: preflight.hostKeySha256, root: checkNodeRoot(this.nodeRoot) };
      const id = await jobs.enqueue(NODE_JOB_KINDS.provision, server, payload, transaction);
      return { nodeId: node.id, jobId: id };
    });
    this.nodeRuntime?.markUnserved(nodeId, 'the node is being installed');
    log.info({ nodeId, jobId }, 'node created; provisioning queued');
    this.ctx.events.emit('nodes.changed', { nodeId });
    return { nodeId, jobId };
  }

  /**
   * Applies an edit and queues a sync for exactly the services it touched (none touched: no
   * job). Moving the OpenVPN listener re-claims it in the port registry (409 naming the owner).
   */
  async update(principal: Principal, id: number, input: NodeInput): Promise<{ changedServices: NodeServiceName[]; jobId: number | null }> {
    requireMainAdmin(principal);
    if (input.name !== undefined && input.name.trim() === '') throw invalid("Field 'name' cannot be empty.");
    if (input.ip_address !== undefined && input.ip_address.trim() === '') throw invalid("Field 'ip_address' cannot be empty.");
    const fields = validateNodeFields({
      ...input,
      name: input.name?.trim(),
      ip_address: input.ip_address?.trim(),
      // An empty password in an edit form means "keep the current one".
      ssh_password: input.ssh_password === '' ? undefined : input.ssh_password,
    });
    const jobs = this.jobs;
    const result = await this.ctx.db.transaction(async (transaction) => {
      const node = await NodeRecord.findByPk(id, { transaction, lock: transaction.LOCK.UPDATE });
      if (!node) throw notFound(NODE_NOT_FOUND_MESSAGE);
      const server = nodeServerId(node.id);
      if (await jobs.hasActive(NODE_JOB_KINDS.delete, server, transaction)) throw locked(DELETION_IN_PROGRESS_MESSAGE);

      const changed = new Set<NodeServiceName>();
      const changes: Partial<InferAttributes<NodeRecord>> = {};
      const set = <K extends keyof InferAttributes<NodeRecord>>(key: K, value: NodeRecord[K] | undefined, service: NodeServiceName) => {
        if (value === undefined || node[key] === value) return;
        (changes as Record<string, unknown>)[key] = value;
        changed.add(service);
      };
      set('name', fields.name, 'meta');
      set('ip_address', fields.ip_address, 'ssh');
      set('ssh_port', fields.ssh_port, 'ssh');
      set('ssh_username', fields.ssh_username, 'ssh');
      set(NODE_PORT_FIELD, fields[NODE_PORT_FIELD], LISTENER_SERVICE);
      set('protocol', fields.protocol, LISTENER_SERVICE);
      set('sync_all_users', fields.sync_all_users, 'users');
      set('communication_method', fields.communication_method ?? undefined, 'communication');
      set('is_tunnel', fields.is_tunnel, 'meta');
      // A provisioned node is reached with the panel's key; a password given now would only be a secret kept for nothing.
      if (fields.ssh_password !== undefined && !node.ssh_private_key && !this.sameSecret(node.ssh_secret, fields.ssh_password)) {
        changes.ssh_secret = this.ctx.secrets.seal(fields.ssh_password);
        changed.add('ssh');
      }
      if (changed.size === 0) return { changedServices: [] as NodeServiceName[], jobId: null };

      if (changed.has(LISTENER_SERVICE)) {
        await this.services.portRegistry.release({ owner: LISTENER_SERVICE, server }, transaction);
        await this.services.portRegistry.claim(
          [{ server, port: changes[NODE_PORT_FIELD] ?? node[NODE_PORT_FIELD], protocol: changes.protocol ?? node.protocol, owner: LISTENER_SERVICE }],
          transaction,
        );
      }
      await node.update(changes, { transaction });
      const changedServices = [...changed].sort();
      const jobId = await jobs.enqueue<NodeSyncPayload>(NODE_JOB_KINDS.sync, server, { services: changedServices }, transaction);
      return { changedServices, jobId };
    });
    if (result.changedServices.length > 0) {
      this.ctx.logger.info({ component: 'nodes', nodeId: id, services: result.changedServices, jobId: result.jobId }, 'node updated; sync queued');
      this.ctx.events.emit('nodes.changed', { nodeId: id });
    }
    return result;
  }

  /**
   * Starts an asynchronous deletion. A node whose previous deletion failed is deleted in
   * force mode (removed from the panel even if it cannot be cleaned).
   */
  async remove(principal: Principal, id: number): Promise<{ jobId: number; force: boolean }> {
    requireMainAdmin(principal);
    const jobs = this.jobs;
    const result = await this.ctx.db.transaction(async (transaction) => {
      const node = await NodeRecord.findByPk(id, { transaction, lock: transaction.LOCK.UPDATE });
      // The reference panel answers an unknown id with success: true (delete is idempotent).
      if (!node) throw notFound(NODE_NOT_FOUND_MESSAGE, { success: true });
      const server = nodeServerId(node.id);
      if (await jobs.hasActive(NODE_JOB_KINDS.delete, server, transaction)) throw locked(DELETION_IN_PROGRESS_MESSAGE);
      const force = node.deletion_failed;
      await node.update({ status: 'deleting', status_message: force ? 'Deleting (force mode)' : 'Deleting' }, { transaction });
      const jobId = await jobs.enqueue<NodeDeletePayload>(NODE_JOB_KINDS.delete, server, { force }, transaction);
      return { jobId, force };
    });
    this.ctx.logger.info({ component: 'nodes', nodeId: id, ...result }, 'node deletion queued');
    this.ctx.events.emit('nodes.changed', { nodeId: id });
    return result;
  }

  private sameSecret(sealed: string | null, password: string): boolean {
    if (!sealed) return false;
    try {
      return this.ctx.secrets.open(sealed) === password;
    } catch {
      return false;
    }
  }

  // ---- job handlers --------------------------------------------------------------------

  private async runProvision(job: JobView<NodeProvisionPayload>, control: JobControl): Promise<string> {
    const nodeId = nodeIdOfTarget(job.target);
    const log = this.ctx.logger.child({ component: 'nodes', nodeId, jobId: job.id });
    const report = async (percent: number, message: string) => {
      await control.progress(percent, message);
      await NodeRecord.update({ status_message: message }, { where: { id: nodeId, status: 'installing' } });
      log.info({ percent }, message);
    };
    try {
      const summary = await provisionNode({
        ctx: this.ctx,
        nodeId,
        hostKeySha256: String(job.payload.hostKeySha256 ?? ''),
        root: checkNodeRoot(typeof job.payload.root === 'string' ? job.payload.root : this.nodeRoot),
        runtime: this.nodeRuntime,
        connectTimeoutMs: this.provisionSshTimeoutMs,
        report,
      });
      await NodeRecord.update({ status: 'active', status_message: null }, { where: { id: nodeId, status: 'installing' } });
      this.ctx.events.emit('nodes.changed', { nodeId });
      return summary;
    } catch (err) {
      const message = `Provisioning failed: ${(err as Error).message}`;
      this.nodeRuntime?.markUnserved(nodeId, message);
      await NodeRecord.update({ status: 'error', status_message: message }, { where: { id: nodeId, status: 'installing' } });
      this.ctx.events.emit('nodes.changed', { nodeId });
      throw new Error(message);
    }
  }

  /**
   * Brings a provisioned node in line after an edit. The reconciler already re-applies the
   * node's plugins on `nodes.changed` (a port change restarts only that listener); this job
   * waits for that pass and records how it went on the node. A change of how we log in
   * (address, port, user) needs a new control connection: the node's daemons run on the old
   * one, so they are restarted over the new one.
   */
  private async runSync(job: JobView<NodeSyncPayload>, control: JobControl): Promise<string> {
    const nodeId = nodeIdOfTarget(job.target);
    const services = Array.isArray(job.payload.services) ? job.payload.services : [];
    const remote = services.filter((s) => !PANEL_ONLY_SERVICES.includes(s));
    if (remote.length === 0) return services.length === 0 ? 'nothing changed' : 'nothing to sync on the node';
    const node = await NodeRecord.findByPk(nodeId, { raw: true });
    if (!node) return 'node was deleted';
    if (!node.ssh_private_key || !node.install_root) return `nothing to sync: the node is not provisioned (${node.status})`;
    const runtime = this.nodeRuntime;
    if (!runtime) return 'nothing to sync: no protocol plugins run on this panel';
    if (!['active', 'offline'].includes(node.status)) return `nothing to sync: the node is ${node.status}`;
    if (remote.includes('ssh') || !runtime.get(nodeId)) {
      await control.progress(30, 'Reconnecting to the node');
      // New credentials, same node: its daemons keep serving and the new connection adopts them.
      await runtime.detach(nodeId, { stopDaemons: false, closeHost: true, reason: 'reconnecting to the node' });
      await runtime.attach(node);
    }
    await control.progress(60, `Applying ${remote.join(', ')} on the node`);
    const failures = await runtime.syncNode(nodeId);
    if (failures.length > 0) {
      const message = `Sync failed: ${failures.join('; ')}`;
      await NodeRecord.update({ status: 'error', status_message: message }, { where: { id: nodeId, status: { [Op.ne]: 'deleting' } } });
      this.ctx.events.emit('nodes.changed', { nodeId });
      throw new Error(message);
    }
    return `Synced on the node: ${remote.join(', ')}`;
  }

  private async runDelete(job: JobView<NodeDeletePayload>, control: JobControl): Promise<string> {
    const nodeId = nodeIdOfTarget(job.target);
    const log = this.ctx.logger.child({ component: 'nodes', nodeId, jobId: job.id });
    const node = await NodeRecord.findByPk(nodeId, { raw: true });
    if (!node) return 'node was already deleted';
    const force = job.payload.force === true;
    await control.progress(10, 'reaching the node');
    const cleanupError = await this.cleanUpNode(node);
    if (cleanupError !== null && !force) {
      const message = `Deletion failed: ${cleanupError}`;
      await NodeRecord.update({ status: 'error', status_message: message, deletion_failed: true }, { where: { id: nodeId } });
      this.ctx.events.emit('nodes.changed', { nodeId });
      log.warn({ reason: cleanupError }, 'node deletion failed; the next delete runs in force mode');
      throw new Error(message);
    }
    if (cleanupError !== null) log.warn({ reason: cleanupError }, 'node could not be cleaned; removing it anyway (force mode)');
    await this.forget(nodeId);
    this.nodeRuntime?.forget(nodeId);
    this.ctx.events.emit('nodes.changed', { nodeId });
    return cleanupError === null ? 'Node deleted' : `Node deleted (force mode; not cleaned: ${cleanupError})`;
  }

  /**
   * Removes what provisioning installed of polygate's: the plugins' daemons (stopped), the
   * node's root directory, the firewall table and the panel's key in authorized_keys (last,
   * over the connection it still carries). A node never provisioned has nothing installed: we
   * only prove we can still log in. Returns the reason on failure.
   */
  private async cleanUpNode(node: NodeRecord): Promise<string | null> {
    const server = nodeServerId(node.id);
    const attached = await this.nodeRuntime?.detach(node.id, { stopDaemons: true, closeHost: false, reason: 'the node is being deleted' });
    let host: SshHost | undefined = attached?.host;
    try {
      if (!host) host = new SshHost(server, nodeSshOptions(this.ctx.secrets, node, { timeoutMs: this.deleteSshTimeoutMs, keepaliveIntervalMs: 0 }));
    } catch (err) {
      return (err as Error).message;
    }
    try {
      const result = await host.run(['true'], { timeoutMs: this.deleteSshTimeoutMs });
      if (result.code !== 0) return `\`true\` exited with code ${result.code} on the node`;
      if (node.install_root) {
        const root = checkNodeRoot(node.install_root);
        // Only a directory provisioning marked as ours is removed as a whole.
        if (await host.exists(nodeMarkerFile(root))) await host.remove(root);
        else if (await host.exists(root)) return `${root} on the node has no polygate marker; left in place`;
      }
      if (node.ssh_private_key) {
        await new Firewall({ host, logger: this.ctx.logger, processUid: null, timeoutMs: this.deleteSshTimeoutMs }).remove();
        await removeAuthorizedKey(host, publicKeyOf(this.ctx.secrets.open(node.ssh_private_key)));
      }
      return null;
    } catch (err) {
      return err instanceof Error ? err.message : String(err);
    } finally {
      await host.close().catch(() => undefined);
    }
  }

  /** Drops every trace of the node from the panel in one transaction. */
  private async forget(nodeId: number): Promise<void> {
    const server = nodeServerId(nodeId);
    const changedUsers: string[] = [];
    const changedSubAdmins: number[] = [];
    await this.ctx.db.transaction(async (transaction) => {
      await NodeRecord.destroy({ where: { id: nodeId }, transaction });
      await this.services.portRegistry.release({ owner: LISTENER_SERVICE, server }, transaction);
      await PortAssignment.destroy({ where: { server_identifier: server }, transaction });
      // LIKE narrows the scan; the JSON parse decides (node_1 must not match node_10).
      const users = await User.findAll({ where: { nodes: { [Op.like]: `%${server}%` } }, attributes: ['id', 'username', 'nodes'], raw: true, transaction });
      for (const u of users) {
        const next = withoutServer(u.nodes, server);
        if (next === null) continue;
        await User.update({ nodes: next }, { where: { id: u.id }, transaction });
        changedUsers.push(u.username);
      }
      const admins = await SubAdmin.findAll({ where: { allowed_servers: { [Op.like]: `%${server}%` } }, attributes: ['id', 'allowed_servers'], raw: true, transaction });
      for (const a of admins) {
        const next = withoutServer(a.allowed_servers, server);
        if (next === null) continue;
        await SubAdmin.update({ allowed_servers: next }, { where: { id: a.id }, transaction });
        changedSubAdmins.push(a.id);
      }
    });
    if (changedUsers.length > 0) this.ctx.events.emit('users.changed', { usernames: changedUsers });
    for (const subAdminId of changedSubAdmins) this.ctx.events.emit('sub_admins.changed', { subAdminId });
  }
}

function requireMainAdmin(principal: Principal): void {
  if (!isMainAdmin(principal)) throw forbidden(MAIN_ADMIN_REQUIRED);
}

function nodeIdOfTarget(target: string | null): number {
  const m = /^node_(\d+)$/.exec(target ?? '');
  if (!m) throw new Error(`job target ${String(target)} is not a node`);
  return Number(m[1]);
}

/** The JSON list without `server`, or null when it did not contain it (or is not a list). */
function withoutServer(json: string | null, server: string): string | null {
  if (!json) return null;
  let list: unknown;
  try {
    list = JSON.parse(json);
  } catch {
    return null;
  }
  if (!Array.isArray(list) || !list.includes(server)) return null;
  return JSON.stringify(list.filter((s) => s !== server));
}

function isPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

/** Checks the optional node fields shared by create and edit; returns them as given. */
function validateNodeFields(input: NodeInput): NodeInput {
  if (input.name !== undefined && input.name.length > MAX_NAME_LENGTH) throw invalid(`Field 'name' must be at most ${MAX_NAME_LENGTH} characters.`);
  if (input.ip_address !== undefined && isIP(input.ip_address) === 0 && !HOSTNAME_RE.test(input.ip_address)) {
    throw invalid("Field 'ip_address' must be an IPv4 or IPv6 address or a host name.");
  }
  if (input.ssh_password !== undefined) {
    if (input.ssh_password.length > MAX_PASSWORD_LENGTH) throw invalid(`Field 'ssh_password' must be at most ${MAX_PASSWORD_LENGTH} characters.`);
    if (input.ssh_password.includes('\0')) throw invalid("Field 'ssh_password' cannot contain NUL characters.");
  }
  if (input.ssh_port !== undefined && !isPort(input.ssh_port)) throw invalid("Field 'ssh_port' must be an integer between 1 and 65535.");
  if (input.ssh_username !== undefined && !SSH_USERNAME_RE.test(input.ssh_username)) {
    throw invalid("Field 'ssh_username' must be a valid user name (lowercase letters, digits, '_' or '-', starting with a letter or '_', at most 32 characters).");
  }
  if (input[NODE_PORT_FIELD] !== undefined && !isPort(input[NODE_PORT_FIELD])) throw invalid(`Field '${NODE_PORT_FIELD}' must be an integer between 1 and 65535.`);
  if (input.protocol !== undefined && input.protocol !== 'udp' && input.protocol !== 'tcp') throw invalid("Field 'protocol' must be one of: udp, tcp.");
  if (input.communication_method != null && input.communication_method.length > MAX_COMMUNICATION_METHOD_LENGTH) {
    throw invalid(`Field 'communication_method' must be at most ${MAX_COMMUNICATION_METHOD_LENGTH} characters.`);
  }
  if (input.communication_method != null && !(COMMUNICATION_METHODS as readonly string[]).includes(input.communication_method)) throw invalid(COMMUNICATION_METHOD_MESSAGE);
  return input;
}
