import { DataTypes, type QueryInterface } from 'sequelize';

const id = { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true };
const timestamps = {
  created_at: { type: DataTypes.DATE, allowNull: false },
  updated_at: { type: DataTypes.DATE, allowNull: false },
};
const big = (defaultValue = 0) => ({ type: DataTypes.BIGINT, allowNull: false, defaultValue });

export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.createTable('sub_admins', {
    id,
    username: { type: DataTypes.STRING(64), allowNull: false, unique: true },
    password_hash: { type: DataTypes.STRING(200), allowNull: false },
    subscription_port: { type: DataTypes.INTEGER, allowNull: true },
    panel_port: { type: DataTypes.INTEGER, allowNull: true },
    max_users_limit: { type: DataTypes.INTEGER, allowNull: true },
    total_usage_quota_gb: { type: DataTypes.DOUBLE, allowNull: true },
    is_active: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
    notes: { type: DataTypes.TEXT, allowNull: true },
    allowed_servers: { type: DataTypes.TEXT, allowNull: false, defaultValue: '[]' },
    used_traffic_bytes: big(),
    ...timestamps,
  });

  await qi.createTable('api_keys', {
    id,
    key_hash: { type: DataTypes.STRING(64), allowNull: false, unique: true },
    kind: { type: DataTypes.STRING(16), allowNull: false },
    sub_admin_id: { type: DataTypes.INTEGER, allowNull: true, references: { model: 'sub_admins', key: 'id' }, onDelete: 'CASCADE' },
    ...timestamps,
  });

  await qi.createTable('users', {
    id,
    username: { type: DataTypes.STRING(32), allowNull: false, unique: true },
    sub_admin_id: { type: DataTypes.INTEGER, allowNull: true, references: { model: 'sub_admins', key: 'id' }, onDelete: 'CASCADE' },
    is_active: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
    max_clients: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 1 },
    activation_type: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'fixed_date' },
    pending_activation_days: { type: DataTypes.INTEGER, allowNull: true },
    expiry_date: { type: DataTypes.DATE, allowNull: true },
    first_connection_at: { type: DataTypes.DATE, allowNull: true },
    data_limit: { type: DataTypes.DOUBLE, allowNull: false, defaultValue: 0 },
    data_limit_unit: { type: DataTypes.STRING(2), allowNull: false, defaultValue: 'GB' },
    data_limit_bytes: big(),
    data_limit_reset_strategy: { type: DataTypes.STRING(8), allowNull: false, defaultValue: 'no_reset' },
    last_traffic_reset_at: { type: DataTypes.DATE, allowNull: true },
    upload_bytes: big(),
    download_bytes: big(),
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
    ...timestamps,
  });
  await qi.addIndex('users', ['sub_admin_id']);

  await qi.createTable('subscription_tokens', {
    id,
    user_id: { type: DataTypes.INTEGER, allowNull: false, references: { model: 'users', key: 'id' }, onDelete: 'CASCADE' },
    token: { type: DataTypes.STRING(64), allowNull: false, unique: true },
    revoked_at: { type: DataTypes.DATE, allowNull: true },
    ...timestamps,
  });
  await qi.addIndex('subscription_tokens', ['user_id']);

  await qi.createTable('nodes', {
    id,
    name: { type: DataTypes.STRING(128), allowNull: false },
    ip_address: { type: DataTypes.STRING(255), allowNull: false },
    ssh_port: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 22 },
    ssh_username: { type: DataTypes.STRING(64), allowNull: false, defaultValue: 'root' },
    ssh_secret: { type: DataTypes.TEXT, allowNull: true },
    openvpn_port: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 1194 },
    protocol: { type: DataTypes.STRING(3), allowNull: false, defaultValue: 'udp' },
    sync_all_users: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
    communication_method: { type: DataTypes.STRING(32), allowNull: true },
    status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'installing' },
    status_message: { type: DataTypes.TEXT, allowNull: true },
    deletion_failed: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false },
    total_traffic_bytes: big(),
    ...timestamps,
  });

  await qi.createTable('ports', {
    id,
    public_port: { type: DataTypes.INTEGER, allowNull: false },
    protocol: { type: DataTypes.STRING(3), allowNull: false },
    ...timestamps,
  });
  await qi.addIndex('ports', ['public_port', 'protocol'], { unique: true });

  await qi.createTable('port_assignments', {
    id,
    port_id: { type: DataTypes.INTEGER, allowNull: false, references: { model: 'ports', key: 'id' }, onDelete: 'CASCADE' },
    server_identifier: { type: DataTypes.STRING(32), allowNull: false },
    ...timestamps,
  });
  await qi.addIndex('port_assignments', ['port_id', 'server_identifier'], { unique: true });

  // The one registry of who owns (server, port, protocol): OpenVPN instances, the panel,
  // resellers' panel/subscription listeners. Its unique index is what makes collisions impossible.
  await qi.createTable('port_reservations', {
    id,
    server_identifier: { type: DataTypes.STRING(32), allowNull: false },
    port: { type: DataTypes.INTEGER, allowNull: false },
    protocol: { type: DataTypes.STRING(3), allowNull: false },
    owner: { type: DataTypes.STRING(64), allowNull: false },
    ...timestamps,
  });
  await qi.addIndex('port_reservations', ['server_identifier', 'port', 'protocol'], { unique: true });
  await qi.addIndex('port_reservations', ['owner']);

  await qi.createTable('settings', {
    key: { type: DataTypes.STRING(64), primaryKey: true },
    value: { type: DataTypes.TEXT, allowNull: false },
    ...timestamps,
  });

  await qi.createTable('jobs', {
    id,
    kind: { type: DataTypes.STRING(32), allowNull: false },
    target: { type: DataTypes.STRING(64), allowNull: true },
    status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'queued' },
    progress: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
    message: { type: DataTypes.TEXT, allowNull: true },
    payload: { type: DataTypes.TEXT, allowNull: false, defaultValue: '{}' },
    ...timestamps,
  });
  await qi.addIndex('jobs', ['status']);
  await qi.addIndex('jobs', ['kind', 'target']);
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const t of ['jobs', 'settings', 'port_reservations', 'port_assignments', 'ports', 'nodes', 'subscription_tokens', 'users', 'api_keys', 'sub_admins']) {
    await qi.dropTable(t);
  }
}
