import { DataTypes, type QueryInterface } from 'sequelize';

/**
 * What provisioning pins and installs on a node: the SSH host key seen at preflight (every
 * later connection must present it), the panel's own key for the node (sealed; the password
 * is dropped once it works), the directory polygate's files live under on the node (so
 * deletion removes exactly that, whatever the setting is by then), and `is_tunnel`.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.addColumn('nodes', 'ssh_host_key', { type: DataTypes.STRING(128), allowNull: true });
  await qi.addColumn('nodes', 'ssh_private_key', { type: DataTypes.TEXT, allowNull: true });
  await qi.addColumn('nodes', 'install_root', { type: DataTypes.STRING(255), allowNull: true });
  await qi.addColumn('nodes', 'is_tunnel', { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: false });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  for (const column of ['is_tunnel', 'install_root', 'ssh_private_key', 'ssh_host_key']) await qi.removeColumn('nodes', column);
}
