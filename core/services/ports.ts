import { UniqueConstraintError, type Transaction } from 'sequelize';
import type { CoreContext } from '../context';
import { NodeRecord, Port, PortAssignment } from '../db';
import { conflict, forbidden, invalid, notFound } from '../errors';
import type { Principal } from '../principal';
import type { TransportProtocol } from './port-registry';
import { PORTS_TABLE_PROTOCOL } from '../protocols/table';
import { MAIN_SERVER, nodeDefaultListener, nodeServerId, parseNodeServerId, type ServerRef } from './servers';
import type { Services } from './index';

export interface DefaultPortView {
  is_default: true;
  name: string;
  public_port: number;
  protocol: TransportProtocol;
}

export interface CustomPortView {
  port_id: number;
  server_identifier: string;
  public_port: number;
  protocol: TransportProtocol;
  server_name: string;
}

export interface PortsOverview {
  default_ports: DefaultPortView[];
  custom_ports: CustomPortView[];
}

export interface ConfigurePortInput {
  public_port?: number | null;
  protocol?: string | null;
  server_ids?: string[] | null;
}

export interface DeleteAssignmentInput {
  port_id?: number | null;
  server_identifier?: string | null;
}

const PROTOCOLS: readonly TransportProtocol[] = ['udp', 'tcp'];
/** Custom OpenVPN listeners share one registry owner with the default ones. */
/** The ports table's listeners belong to one protocol (its id owns their claims). */
const PORTS_OWNER = PORTS_TABLE_PROTOCOL.id;
const STRICT_DENIAL = 'Permission denied: Main admin API key required.';

/**
 * Extra OpenVPN ports ("custom ports") and their assignment to servers. Every assignment is
 * a claim in the port registry, so a custom port can never collide with the panel, a
 * reseller's listener or another protocol on the same server.
 */
export class PortsService {
  constructor(
    protected readonly ctx: CoreContext,
    protected readonly services: Services,
  ) {}

  async overview(principal: Principal): Promise<PortsOverview> {
    requireMainAdmin(principal, STRICT_DENIAL);
    const main = await this.services.servers.mainDefaultListener();
    const nodes = await NodeRecord.findAll({ raw: true, order: [['id', 'ASC']] });
    const ports = await Port.findAll({ raw: true, attributes: ['id', 'public_port', 'protocol'] });
    const assignments = await PortAssignment.findAll({ raw: true, attributes: ['port_id', 'server_identifier'], order: [['port_id', 'ASC'], ['id', 'ASC']] });

    const nameOf = new Map<string, string>([[MAIN_SERVER.id, MAIN_SERVER.name]]);
    for (const n of nodes) nameOf.set(nodeServerId(n.id), `Node: ${n.name}`);
    const portById = new Map(ports.map((p) => [p.id, p]));

    const default_ports: DefaultPortView[] = [
      { is_default: true, name: MAIN_SERVER.name, public_port: main.port, protocol: main.transport },
      ...nodes.map((n) => {
        const d = nodeDefaultListener(n as unknown as Record<string, unknown>);
        return { is_default: true as const, name: `Node: ${n.name}`, public_port: d.port, protocol: d.transport };
      }),
    ];
    const custom_ports: CustomPortView[] = [];
    for (const a of assignments) {
      const p = portById.get(a.port_id);
      if (!p) continue;
      custom_ports.push({
        port_id: p.id,
        server_identifier: a.server_identifier,
        public_port: p.public_port,
        protocol: p.protocol,
        server_name: nameOf.get(a.server_identifier) ?? a.server_identifier,
      });
    }
    return { default_ports, custom_ports };
  }

  /** Main + every node: the ids accepted in `server_ids`, `allowed_servers` and users' `nodes`. */
  async servers(principal: Principal): Promise<ServerRef[]> {
    requireMainAdmin(principal, STRICT_DENIAL);
    return this.services.servers.list();
  }

