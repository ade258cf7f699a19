export * from './fields';
export { UsersService } from './service';
export { UserViews, type ClientConfigFormats, type LoadedUser } from './views';
export type { SubscriptionDetail, UserDetail, UserListItem } from '../user-view';
