/**
 * Raw status formats the native accounting parser reads, one per daemon's status interface
 * (OpenVPN's `status 3`, `wg show all dump`, `occtl --json show users`). A plugin declares the
 * one it answers polls in (`capabilities.poll`).
 */
export const STATUS_FORMATS = ['openvpn-status3', 'wg-dump', 'ocserv-json'] as const;
export type StatusFormat = (typeof STATUS_FORMATS)[number];
