import { DataTypes, Model, type CreationOptional, type InferAttributes, type InferCreationAttributes, type Sequelize } from 'sequelize';
import { bigint } from './models';

/** Bytes of one user on one server and protocol during one UTC day (rx = upload, tx = download). */
export class UsageDaily extends Model<InferAttributes<UsageDaily>, InferCreationAttributes<UsageDaily>> {
  declare id: CreationOptional<number>;
  declare user_id: number;
  declare server_id: string;
  declare protocol: string;
  declare day: string;
  declare rx: CreationOptional<number>;
  declare tx: CreationOptional<number>;
}

/** One part (`members` or `counters`) of one shard of one source's accounting journal. */
export class AccountingJournalShard extends Model<InferAttributes<AccountingJournalShard>, InferCreationAttributes<AccountingJournalShard>> {
  declare id: CreationOptional<number>;
  declare source_id: string;
  declare shard: number;
  declare part: 'members' | 'counters';
  declare data: CreationOptional<string>;
  declare updated_at_ms: number;
}

/** A disconnect event with final counters, waiting to be counted by the next tick. */
export class AccountingEnded extends Model<InferAttributes<AccountingEnded>, InferCreationAttributes<AccountingEnded>> {
  declare id: CreationOptional<number>;
  declare session_key: string;
  declare protocol: string;
  declare server_id: string;
  declare username: string;
  declare connected_at: number;
  declare rx: number;
  declare tx: number;
  declare reason: CreationOptional<string>;
  declare received_at_ms: number;
}

const options = (sequelize: Sequelize, tableName: string) => ({ sequelize, tableName, timestamps: false, underscored: true });
const pk = { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true } as const;

/** Registers the accounting models (tables come from migration 0002). */
export function defineAccountingModels(sequelize: Sequelize) {
  UsageDaily.init(
    {
      id: pk,
      user_id: { type: DataTypes.INTEGER, allowNull: false },
      server_id: { type: DataTypes.STRING(32), allowNull: false },
      protocol: { type: DataTypes.STRING(16), allowNull: false },
      day: { type: DataTypes.STRING(10), allowNull: false },
      rx: bigint('rx'),
      tx: bigint('tx'),
    },
    options(sequelize, 'usage_daily'),
  );
  AccountingJournalShard.init(
    {
      id: pk,
      source_id: { type: DataTypes.STRING(64), allowNull: false },
      shard: { type: DataTypes.INTEGER, allowNull: false },
      part: { type: DataTypes.STRING(8), allowNull: false },
      data: { type: DataTypes.TEXT, allowNull: false, defaultValue: '' },
      updated_at_ms: bigint('updated_at_ms'),
    },
    options(sequelize, 'accounting_journal'),
  );
  AccountingEnded.init(
    {
      id: pk,
      session_key: { type: DataTypes.STRING(512), allowNull: false },
      protocol: { type: DataTypes.STRING(16), allowNull: false },
      server_id: { type: DataTypes.STRING(32), allowNull: false },
      username: { type: DataTypes.STRING(255), allowNull: false },
      connected_at: bigint('connected_at'),
      rx: bigint('rx'),
      tx: bigint('tx'),
      reason: { type: DataTypes.STRING(255), allowNull: false, defaultValue: '' },
      received_at_ms: bigint('received_at_ms'),
    },
    options(sequelize, 'accounting_ended'),
  );
  return { UsageDaily, AccountingJournalShard, AccountingEnded };
}
