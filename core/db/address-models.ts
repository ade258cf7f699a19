import { DataTypes, Model, type CreationOptional, type InferAttributes, type InferCreationAttributes, type Sequelize } from 'sequelize';

/** One address of one pool, leased now (`user_id` set) or free again since `released_at`. */
export class AddressLease extends Model<InferAttributes<AddressLease>, InferCreationAttributes<AddressLease>> {
  declare id: CreationOptional<number>;
  declare pool: string;
  declare address: string;
  declare host_index: number;
  declare user_id: number | null;
  declare leased_at: Date;
  declare released_at: Date | null;
}

/** Registers the address models (the table comes from migration 0004). */
export function defineAddressModels(sequelize: Sequelize) {
  AddressLease.init(
    {
      id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
      pool: { type: DataTypes.STRING(18), allowNull: false },
      address: { type: DataTypes.STRING(15), allowNull: false },
      host_index: { type: DataTypes.INTEGER, allowNull: false },
      user_id: { type: DataTypes.INTEGER, allowNull: true },
      leased_at: { type: DataTypes.DATE, allowNull: false },
      released_at: { type: DataTypes.DATE, allowNull: true },
    },
    { sequelize, tableName: 'address_leases', timestamps: false, underscored: true },
  );
  return { AddressLease };
}
