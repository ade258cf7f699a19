// Small, dependency-free helpers shared by the tracker and the parsers: hashing, number
// parsing and byte scanning. Everything here is inline because it runs once per field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#if defined(__SSE2__) || defined(_M_X64)
#include <emmintrin.h>
#define PG_HAVE_SSE2 1
#endif

#if defined(_MSC_VER)
#include <intrin.h>
#endif

namespace pg {

/** Largest integer a JS number holds exactly (Number.MAX_SAFE_INTEGER). */
constexpr uint64_t kMaxSafe = 9007199254740991ULL;
constexpr uint32_t kNone = 0xFFFFFFFFu;

/** A byte range. Default construction leaves it uninitialized (arrays of them sit on hot paths);
 *  write Slice() for an empty one. */
struct Slice {
  const char* p;
  size_t n;
  Slice() = default;
  Slice(const char* ptr, size_t len) : p(ptr), n(len) {}
  bool equals(const char* lit, size_t len) const { return n == len && (len == 0 || std::memcmp(p, lit, len) == 0); }
};

inline uint64_t load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint64_t load32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

inline int ctz32(uint32_t v) {
#if defined(_MSC_VER)
  unsigned long i;
  _BitScanForward(&i, v);
  return static_cast<int>(i);
#else
  return __builtin_ctz(v);
#endif
}

inline int ctz64(uint64_t v) {
#if defined(_MSC_VER)
  unsigned long i;
  _BitScanForward64(&i, v);
  return static_cast<int>(i);
#else
  return __builtin_ctzll(v);
#endif
}

inline uint64_t mum(uint64_t a, uint64_t b) {
#if defined(__SIZEOF_INT128__)
  __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
#elif defined(_MSC_VER) && defined(_M_X64)
  uint64_t hi;
  uint64_t lo = _umul128(a, b, &hi);
  return lo ^ hi;
#else
  uint64_t ha = a >> 32, hb = b >> 32, la = static_cast<uint32_t>(a), lb = static_cast<uint32_t>(b);
  uint64_t rh = ha * hb, rm0 = ha * lb, rm1 = hb * la, rl = la * lb;
  uint64_t t = rl + (rm0 << 32);
  uint64_t c = t < rl;
  uint64_t lo = t + (rm1 << 32);
  c += lo < t;
  uint64_t hi = rh + (rm0 >> 32) + (rm1 >> 32) + c;
  return lo ^ hi;
#endif
}

/**
 * wyhash-style 64-bit hash: one multiply per 16 bytes, so keys (20–70 bytes) hash in a few ns.
 * Not cryptographic; keys come from daemons we run, and collisions only cost a byte compare.
 */
inline uint64_t hashBytes(const char* p, size_t n) {
  constexpr uint64_t s0 = 0xa0761d6478bd642full, s1 = 0xe7037ed1a0b428dbull, s2 = 0x8ebc6af09c88c6e3ull;
  uint64_t seed = s0 ^ mum(static_cast<uint64_t>(n) ^ s2, s1);
  uint64_t a, b;
  if (n <= 16) {
    if (n >= 8) {
      a = load64(p);
      b = load64(p + n - 8);
    } else if (n >= 4) {
      a = load32(p);
      b = load32(p + n - 4);
    } else if (n > 0) {
      a = (static_cast<uint64_t>(static_cast<uint8_t>(p[0])) << 16) |
          (static_cast<uint64_t>(static_cast<uint8_t>(p[n >> 1])) << 8) | static_cast<uint8_t>(p[n - 1]);
      b = 0;
    } else {
      a = b = 0;
    }
  } else {
    const char* q = p;
    size_t i = n;
    while (i > 16) {
      seed = mum(load64(q) ^ s1, load64(q + 8) ^ seed);
      q += 16;
      i -= 16;
    }
    a = load64(q + i - 16);
    b = load64(q + i - 8);
  }
  return mum(s1 ^ static_cast<uint64_t>(n), mum(a ^ s1, b ^ seed));
}

/** End of the line starting at p: the '\n' or e. */
inline const char* findNl(const char* p, const char* e) {
  const void* r = std::memchr(p, '\n', static_cast<size_t>(e - p));
  return r ? static_cast<const char*>(r) : e;
}

/** Byte equality for short strings without a libc call (memcmp is not inlined for variable n). */
inline bool bytesEq(const char* a, const char* b, size_t n) {
  if (n >= 8) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
      if (load64(a + i) != load64(b + i)) return false;
    return i == n || load64(a + n - 8) == load64(b + n - 8);
  }
  if (n >= 4) return load32(a) == load32(b) && load32(a + n - 4) == load32(b + n - 4);
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) return false;
  return true;
}

/**
 * Scans from p for tabs and the end of the line in one pass: records the offsets (from p) of the
 * first maxTabs tabs into tabs[], sets ntabs, and returns the '\n' ending the line (or e).
 */
