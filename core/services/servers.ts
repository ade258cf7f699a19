import type { Transaction } from 'sequelize';
import { NodeRecord, Port, PortAssignment, Setting } from '../db';

export interface ServerRef {
  id: string;
  name: string;
}

/** One OpenVPN listener a user may get a profile for. */
export interface OpenVpnEndpoint {
  /** Link and file name, e.g. `main_udp`, `main_tcp_443`, `node_1_udp`. */
  name: string;
  serverId: string;
  serverName: string;
  port: number;
  protocol: 'udp' | 'tcp';
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

export const DEFAULT_OPENVPN_PORT_SETTING = 'openvpn_default_port';
export const DEFAULT_OPENVPN_PROTOCOL_SETTING = 'openvpn_default_protocol';

/** Servers (main + nodes) and the OpenVPN endpoints derived from the ports table. */
export class ServersService {
  async list(transaction?: Transaction): Promise<ServerRef[]> {
    const nodes = await NodeRecord.findAll({ raw: true, attributes: ['id', 'name'], order: [['id', 'ASC']], transaction });
    return [MAIN_SERVER, ...nodes.map((n) => ({ id: nodeServerId(n.id), name: `Node: ${n.name}` }))];
  }

  async exists(serverId: string, transaction?: Transaction): Promise<boolean> {
    if (serverId === 'main') return true;
    const id = parseNodeServerId(serverId);
    return id !== null && (await NodeRecord.count({ where: { id }, transaction })) > 0;
  }

  async mainDefaultOpenVpn(transaction?: Transaction): Promise<{ port: number; protocol: 'udp' | 'tcp' }> {
    const rows = await Setting.findAll({ raw: true, transaction });
    const get = (k: string) => rows.find((r) => r.key === k)?.value;
    return {
      port: Number(get(DEFAULT_OPENVPN_PORT_SETTING) ?? 1194),
      protocol: (get(DEFAULT_OPENVPN_PROTOCOL_SETTING) as 'udp' | 'tcp' | undefined) ?? 'udp',
    };
  }

  async openVpnEndpoints(transaction?: Transaction): Promise<OpenVpnEndpoint[]> {
    const main = await this.mainDefaultOpenVpn(transaction);
    const nodes = await NodeRecord.findAll({ raw: true, order: [['id', 'ASC']], transaction });
    const ports = await Port.findAll({ raw: true, transaction });
    const assignments = await PortAssignment.findAll({ raw: true, order: [['id', 'ASC']], transaction });
    const nodeById = new Map(nodes.map((n) => [nodeServerId(n.id), n]));
    const out: OpenVpnEndpoint[] = [
      { name: `main_${main.protocol}`, serverId: 'main', serverName: MAIN_SERVER.name, port: main.port, protocol: main.protocol, isDefault: true, portId: null, address: null },
    ];
    for (const n of nodes) {
      const serverId = nodeServerId(n.id);
      out.push({ name: `${serverId}_${n.protocol}`, serverId, serverName: `Node: ${n.name}`, port: n.openvpn_port, protocol: n.protocol, isDefault: true, portId: null, address: n.ip_address });
    }
    const portById = new Map(ports.map((p) => [p.id, p]));
    for (const a of assignments) {
      const p = portById.get(a.port_id);
      if (!p) continue;
      const node = nodeById.get(a.server_identifier);
      if (a.server_identifier !== 'main' && !node) continue;
      out.push({
        name: `${a.server_identifier}_${p.protocol}_${p.public_port}`,
        serverId: a.server_identifier,
        serverName: node ? `Node: ${node.name}` : MAIN_SERVER.name,
        port: p.public_port,
        protocol: p.protocol,
        isDefault: false,
        portId: p.id,
        address: node ? node.ip_address : null,
      });
    }
    return out;
  }
}
