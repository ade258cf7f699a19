// Status-text parsers: cold helpers here, hot loops in parsers_impl.h (compiled twice).
#include "parsers.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "parsers_detail.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#endif

namespace pg {
namespace detail {

// ---------------------------------------------------------------------------------------------
// OpenVPN `status 3` header

static int roleOf(Slice name) {
  switch (name.n) {
    case 8:
      if (name.equals("Username", 8)) return kRUser;
      break;
    case 9:
      if (name.equals("Client ID", 9)) return kRCid;
      break;
    case 10:
      if (name.equals("Bytes Sent", 10)) return kRTx;
      break;
    case 11:
      if (name.equals("Common Name", 11)) return kRCn;
      break;
    case 12:
      if (name.equals("Real Address", 12)) return kRReal;
      break;
    case 14:
      if (name.equals("Bytes Received", 14)) return kRRx;
      break;
    case 15:
      if (name.equals("Virtual Address", 15)) return kRVaddr;
      break;
    case 20:
      if (name.equals("Virtual IPv6 Address", 20)) return kRVaddr6;
      break;
    case 24:
      if (name.equals("Connected Since (time_t)", 24)) return kRSince;
      break;
    default:
      break;
  }
  return kRNone;
}

void parseOvpnHeader(const char* s, const char* e, OvpnHeader& h) {
  for (int& i : h.idx) i = -1;
  int col = 1;  // column j of the header is field j (1-based) of a CLIENT_LIST row
  const char* q = s;
  for (;;) {
    const char* fe = findTabOrNl(q, e);
    int role = roleOf(Slice(q, static_cast<size_t>(fe - q)));
    if (role != kRNone && h.idx[role] < 0) h.idx[role] = col;
    if (fe >= e) break;
    q = fe + 1;
    ++col;
  }
  h.valid = h.idx[kRCn] >= 0 && h.idx[kRRx] >= 0 && h.idx[kRTx] >= 0;
  h.maxIdx = 0;
  for (int r = 1; r < kRoleCount; ++r) h.maxIdx = std::max(h.maxIdx, h.idx[r]);
}


// ---------------------------------------------------------------------------------------------
// JSON helpers

static int hexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool decodeJsonString(Slice raw, std::string& out) {
  out.clear();
  const char* s = raw.p;
  const char* e = raw.p + raw.n;
  while (s < e) {
    const char* b = static_cast<const char*>(std::memchr(s, '\\', static_cast<size_t>(e - s)));
    if (!b) {
      out.append(s, static_cast<size_t>(e - s));
      break;
    }
    out.append(s, static_cast<size_t>(b - s));
    if (b + 1 >= e) return false;
    char c = b[1];
    s = b + 2;
    switch (c) {
      case '"': out.push_back('"'); break;
      case '\\': out.push_back('\\'); break;
      case '/': out.push_back('/'); break;
      case 'b': out.push_back('\b'); break;
      case 'f': out.push_back('\f'); break;
      case 'n': out.push_back('\n'); break;
      case 'r': out.push_back('\r'); break;
      case 't': out.push_back('\t'); break;
      case 'u': {
        auto hex4 = [&](const char* h, uint32_t& v) {
          if (e - h < 4) return false;
          v = 0;
          for (int i = 0; i < 4; ++i) {
            int d = hexVal(h[i]);
            if (d < 0) return false;
            v = (v << 4) | static_cast<uint32_t>(d);
          }
          return true;
        };
        uint32_t cp;
        if (!hex4(s, cp)) return false;
        s += 4;
        if (cp >= 0xD800 && cp <= 0xDBFF && e - s >= 6 && s[0] == '\\' && s[1] == 'u') {
          uint32_t lo;
          if (hex4(s + 2, lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            s += 6;
          }
        }
        appendUtf8(out, cp);  // a lone surrogate becomes U+FFFD
        break;
      }
      default:
        return false;
    }
  }
  return true;
}

int fieldOf(Slice k) {
  switch (k.n) {
    case 2:
      if (k.p[0] == 'I' && k.p[1] == 'D') return kFId;
      if (k.p[1] == 'X') {
        if (k.p[0] == 'R') return kFRx;
        if (k.p[0] == 'T') return kFTx;
      }
      break;
    case 8:
      if (k.equals("Username", 8)) return kFUser;
      break;
    case 9:
      if (k.equals("Remote IP", 9)) return kFRemote;
      break;
    case 16:
      if (k.equals("raw_connected_at", 16)) return kFSince;
      break;
    default:
      break;
  }
  return kFNone;
}

bool allDigits(Slice s) {
  if (s.n == 0) return false;
  for (size_t i = 0; i < s.n; ++i)
    if (s.p[i] < '0' || s.p[i] > '9') return false;
  return true;
}

/** A JSON string value (decoded when it has escapes); false for any other kind. */
bool jsonText(const Val& v, std::string& scratch, Slice& out) {
  if (v.kind != kStr) return false;
  if (!v.esc) {
    out = v.raw;
    return true;
  }
  if (!decodeJsonString(v.raw, scratch)) return false;
  out = Slice(scratch.data(), scratch.size());
  return true;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// The hot loops, compiled twice: for the baseline target (SSE2 on x86-64) and, on x86-64 with
// GCC, for AVX2 (chosen at run time), so one build runs everywhere and fast where it can.

namespace generic {
#include "parsers_impl.h"
}  // namespace generic

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PG_HAVE_AVX2_COPY 1
#pragma GCC push_options
#pragma GCC target("avx2,bmi,bmi2,popcnt")
namespace avx2 {
#define PG_IMPL_AVX2 1
#include "parsers_impl.h"
#undef PG_IMPL_AVX2
}  // namespace avx2
#pragma GCC pop_options
#endif

namespace {
bool useAvx2() {
#ifdef PG_HAVE_AVX2_COPY
  // POLYGATE_NATIVE_ISA=baseline forces the baseline copy (to test it on an AVX2 machine).
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") &&
                          !(std::getenv("POLYGATE_NATIVE_ISA") && std::string(std::getenv("POLYGATE_NATIVE_ISA")) == "baseline");
  return yes;
#else
  return false;
#endif
}
}  // namespace

#ifdef PG_HAVE_AVX2_COPY
#define PG_DISPATCH(fn) return useAvx2() ? avx2::fn(t, p, n) : generic::fn(t, p, n)
#else
#define PG_DISPATCH(fn) return generic::fn(t, p, n)
#endif

bool parseOpenVpnStatus3(Tracker& t, const char* p, size_t n) { PG_DISPATCH(openVpnStatus3); }
bool parseWgDump(Tracker& t, const char* p, size_t n) { PG_DISPATCH(wgDump); }
bool parseOcservJson(Tracker& t, const char* p, size_t n) { PG_DISPATCH(ocservJson); }
const char* parserIsa() { return useAvx2() ? "avx2" : "baseline"; }

}  // namespace pg