inline const char* scanTabs(const char* p, const char* e, uint32_t* tabs, int maxTabs, int& ntabs) {
  const char* base = p;
  int n = 0;
#ifdef PG_HAVE_SSE2
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i nl = _mm_set1_epi8('\n');
  while (e - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    unsigned mt = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, tab)));
    unsigned mn = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)));
    if (mn) mt &= (1u << ctz32(mn)) - 1;
    const uint32_t off = static_cast<uint32_t>(p - base);
    while (mt) {
      if (n == maxTabs) {
        ntabs = n;
        return mn ? p + ctz32(mn) : findNl(p, e);
      }
      tabs[n++] = off + static_cast<uint32_t>(ctz32(mt));
      mt &= mt - 1;
    }
    if (mn) {
      ntabs = n;
      return p + ctz32(mn);
    }
    p += 16;
  }
#endif
  for (; p < e; ++p) {
    if (*p == '\n') break;
    if (*p == '\t') {
      if (n == maxTabs) {
        ntabs = n;
        return findNl(p, e);
      }
      tabs[n++] = static_cast<uint32_t>(p - base);
    }
  }
  ntabs = n;
  return p;
}

/** Decimal digits only, non-empty, value <= 2^53-1; anything else is malformed. */
inline bool parseCounter(const char* p, size_t n, uint64_t& out) {
  if (n == 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) {
    unsigned d = static_cast<unsigned>(static_cast<unsigned char>(p[i])) - '0';
    if (d > 9) return false;
    v = v * 10 + d;
    if (v > kMaxSafe) return false;
  }
  out = v;
  return true;
}

/** Eight ASCII digits (first digit in the lowest byte) → value; false if any is not a digit. */
inline bool eightDigits(uint64_t c, uint64_t& out) {
  if ((((c & 0xF0F0F0F0F0F0F0F0ull) | (((c + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) >> 4))) !=
      0x3333333333333333ull)
    return false;
  c -= 0x3030303030303030ull;
  c = (c * 10) + (c >> 8);
  c = (((c & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
       (((c >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >> 32;
  out = c;
  return true;
}

/**
 * parseCounter for a field inside a buffer ending at `end`: eight digits at a time (SWAR) when
 * an 8-byte load from p stays inside the buffer, which is nearly always.
 */
inline bool parseCounterIn(const char* p, size_t n, const char* end, uint64_t& out) {
  if (n == 0 || n > 16 || end - p < 8) return parseCounter(p, n, out);
  uint64_t hi, lo;
  if (n <= 8) {
    uint64_t c = load64(p);
    if (n < 8) c = (c << (8 * (8 - n))) | (0x3030303030303030ull >> (8 * n));
    if (!eightDigits(c, lo)) return false;
    out = lo;
    return true;
  }
  uint64_t c = load64(p);
  if (n < 16) c = (c << (8 * (16 - n))) | (0x3030303030303030ull >> (8 * (n - 8)));
  if (!eightDigits(c, hi) || !eightDigits(load64(p + n - 8), lo)) return false;
  uint64_t v = hi * 100000000ull + lo;
  if (v > kMaxSafe) return false;
  out = v;
  return true;
}

/** First '\t' or '\n' in [p, e), or e. */
inline const char* findTabOrNl(const char* p, const char* e) {
#ifdef PG_HAVE_SSE2
  const __m128i tab = _mm_set1_epi8('\t');
  const __m128i nl = _mm_set1_epi8('\n');
  while (e - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, tab), _mm_cmpeq_epi8(v, nl))));
    if (m) return p + ctz32(m);
    p += 16;
  }
#endif
  while (p < e && *p != '\t' && *p != '\n') ++p;
  return p;
}

/** First '"' or '\\' in [p, e), or e. */
inline const char* findQuoteOrBackslash(const char* p, const char* e) {
#ifdef PG_HAVE_SSE2
  const __m128i q = _mm_set1_epi8('"');
  const __m128i bs = _mm_set1_epi8('\\');
  while (e - p >= 16) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    unsigned m = static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, bs))));
    if (m) return p + ctz32(m);
    p += 16;
  }
#endif
  while (p < e && *p != '"' && *p != '\\') ++p;
  return p;
}


/** Appends code point cp as UTF-8 (lone surrogates become U+FFFD, like V8 does). */
inline void appendUtf8(std::string& out, uint32_t cp) {
  if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

/** UTF-16 → UTF-8 (lone surrogates → U+FFFD), appended to out. ASCII runs take a fast path. */
inline void appendUtf16(std::string& out, const char16_t* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    size_t j = i;
    while (j < n && s[j] < 0x80) ++j;
    if (j > i) {
      size_t base = out.size();
      out.resize(base + (j - i));
      char* d = &out[base];
      for (size_t k = i; k < j; ++k) *d++ = static_cast<char>(s[k]);
      i = j;
      if (i >= n) break;
    }
    uint32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < n && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (static_cast<uint32_t>(s[i + 1]) - 0xDC00);
      i += 2;
    } else {
      i += 1;
    }
    appendUtf8(out, c);
  }
}

}  // namespace pg
