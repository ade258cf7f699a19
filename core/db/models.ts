import {
  DataTypes,
  Model,
  type CreationOptional,
  type ForeignKey,
  type InferAttributes,
  type InferCreationAttributes,
  type ModelAttributeColumnOptions,
  type Sequelize,
} from 'sequelize';

/** BIGINT comes back as a string on PostgreSQL; byte counters fit in a double (2^53). */
export function bigint(name: string, defaultValue = 0): ModelAttributeColumnOptions {
  return {
    type: DataTypes.BIGINT,
    allowNull: false,
    defaultValue,
    get(this: Model) {
      const v = this.getDataValue(name as never);
      return v === null || v === undefined ? 0 : Number(v);
    },
  };
}

export class SubAdmin extends Model<InferAttributes<SubAdmin>, InferCreationAttributes<SubAdmin>> {
  declare id: CreationOptional<number>;
  declare username: string;
  declare password_hash: string;
  declare subscription_port: number | null;
  declare panel_port: number | null;
  declare max_users_limit: number | null;
  declare total_usage_quota_gb: number | null;
  declare is_active: CreationOptional<boolean>;
  declare notes: string | null;
  /** Shown to the reseller's customers; null = the global one. */
  declare support_contact: CreationOptional<string | null>;
  /** JSON array of server ids. */
  declare allowed_servers: CreationOptional<string>;
  declare used_traffic_bytes: CreationOptional<number>;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export class ApiKey extends Model<InferAttributes<ApiKey>, InferCreationAttributes<ApiKey>> {
  declare id: CreationOptional<number>;
  declare key_hash: string;
  declare kind: 'main' | 'sub_admin';
  declare sub_admin_id: ForeignKey<SubAdmin['id']> | null;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export class User extends Model<InferAttributes<User>, InferCreationAttributes<User>> {
  declare id: CreationOptional<number>;
  declare username: string;
  declare sub_admin_id: ForeignKey<SubAdmin['id']> | null;
  declare is_active: CreationOptional<boolean>;
  declare max_clients: CreationOptional<number>;
  declare activation_type: CreationOptional<'fixed_date' | 'flexible_days'>;
  declare pending_activation_days: number | null;
  declare expiry_date: Date | null;
  declare first_connection_at: Date | null;
  declare data_limit: CreationOptional<number>;
  declare data_limit_unit: CreationOptional<'MB' | 'GB' | 'TB'>;
  declare data_limit_bytes: CreationOptional<number>;
  declare data_limit_reset_strategy: CreationOptional<'no_reset' | 'day' | 'week' | 'month' | 'year'>;
  declare last_traffic_reset_at: Date | null;
  declare enable_openvpn: CreationOptional<boolean>;
  declare openvpn_password: string | null;
  declare enable_l2tp: CreationOptional<boolean>;
  declare l2tp_password: string | null;
  declare enable_cisco: CreationOptional<boolean>;
  declare cisco_password: string | null;
  declare enable_wg: CreationOptional<boolean>;
  declare wg_private_key: string | null;
  declare wg_public_key: string | null;
  declare wg_address: string | null;
  /** JSON array of server ids, or null for "every server the owner may use". */
  declare nodes: string | null;
  declare notes: string | null;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

/**
 * A user's usage counters, apart from the wide `users` row so an accounting tick rewrites only
 * these narrow rows. A user has no row until it has used bytes: read with a LEFT JOIN and
 * COALESCE(…, 0). Deleted with its user (ON DELETE CASCADE).
 */
export class UserUsage extends Model<InferAttributes<UserUsage>, InferCreationAttributes<UserUsage>> {
  declare user_id: number;
  declare upload_bytes: CreationOptional<number>;
  declare download_bytes: CreationOptional<number>;
}

export class SubscriptionToken extends Model<InferAttributes<SubscriptionToken>, InferCreationAttributes<SubscriptionToken>> {
  declare id: CreationOptional<number>;
  declare user_id: ForeignKey<User['id']>;
  declare token: string;
  declare revoked_at: Date | null;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export type NodeStatus = 'installing' | 'active' | 'error' | 'deleting' | 'offline';

export class NodeRecord extends Model<InferAttributes<NodeRecord>, InferCreationAttributes<NodeRecord>> {
  declare id: CreationOptional<number>;
  declare name: string;
  declare ip_address: string;
  declare ssh_port: CreationOptional<number>;
  declare ssh_username: CreationOptional<string>;
  /** The SSH password sealed with the data dir's secret key (see core/secrets.ts), until a key replaces it. */
  declare ssh_secret: string | null;
  declare openvpn_port: CreationOptional<number>;
  declare protocol: CreationOptional<'udp' | 'tcp'>;
  declare sync_all_users: CreationOptional<boolean>;
  declare communication_method: string | null;
  /** Operator's flag that the node reaches the world through a tunnel; stored and returned, no behaviour (see docs/nodes.md). */
  declare is_tunnel: CreationOptional<boolean>;
  /** SSH host key fingerprint pinned at preflight (`SHA256:…`); every later connection must present it. */
  declare ssh_host_key: CreationOptional<string | null>;
  /** The panel's ed25519 key for this node, sealed; replaces the password once provisioning installed it. */
  declare ssh_private_key: CreationOptional<string | null>;
  /** Who the panel's key logs in as when not `ssh_username` (root, for a login that installed it through sudo). */
  declare ssh_key_username: CreationOptional<string | null>;
  /** Directory on the node that holds everything polygate installed there. */
  declare install_root: CreationOptional<string | null>;
  declare status: CreationOptional<NodeStatus>;
  declare status_message: string | null;
  declare deletion_failed: CreationOptional<boolean>;
  declare total_traffic_bytes: CreationOptional<number>;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export class Port extends Model<InferAttributes<Port>, InferCreationAttributes<Port>> {
  declare id: CreationOptional<number>;
  declare public_port: number;
  declare protocol: 'udp' | 'tcp';
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export class PortAssignment extends Model<InferAttributes<PortAssignment>, InferCreationAttributes<PortAssignment>> {
  declare id: CreationOptional<number>;
  declare port_id: ForeignKey<Port['id']>;
  declare server_identifier: string;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export class PortReservation extends Model<InferAttributes<PortReservation>, InferCreationAttributes<PortReservation>> {
  declare id: CreationOptional<number>;
  declare server_identifier: string;
  declare port: number;
  declare protocol: 'udp' | 'tcp';
  /** e.g. `panel`, `openvpn`, `sub_admin:3:panel`, `sub_admin:3:subscription`. */
  declare owner: string;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export class Setting extends Model<InferAttributes<Setting>, InferCreationAttributes<Setting>> {
  declare key: string;
  declare value: string;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export type JobStatus = 'queued' | 'running' | 'done' | 'error';

export class Job extends Model<InferAttributes<Job>, InferCreationAttributes<Job>> {
  declare id: CreationOptional<number>;
  declare kind: string;
  declare target: string | null;
  declare status: CreationOptional<JobStatus>;
  declare progress: CreationOptional<number>;
  declare message: string | null;
  declare payload: CreationOptional<string>;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

const common = (sequelize: Sequelize, tableName: string) => ({
  sequelize,
  tableName,
  underscored: true,
  timestamps: true,
  createdAt: 'created_at',
  updatedAt: 'updated_at',
});
const ts = {
  created_at: { type: DataTypes.DATE, allowNull: false },
  updated_at: { type: DataTypes.DATE, allowNull: false },
} as const;
const pk = { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true } as const;

export function defineModels(sequelize: Sequelize) {
  SubAdmin.init(
    {
      id: pk,
      username: { type: DataTypes.STRING(64), allowNull: false, unique: true },
      password_hash: { type: DataTypes.STRING(200), allowNull: false },
      subscription_port: { type: DataTypes.INTEGER, allowNull: true },
      panel_port: { type: DataTypes.INTEGER, allowNull: true },
      max_users_limit: { type: DataTypes.INTEGER, allowNull: true },
      total_usage_quota_gb: { type: DataTypes.DOUBLE, allowNull: true },
      is_active: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
      notes: { type: DataTypes.TEXT, allowNull: true },
      support_contact: { type: DataTypes.STRING(200), allowNull: true },
      allowed_servers: { type: DataTypes.TEXT, allowNull: false, defaultValue: '[]' },
      used_traffic_bytes: bigint('used_traffic_bytes'),
      ...ts,
    },
    common(sequelize, 'sub_admins'),
  );
  ApiKey.init(
    {
      id: pk,
      key_hash: { type: DataTypes.STRING(64), allowNull: false, unique: true },
      kind: { type: DataTypes.STRING(16), allowNull: false },
      sub_admin_id: { type: DataTypes.INTEGER, allowNull: true },
      ...ts,
    },
    common(sequelize, 'api_keys'),
  );
  User.init(
    {
      id: pk,
      username: { type: DataTypes.STRING(32), allowNull: false, unique: true },
      sub_admin_id: { type: DataTypes.INTEGER, allowNull: true },
      is_active: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
      max_clients: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 1 },
      activation_type: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'fixed_date' },
      pending_activation_days: { type: DataTypes.INTEGER, allowNull: true },
      expiry_date: { type: DataTypes.DATE, allowNull: true },
      first_connection_at: { type: DataTypes.DATE, allowNull: true },
      data_limit: { type: DataTypes.DOUBLE, allowNull: false, defaultValue: 0 },
      data_limit_unit: { type: DataTypes.STRING(2), allowNull: false, defaultValue: 'GB' },
      data_limit_bytes: bigint('data_limit_bytes'),
      data_limit_reset_strategy: { type: DataTypes.STRING(8), allowNull: false, defaultValue: 'no_reset' },
      last_traffic_reset_at: { type: DataTypes.DATE, allowNull: true },
      enable_openvpn: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
      openvpn_password: { type: DataTypes.STRING(128), allowNull: true },
      enable_l2tp: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      l2tp_password: { type: DataTypes.STRING(128), allowNull: true },
      enable_cisco: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      cisco_password: { type: DataTypes.STRING(128), allowNull: true },
      enable_wg: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      wg_private_key: { type: DataTypes.STRING(64), allowNull: true },
      wg_public_key: { type: DataTypes.STRING(64), allowNull: true },
      wg_address: { type: DataTypes.STRING(64), allowNull: true },
      nodes: { type: DataTypes.TEXT, allowNull: true },
      notes: { type: DataTypes.TEXT, allowNull: true },
      ...ts,
    },
    common(sequelize, 'users'),
  );
  UserUsage.init(
    {
      user_id: { type: DataTypes.INTEGER, primaryKey: true, allowNull: false },
      upload_bytes: bigint('upload_bytes'),
      download_bytes: bigint('download_bytes'),
    },
    { sequelize, tableName: 'user_usage', underscored: true, timestamps: false },
  );
  SubscriptionToken.init(
    {
      id: pk,
      user_id: { type: DataTypes.INTEGER, allowNull: false },
      token: { type: DataTypes.STRING(64), allowNull: false, unique: true },
      revoked_at: { type: DataTypes.DATE, allowNull: true },
      ...ts,
    },
    common(sequelize, 'subscription_tokens'),
  );
  NodeRecord.init(
    {
      id: pk,
      name: { type: DataTypes.STRING(128), allowNull: false },
      ip_address: { type: DataTypes.STRING(255), allowNull: false },
      ssh_port: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 22 },
      ssh_username: { type: DataTypes.STRING(64), allowNull: false, defaultValue: 'root' },
      ssh_secret: { type: DataTypes.TEXT, allowNull: true },
      openvpn_port: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 1194 },
      protocol: { type: DataTypes.STRING(3), allowNull: false, defaultValue: 'udp' },
      sync_all_users: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      communication_method: { type: DataTypes.STRING(32), allowNull: true },
      is_tunnel: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      ssh_host_key: { type: DataTypes.STRING(128), allowNull: true },
      ssh_private_key: { type: DataTypes.TEXT, allowNull: true },
      install_root: { type: DataTypes.STRING(255), allowNull: true },
      ssh_key_username: { type: DataTypes.STRING(64), allowNull: true },
      status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'installing' },
      status_message: { type: DataTypes.TEXT, allowNull: true },
      deletion_failed: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
      total_traffic_bytes: bigint('total_traffic_bytes'),
      ...ts,
    },
    common(sequelize, 'nodes'),
  );
  Port.init(
    {
      id: pk,
      public_port: { type: DataTypes.INTEGER, allowNull: false },
      protocol: { type: DataTypes.STRING(3), allowNull: false },
      ...ts,
    },
    common(sequelize, 'ports'),
  );
  PortAssignment.init(
    {
      id: pk,
      port_id: { type: DataTypes.INTEGER, allowNull: false },
      server_identifier: { type: DataTypes.STRING(32), allowNull: false },
      ...ts,
    },
    common(sequelize, 'port_assignments'),
  );
  PortReservation.init(
    {
      id: pk,
      server_identifier: { type: DataTypes.STRING(32), allowNull: false },
      port: { type: DataTypes.INTEGER, allowNull: false },
      protocol: { type: DataTypes.STRING(3), allowNull: false },
      owner: { type: DataTypes.STRING(64), allowNull: false },
      ...ts,
    },
    common(sequelize, 'port_reservations'),
  );
  Setting.init(
    {
      key: { type: DataTypes.STRING(64), primaryKey: true },
      value: { type: DataTypes.TEXT, allowNull: false },
      ...ts,
    },
    common(sequelize, 'settings'),
  );
  Job.init(
    {
      id: pk,
      kind: { type: DataTypes.STRING(32), allowNull: false },
      target: { type: DataTypes.STRING(64), allowNull: true },
      status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'queued' },
      progress: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
      message: { type: DataTypes.TEXT, allowNull: true },
      payload: { type: DataTypes.TEXT, allowNull: false, defaultValue: '{}' },
      ...ts,
    },
    common(sequelize, 'jobs'),
  );
  User.hasMany(SubscriptionToken, { foreignKey: 'user_id', as: 'tokens' });
  Port.hasMany(PortAssignment, { foreignKey: 'port_id', as: 'assignments' });
  PortAssignment.belongsTo(Port, { foreignKey: 'port_id', as: 'port' });
  return { SubAdmin, ApiKey, User, UserUsage, SubscriptionToken, NodeRecord, Port, PortAssignment, PortReservation, Setting, Job };
}
