/**
 * What a status parser feeds: the fallback tracker's side of native/src/tracker.h `Tracker`
 * (`textRow`, `malformed`, `pollMalformed`), so each parser reads like its C++ twin.
 */
export interface RowSink {
  /**
   * One session row. `user` is the username, or (when `byPublicKey`) the WireGuard public key to
   * resolve — only when the key is new or its username is still unknown.
   */
  row(key: string, user: string, byPublicKey: boolean, rx: number, tx: number, at: number, remote: string): void;
  /** Counts one malformed row in the current poll. */
  malformed(): void;
  /** Malformed rows counted in the current poll so far. */
  pollMalformed(): number;
}
