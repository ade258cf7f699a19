// Cold helpers shared by the two compiled copies of the hot parsing loops (parsers_impl.h).
#pragma once

#include <string>
#include <vector>

#include "common.h"

namespace pg {
namespace detail {

enum Role : int { kRNone = 0, kRCn, kRReal, kRRx, kRTx, kRSince, kRUser, kRCid, kRVaddr, kRVaddr6, kRoleCount };

struct OvpnHeader {
  bool valid = false;
  int idx[kRoleCount];
  int maxIdx = 0;
};

/** cols: the text after "HEADER\tCLIENT_LIST\t" (empty when the line has no columns). */
void parseOvpnHeader(const char* s, const char* e, OvpnHeader& h);

enum Kind : uint8_t { kAbsent = 0, kStr, kNum, kLit, kComposite };

struct Val {
  Kind kind = kAbsent;
  bool esc = false;
  Slice raw;
};

/** JSON string body (between the quotes) → UTF-8. False on an invalid escape. */
bool decodeJsonString(Slice raw, std::string& out);

enum Field : int { kFNone = -1, kFId = 0, kFUser, kFRemote, kFRx, kFTx, kFSince, kFieldCount };

int fieldOf(Slice k);
bool allDigits(Slice s);
bool jsonText(const Val& v, std::string& scratch, Slice& out);

}  // namespace detail
}  // namespace pg
