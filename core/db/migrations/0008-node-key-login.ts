import { DataTypes, type QueryInterface } from 'sequelize';

/**
 * Who the panel's own key logs in as on a node. A node added with a sudo-capable login gets
 * the panel's key installed for root (through sudo, once) and is driven as root from then on;
 * `ssh_username` stays what the operator gave. Null: the key logs in as `ssh_username`.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.addColumn('nodes', 'ssh_key_username', { type: DataTypes.STRING(64), allowNull: true });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.removeColumn('nodes', 'ssh_key_username');
}
