import type { ClientPlatform, SetupKind } from '../../../core/protocols/table';
import type { UserStatus } from '../../../core/services/user-status';

/**
 * Everything the subscription and error pages say, in one language. A new language is one
 * file exporting a `Language` and one line in ./index.ts. Values are plain text: the renderer
 * escapes them (and everything passed into the functions) itself.
 */
export interface Messages {
  pageTitle(username: string): string;
  languageSwitch: string;
  online: string;
  offline: string;
  status: Record<UserStatus, string>;

  usage: string;
  usedOf(used: string, limit: string): string;
  usedUnlimited(used: string): string;
  uploadDownload(upload: string, download: string): string;
  percentUsed(percent: string): string;
  usageBarLabel: string;

  expiry: string;
  never: string;
  startsAtFirstConnection: string;
  validForAfterStart(days: string, count: number): string;
  daysLeft(days: string, count: number): string;
  expiredOn: string;
  /** Shown under a date in the page's calendar and time zone, e.g. "Tehran time". */
  timeZoneNote: string;

  /** What an account in this state should do next; `active` has none. */
  nextSteps: Record<Exclude<UserStatus, 'active'>, { title: string; text: string }>;
  supportContact: string;
  noSupportContact: string;

  thisPage: string;
  thisPageHint: string;
  subscriptionLink: string;
  keepPrivate: string;

  copy: string;
  copied: string;
  copyFailed: string;
  copyLabel(what: string): string;

  username: string;
  password: string;
  servers: string;
  server: string;
  /** Labels of the protocol table's customer fields and config fields, by key; the table's English label is the fallback. */
  fields: Record<string, string>;
  config: string;
  download(file: string): string;
  qrOf: { config(app: string): string; link: string; page: string };
  qrAlt(what: string): string;
  showQr: string;

  howToConnect: string;
  apps: string;
  platforms: Record<ClientPlatform, string>;
  builtinApp(type: string): string;
  /** Steps per setup kind; `{name}` is the protocol's name, `{app}` its first app. */
  steps: Record<SetupKind, readonly string[]>;

  noProtocols: string;
  noServers: string;

  notFoundTitle: string;
  notFoundText: string;
  unavailableTitle: string;
  unavailableText: string;
  errorTitle: string;
  errorText: string;
  backToPage: string;
}

export interface Language {
  /** BCP 47 tag, also the `?lang=` value. */
  code: string;
  /** The language's own name, for the switch. */
  name: string;
  dir: 'ltr' | 'rtl';
  /** Locale for numbers (`Intl.NumberFormat`). */
  numberLocale: string;
  /** Byte units, powers of 1024: B, KB, MB, GB, TB, PB. */
  byteUnits: readonly [string, string, string, string, string, string];
  /** A date as this language's readers expect it. */
  formatDate(date: Date): string;
  messages: Messages;
}
