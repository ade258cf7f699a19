// Status-text parsers. Each feeds the tracker one row per live session and returns whether the poll
// is complete (parsed to its end with no malformed session rows); only complete polls make
// absent sessions vanish. The exact rules are documented in native/fallback.ts.
#pragma once

#include "tracker.h"

namespace pg {

enum Format : int { kOpenVpnStatus3 = 0, kWgDump = 1, kOcservJson = 2, kSamples = 3 };

bool parseOpenVpnStatus3(Tracker& t, const char* p, size_t n);
bool parseWgDump(Tracker& t, const char* p, size_t n);
bool parseOcservJson(Tracker& t, const char* p, size_t n);
/** "avx2" or "baseline": which compiled copy of the parsers runs on this CPU. */
const char* parserIsa();

}  // namespace pg
