import type { Transaction } from 'sequelize';
import { NodeRecord, Port, PortAssignment, Setting } from '../db';
import { PORTS_TABLE_PROTOCOL, PROTOCOLS, type DefaultPort, type ProtocolId, type ProtocolSpec, type Transport } from '../protocols/table';

export interface ServerRef {
  id: string;
  name: string;
}

/** A server with the address clients dial; null for the main server (the daemon's public host). */
export interface ServerWithAddress extends ServerRef {
  address: string | null;
}

/** One listener of one protocol on one server that a user may dial. */
export interface ProtocolEndpoint {
  /**
   * Link and file name. For the ports-table protocol the contract's `main_udp`,
   * `main_tcp_443`, `node_1_udp`; for the others `<server>_<protocol>`, e.g. `main_wireguard`.
   */
  name: string;
  protocol: ProtocolId;
  serverId: string;
  serverName: string;
  port: number;
  transport: Transport;
  /** The server's default listener (not a custom port from the ports table). */
  isDefault: boolean;
  portId: number | null;
  /** Address clients dial; null for the main server (the daemon's public host is used). */
  address: string | null;
}

export const MAIN_SERVER: ServerRef = Object.freeze({ id: 'main', name: 'Main Server' });
export const nodeServerId = (nodeId: number) => `node_${nodeId}`;
export const parseNodeServerId = (serverId: string): number | null => {
  const m = /^node_(\d+)$/.exec(serverId);
  return m ? Number(m[1]) : null;
};

const TABLE = PORTS_TABLE_PROTOCOL.portsTable;
/** Settings keys of the main server's default listener of the ports-table protocol. */
export const DEFAULT_LISTENER_PORT_SETTING = TABLE.mainPortSetting;
export const DEFAULT_LISTENER_TRANSPORT_SETTING = TABLE.mainTransportSetting;

type NodeRow = { id: number; name: string; ip_address: string } & Record<string, unknown>;

/** A node row's default listener of the ports-table protocol (its columns are named by the protocol table). */
export function nodeDefaultListener(node: Record<string, unknown>): { port: number; transport: Transport } {
  return { port: Number(node[TABLE.nodePortColumn]), transport: node[TABLE.nodeTransportColumn] === 'tcp' ? 'tcp' : 'udp' };
}

/** Servers (main + nodes) and every protocol's endpoints: the ports table for its protocol, default ports for the rest. */
export class ServersService {
  /** `defaultPorts`: a protocol's default listeners as configured (POLYGATE_<PROTOCOL>_PORT), the table's by default. */
  constructor(private readonly defaultPorts: (spec: ProtocolSpec) => readonly DefaultPort[] = (spec) => spec.defaultPorts) {}

  async list(transaction?: Transaction): Promise<ServerRef[]> {
    return (await this.listWithAddresses(transaction)).map(({ id, name }) => ({ id, name }));
  }

  async listWithAddresses(transaction?: Transaction): Promise<ServerWithAddress[]> {
    const nodes = await NodeRecord.findAll({ raw: true, attributes: ['id', 'name', 'ip_address'], order: [['id', 'ASC']], transaction });
    return [{ ...MAIN_SERVER, address: null }, ...nodes.map((n) => ({ id: nodeServerId(n.id), name: `Node: ${n.name}`, address: n.ip_address }))];
  }

  async exists(serverId: string, transaction?: Transaction): Promise<boolean> {
    if (serverId === MAIN_SERVER.id) return true;
    const id = parseNodeServerId(serverId);
    return id !== null && (await NodeRecord.count({ where: { id }, transaction })) > 0;
  }

