import { DataTypes, type QueryInterface } from 'sequelize';

const id = { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true };

/**
 * Webhooks (`core/webhooks`):
 * - `webhook_endpoints`: where events go. `sub_admin_id` NULL = a global endpoint of the main
 *   admin (every event); set = a reseller's (its own users' events and its own quota event).
 *   `secret` is sealed with the data dir's key, like node SSH passwords: it must be read back
 *   to sign, and a copied database alone must not reveal it.
 * - `webhook_state`: what the detector last saw per subject (`user:<id>`, `reseller:<id>`,
 *   `node:<id>`), so an occurrence is announced once: it is updated in the same transaction
 *   that writes the event. Existing users are seeded as a baseline so upgrading announces
 *   nothing that happened before.
 * - `webhook_events`: the outbox. `occurrence_key` is unique, so re-detecting an occurrence
 *   (a sweep after a crash) cannot queue it twice.
 * - `webhook_deliveries`: one row per event and endpoint; `id` orders them, and a subject's
 *   deliveries to an endpoint are sent one after the other in that order.
 */
export async function up({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.sequelize.transaction(async (transaction) => {
    await qi.createTable(
      'webhook_endpoints',
      {
        id,
        sub_admin_id: { type: DataTypes.INTEGER, allowNull: true },
        url: { type: DataTypes.STRING(2048), allowNull: false },
        secret: { type: DataTypes.TEXT, allowNull: false },
        /** JSON array of event types; empty = every event. */
        events: { type: DataTypes.TEXT, allowNull: false, defaultValue: '[]' },
        enabled: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
        description: { type: DataTypes.STRING(200), allowNull: true },
        created_at: { type: DataTypes.DATE, allowNull: false },
        updated_at: { type: DataTypes.DATE, allowNull: false },
      },
      { transaction },
    );
    await qi.addIndex('webhook_endpoints', ['sub_admin_id'], { name: 'webhook_endpoints_owner', transaction });

    await qi.createTable(
      'webhook_state',
      {
        subject: { type: DataTypes.STRING(64), primaryKey: true },
        kind: { type: DataTypes.STRING(16), allowNull: false },
        ref_id: { type: DataTypes.INTEGER, allowNull: false },
        /** The username (users): a deleted user is found by name, its row being gone. */
        name: { type: DataTypes.STRING(128), allowNull: true },
        owner_id: { type: DataTypes.INTEGER, allowNull: true },
        state: { type: DataTypes.TEXT, allowNull: false },
        updated_at: { type: DataTypes.DATE, allowNull: false },
      },
      { transaction },
    );
    await qi.addIndex('webhook_state', ['kind', 'name'], { name: 'webhook_state_kind_name', transaction });

    await qi.createTable(
      'webhook_events',
      {
        /** The event id receivers see (`evt_…`), stable across retries. */
        id: { type: DataTypes.STRING(40), primaryKey: true },
        occurrence_key: { type: DataTypes.STRING(160), allowNull: false },
        type: { type: DataTypes.STRING(40), allowNull: false },
        subject: { type: DataTypes.STRING(64), allowNull: false },
        owner_id: { type: DataTypes.INTEGER, allowNull: true },
        occurred_at: { type: DataTypes.DATE, allowNull: false },
        /** The JSON body sent, exactly (signatures cover these bytes). */
        body: { type: DataTypes.TEXT, allowNull: false },
      },
      { transaction },
    );
    await qi.addIndex('webhook_events', ['occurrence_key'], { unique: true, name: 'webhook_events_occurrence', transaction });

    await qi.createTable(
      'webhook_deliveries',
      {
        id,
        event_id: { type: DataTypes.STRING(40), allowNull: false, references: { model: 'webhook_events', key: 'id' }, onDelete: 'CASCADE' },
        endpoint_id: { type: DataTypes.INTEGER, allowNull: false, references: { model: 'webhook_endpoints', key: 'id' }, onDelete: 'CASCADE' },
        subject: { type: DataTypes.STRING(64), allowNull: false },
        /** pending | delivered | failed (gave up). */
        status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'pending' },
        attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
        next_attempt_at: { type: DataTypes.DATE, allowNull: false },
        last_attempt_at: { type: DataTypes.DATE, allowNull: true },
        last_status_code: { type: DataTypes.INTEGER, allowNull: true },
        last_error: { type: DataTypes.STRING(300), allowNull: true },
        delivered_at: { type: DataTypes.DATE, allowNull: true },
        created_at: { type: DataTypes.DATE, allowNull: false },
      },
      { transaction },
    );
    await qi.addIndex('webhook_deliveries', ['event_id', 'endpoint_id'], { unique: true, name: 'webhook_deliveries_event_endpoint', transaction });
    await qi.addIndex('webhook_deliveries', ['status', 'id'], { name: 'webhook_deliveries_status', transaction });
    await qi.addIndex('webhook_deliveries', ['endpoint_id', 'id'], { name: 'webhook_deliveries_endpoint', transaction });

    await qi.sequelize.query(
      "INSERT INTO webhook_state (subject, kind, ref_id, name, owner_id, state, updated_at) " +
        "SELECT 'user:' || CAST(id AS TEXT), 'user', id, username, sub_admin_id, '{\"baseline\":true}', CURRENT_TIMESTAMP FROM users",
      { transaction },
    );
  });
}

export async function down({ context: qi }: { context: QueryInterface }): Promise<void> {
  await qi.dropTable('webhook_deliveries');
  await qi.dropTable('webhook_events');
  await qi.dropTable('webhook_state');
  await qi.dropTable('webhook_endpoints');
}