  /** Registers a port (once per port/protocol) and assigns it to servers; existing assignments are kept. */
  async configure(principal: Principal, input: ConfigurePortInput): Promise<void> {
    requireMainAdmin(principal, 'Permission denied');
    const { public_port: port, protocol, server_ids: serverIds } = input;
    if (port == null || !protocol || !serverIds || serverIds.length === 0) throw invalid('Missing info.');
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalid("Field 'public_port' must be an integer between 1 and 65535.");
    if (!isProtocol(protocol)) throw invalid("Field 'protocol' must be one of: udp, tcp.");
    const servers = [...new Set(serverIds)];

    await this.ctx.db
      .transaction(async (transaction) => {
        for (const server of servers) {
          if (!(await this.services.servers.exists(server, transaction))) {
            throw invalid(`Field 'server_ids' names an unknown server: '${server}'.`);
          }
        }
        const row = (await Port.findOne({ where: { public_port: port, protocol }, transaction })) ?? (await Port.create({ public_port: port, protocol }, { transaction }));
        for (const server of servers) {
          const existing = await PortAssignment.findOne({ where: { port_id: row.id, server_identifier: server }, transaction });
          if (existing) {
            // Idempotent, and heals a claim lost by hand-edited data.
            await this.services.portRegistry.claim([{ server, port, protocol, owner: PORTS_OWNER }], transaction);
            continue;
          }
          // The default listener of a server already holds this claim; the registry
          // alone would wave a duplicate through, and releasing it later would free the default.
          if (await this.isDefaultPort(server, port, protocol, transaction)) {
            throw conflict(`Port ${port}/${protocol} on ${server} is already used by ${PORTS_TABLE_PROTOCOL.displayName} (the server's default port).`);
          }
          await this.services.portRegistry.claim([{ server, port, protocol, owner: PORTS_OWNER }], transaction);
          await PortAssignment.create({ port_id: row.id, server_identifier: server }, { transaction });
        }
      })
      .catch((error: unknown) => {
        if (error instanceof UniqueConstraintError) throw conflict('That port was changed concurrently; please try again.');
        throw error;
      });

    this.ctx.logger.info({ port, protocol, servers }, 'custom port configured');
    this.ctx.events.emit('ports.changed', {});
  }

  async deleteAssignment(principal: Principal, input: DeleteAssignmentInput): Promise<void> {
    requireMainAdmin(principal, 'Permission denied');
    const { port_id: portId, server_identifier: server } = input;
    if (portId == null || !server) throw invalid('Missing info.');

    const removed = await this.ctx.db.transaction(async (transaction) => {
      const assignment = await PortAssignment.findOne({ where: { port_id: portId, server_identifier: server }, transaction });
      const port = assignment ? await Port.findByPk(portId, { transaction }) : null;
      if (!assignment || !port) throw notFound('Port assignment not found.');
      await assignment.destroy({ transaction });
      if (!(await this.isDefaultPort(server, port.public_port, port.protocol, transaction))) {
        await this.services.portRegistry.release({ owner: PORTS_OWNER, server, port: port.public_port, protocol: port.protocol }, transaction);
      }
      if ((await PortAssignment.count({ where: { port_id: portId }, transaction })) === 0) await port.destroy({ transaction });
      return { port: port.public_port, protocol: port.protocol };
    });

    this.ctx.logger.info({ ...removed, server }, 'custom port assignment deleted');
    this.ctx.events.emit('ports.changed', {});
  }

  private async isDefaultPort(server: string, port: number, protocol: TransportProtocol, transaction: Transaction): Promise<boolean> {
    if (server === MAIN_SERVER.id) {
      const main = await this.services.servers.mainDefaultListener(transaction);
      return main.port === port && main.transport === protocol;
    }
    const nodeId = parseNodeServerId(server);
    if (nodeId === null) return false;
    const node = await NodeRecord.findByPk(nodeId, { raw: true, transaction });
    if (!node) return false;
    const d = nodeDefaultListener(node as unknown as Record<string, unknown>);
    return d.port === port && d.transport === protocol;
  }
}

const isProtocol = (value: string): value is TransportProtocol => (PROTOCOLS as readonly string[]).includes(value);

function requireMainAdmin(principal: Principal, denial: string): void {
  if (principal.kind !== 'main') throw forbidden(denial);
}
