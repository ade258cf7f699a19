/**
 * TypeScript implementation of the accounting tracker, used when the addon is not built (or
 * POLYGATE_FORCE_FALLBACK=1). It follows native/src/tracker.cc and parsers.cc rule for rule, and
 * the same test suite (including a randomized differential test) runs against both.
 *
 * Parsing rules (both implementations):
 * - Lines end at '\n'; one trailing '\r' is dropped; a last line without '\n' counts.
 * - Counters are decimal digits only, non-empty, at most 2^53-1; anything else makes the row
 *   malformed. A poll with a malformed row is incomplete: nothing vanishes in its scope.
 * - openvpn-status3: `HEADER\tCLIENT_LIST\t…` names the columns (Common Name, Bytes Received and
 *   Bytes Sent required; Real Address, Virtual Address, Virtual IPv6 Address, Connected Since
 *   (time_t), Username, Client ID optional); a later HEADER CLIENT_LIST replaces it. A
 *   `CLIENT_LIST` row before a valid header, or with fewer fields than the header needs, is
 *   malformed; a row with neither a virtual address nor a virtual IPv6 address (when the header
 *   has either column) is a connection still authenticating: skipped, not a session; then bad
 *   numbers make it malformed. User = Username unless empty or `UNDEF`, else Common Name. Key = scope:ClientID (an empty Client ID is malformed), or
 *   scope:CommonName:RealAddress without that column. Complete needs a valid header and `END`.
 * - wg-dump: blank lines skipped; 5 fields = interface line; 9 fields = peer (interface, public
 *   key, psk, endpoint, allowed ips, latest handshake, rx, tx, keepalive); anything else, an empty
 *   interface/public key or bad numbers is malformed. Handshake 0 = not a session. Endpoint
 *   `(none)` → ''. connectedAt = 0. Key = scope:interface:publickey.
 * - ocserv-json: a JSON array; elements that are not objects, and objects without a digits-only
 *   ID (number, or non-empty string), a string Username, or RX/TX (number or digit string) are
 *   malformed; raw_connected_at is optional (0), Remote IP optional (non-strings → ''). For
 *   duplicate fields the last wins. Strings are scanned with "backslash escapes the next
 *   character" and only decoded when used (invalid escapes then make the object malformed;
 *   lone \u surrogates become U+FFFD). Numbers are runs of [0-9+-.eE]. Nesting deeper than 64 or
 *   any syntax error stops parsing: the poll is incomplete, rows before the error count.
 */
// The implementation lives in native/fallback/, one file per responsibility as in native/src:
// tracker.ts (tracker.cc), one parser per status format (parsers_impl.h) and the scanning helpers
// they share. Callers import from here.
export { FallbackEngine } from './fallback/tracker';