  /** The main server's default listener of the ports-table protocol (a setting, editable per deployment). */
  async mainDefaultListener(transaction?: Transaction): Promise<{ port: number; transport: Transport }> {
    const rows = await Setting.findAll({ raw: true, transaction });
    const get = (k: string) => rows.find((r) => r.key === k)?.value;
    const fallback = PORTS_TABLE_PROTOCOL.defaultPorts[0]!;
    const transport = get(DEFAULT_LISTENER_TRANSPORT_SETTING);
    return { port: Number(get(DEFAULT_LISTENER_PORT_SETTING) ?? fallback.port), transport: transport === 'tcp' || transport === 'udp' ? transport : fallback.protocol };
  }

  /** Every endpoint of every protocol on every server, ports-table protocol first (the API's order). */
  async endpoints(transaction?: Transaction): Promise<ProtocolEndpoint[]> {
    const nodes = (await NodeRecord.findAll({ raw: true, order: [['id', 'ASC']], transaction })) as unknown as NodeRow[];
    const out = await this.portsTableEndpoints(nodes, transaction);
    const servers: ServerWithAddress[] = [{ ...MAIN_SERVER, address: null }, ...nodes.map((n) => ({ id: nodeServerId(n.id), name: `Node: ${n.name}`, address: n.ip_address }))];
    for (const p of PROTOCOLS) {
      if (p.listenerSource !== 'default-ports') continue;
      const shown = this.defaultPorts(p)[0]!;
      for (const s of servers) {
        out.push({ name: `${s.id}_${p.id}`, protocol: p.id, serverId: s.id, serverName: s.name, port: shown.port, transport: shown.protocol, isDefault: true, portId: null, address: s.address });
      }
    }
    return out;
  }

  /** Listeners one protocol runs on one server (what the reconciler hands its plugin). */
  async listenersOf(protocol: ProtocolId, serverId: string, transaction?: Transaction): Promise<Array<{ port: number; protocol: Transport }>> {
    if (protocol === PORTS_TABLE_PROTOCOL.id) {
      const endpoints = await this.endpoints(transaction);
      return endpoints.filter((e) => e.protocol === protocol && e.serverId === serverId).map((e) => ({ port: e.port, protocol: e.transport }));
    }
    const spec = PROTOCOLS.find((p) => p.id === protocol);
    return (spec ? this.defaultPorts(spec) : []).map((d) => ({ port: d.port, protocol: d.protocol }));
  }

  private async portsTableEndpoints(nodes: NodeRow[], transaction?: Transaction): Promise<ProtocolEndpoint[]> {
    const protocol = PORTS_TABLE_PROTOCOL.id;
    const main = await this.mainDefaultListener(transaction);
    const ports = await Port.findAll({ raw: true, transaction });
    const assignments = await PortAssignment.findAll({ raw: true, order: [['id', 'ASC']], transaction });
    const nodeById = new Map(nodes.map((n) => [nodeServerId(n.id), n]));
    const out: ProtocolEndpoint[] = [
      { name: `main_${main.transport}`, protocol, serverId: MAIN_SERVER.id, serverName: MAIN_SERVER.name, port: main.port, transport: main.transport, isDefault: true, portId: null, address: null },
    ];
    for (const n of nodes) {
      const serverId = nodeServerId(n.id);
      const d = nodeDefaultListener(n);
      out.push({ name: `${serverId}_${d.transport}`, protocol, serverId, serverName: `Node: ${n.name}`, port: d.port, transport: d.transport, isDefault: true, portId: null, address: n.ip_address });
    }
    const portById = new Map(ports.map((p) => [p.id, p]));
    for (const a of assignments) {
      const p = portById.get(a.port_id);
      if (!p) continue;
      const node = nodeById.get(a.server_identifier);
      if (a.server_identifier !== MAIN_SERVER.id && !node) continue;
      out.push({
        name: `${a.server_identifier}_${p.protocol}_${p.public_port}`,
        protocol,
        serverId: a.server_identifier,
        serverName: node ? `Node: ${node.name}` : MAIN_SERVER.name,
        port: p.public_port,
        transport: p.protocol,
        isDefault: false,
        portId: p.id,
        address: node ? node.ip_address : null,
      });
    }
    return out;
  }
}
