import { DataTypes, Model, type CreationOptional, type InferAttributes, type InferCreationAttributes, type Sequelize } from 'sequelize';

export class WebhookEndpoint extends Model<InferAttributes<WebhookEndpoint>, InferCreationAttributes<WebhookEndpoint>> {
  declare id: CreationOptional<number>;
  /** null = a global endpoint of the main admin. */
  declare sub_admin_id: number | null;
  declare url: string;
  /** Sealed with the data dir's key (core/secrets.ts). */
  declare secret: string;
  /** JSON array of event types; `[]` = every event. */
  declare events: CreationOptional<string>;
  declare enabled: CreationOptional<boolean>;
  declare description: string | null;
  declare created_at: CreationOptional<Date>;
  declare updated_at: CreationOptional<Date>;
}

export class WebhookState extends Model<InferAttributes<WebhookState>, InferCreationAttributes<WebhookState>> {
  declare subject: string;
  declare kind: 'user' | 'reseller' | 'node';
  declare ref_id: number;
  declare name: string | null;
  declare owner_id: number | null;
  /** JSON: what the detector last saw (see detector.ts). */
  declare state: string;
  declare updated_at: Date;
}

export class WebhookEvent extends Model<InferAttributes<WebhookEvent>, InferCreationAttributes<WebhookEvent>> {
  declare id: string;
  declare occurrence_key: string;
  declare type: string;
  declare subject: string;
  declare owner_id: number | null;
  declare occurred_at: Date;
  declare body: string;
}

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

export class WebhookDelivery extends Model<InferAttributes<WebhookDelivery>, InferCreationAttributes<WebhookDelivery>> {
  declare id: CreationOptional<number>;
  declare event_id: string;
  declare endpoint_id: number;
  declare subject: string;
  declare status: CreationOptional<DeliveryStatus>;
  declare attempts: CreationOptional<number>;
  declare next_attempt_at: Date;
  declare last_attempt_at: Date | null;
  declare last_status_code: number | null;
  declare last_error: string | null;
  declare delivered_at: Date | null;
  declare created_at: Date;
}

/** Registers the webhook models on a database (the tables come from migration 0006). */
export function defineWebhookModels(sequelize: Sequelize): void {
  WebhookEndpoint.init(
    {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      sub_admin_id: { type: DataTypes.INTEGER, allowNull: true },
      url: { type: DataTypes.STRING(2048), allowNull: false },
      secret: { type: DataTypes.TEXT, allowNull: false },
      events: { type: DataTypes.TEXT, allowNull: false, defaultValue: '[]' },
      enabled: { type: DataTypes.BOOLEAN, allowNull: false, defaultValue: true },
      description: { type: DataTypes.STRING(200), allowNull: true },
      created_at: { type: DataTypes.DATE },
      updated_at: { type: DataTypes.DATE },
    },
    { sequelize, tableName: 'webhook_endpoints', timestamps: true, createdAt: 'created_at', updatedAt: 'updated_at' },
  );
  WebhookState.init(
    {
      subject: { type: DataTypes.STRING(64), primaryKey: true },
      kind: { type: DataTypes.STRING(16), allowNull: false },
      ref_id: { type: DataTypes.INTEGER, allowNull: false },
      name: { type: DataTypes.STRING(128), allowNull: true },
      owner_id: { type: DataTypes.INTEGER, allowNull: true },
      state: { type: DataTypes.TEXT, allowNull: false },
      updated_at: { type: DataTypes.DATE, allowNull: false },
    },
    { sequelize, tableName: 'webhook_state', timestamps: false },
  );
  WebhookEvent.init(
    {
      id: { type: DataTypes.STRING(40), primaryKey: true },
      occurrence_key: { type: DataTypes.STRING(160), allowNull: false },
      type: { type: DataTypes.STRING(40), allowNull: false },
      subject: { type: DataTypes.STRING(64), allowNull: false },
      owner_id: { type: DataTypes.INTEGER, allowNull: true },
      occurred_at: { type: DataTypes.DATE, allowNull: false },
      body: { type: DataTypes.TEXT, allowNull: false },
    },
    { sequelize, tableName: 'webhook_events', timestamps: false },
  );
  WebhookDelivery.init(
    {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      event_id: { type: DataTypes.STRING(40), allowNull: false },
      endpoint_id: { type: DataTypes.INTEGER, allowNull: false },
      subject: { type: DataTypes.STRING(64), allowNull: false },
      status: { type: DataTypes.STRING(16), allowNull: false, defaultValue: 'pending' },
      attempts: { type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 },
      next_attempt_at: { type: DataTypes.DATE, allowNull: false },
      last_attempt_at: { type: DataTypes.DATE, allowNull: true },
      last_status_code: { type: DataTypes.INTEGER, allowNull: true },
      last_error: { type: DataTypes.STRING(300), allowNull: true },
      delivered_at: { type: DataTypes.DATE, allowNull: true },
      created_at: { type: DataTypes.DATE, allowNull: false },
    },
    { sequelize, tableName: 'webhook_deliveries', timestamps: false },
  );
}
