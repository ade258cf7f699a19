import { DataTypes, type QueryInterface } from 'sequelize';

/**
 * `sub_admins.support_contact`: what a reseller's customers are told to contact when their
 * account needs attention (a Telegram handle, a URL, a phone number). NULL falls back to the
 * operator's global contact, a `settings` row, which needs no schema.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.addColumn('sub_admins', 'support_contact', { type: DataTypes.STRING(200), allowNull: true });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.removeColumn('sub_admins', 'support_contact');
}
