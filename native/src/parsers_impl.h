// The hot parsing loops. Included twice by parsers.cc (no include guard on purpose): once in
// namespace pg::generic for the baseline target, once in pg::avx2 under `#pragma GCC target`,
// where PG_IMPL_AVX2 switches the byte scanners to 32-byte AVX2 compares. Rules: fallback.ts.
// (Inside namespace pg::<copy>; common.h, tracker.h and parsers_detail.h are already included.)

using namespace ::pg::detail;

#ifdef PG_IMPL_AVX2
/** findNl (common.h) without a libc call: lines are short. */
inline const char* findNlV(const char* p, const char* e) {
  const __m256i nl = _mm256_set1_epi8('\n');
  while (e - p >= 32) {
    uint32_t m = static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), nl)));
    if (m) return p + ctz32(m);
    p += 32;
  }
  return findNl(p, e);
}

/** scanTabs (common.h) with 32-byte compares. */
inline const char* scanTabsV(const char* p, const char* e, uint32_t* tabs, int maxTabs, int& ntabs) {
  const char* base = p;
  int n = 0;
  const __m256i tab = _mm256_set1_epi8('\t');
  const __m256i nl = _mm256_set1_epi8('\n');
  while (e - p >= 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    uint32_t mt = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, tab)));
    uint32_t mn = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, nl)));
    if (mn) mt &= _blsmsk_u32(mn) >> 1;  // tabs before the first newline
    const uint32_t off = static_cast<uint32_t>(p - base);
    while (mt) {
      if (n == maxTabs) {
        ntabs = n;
        return mn ? p + ctz32(mn) : findNlV(p + 32, e);
      }
      tabs[n++] = off + static_cast<uint32_t>(ctz32(mt));
      mt = _blsr_u32(mt);
    }
    if (mn) {
      ntabs = n;
      return p + ctz32(mn);
    }
    p += 32;
  }
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

/** findQuoteOrBackslash (common.h) with 32-byte compares. */
inline const char* findQuoteV(const char* p, const char* e) {
  const __m256i q = _mm256_set1_epi8('"');
  const __m256i bs = _mm256_set1_epi8('\\');
  while (e - p >= 32) {
    __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    uint32_t m = static_cast<uint32_t>(
        _mm256_movemask_epi8(_mm256_or_si256(_mm256_cmpeq_epi8(v, q), _mm256_cmpeq_epi8(v, bs))));
    if (m) return p + ctz32(m);
    p += 32;
  }
  return findQuoteOrBackslash(p, e);
}
#else
inline const char* findNlV(const char* p, const char* e) { return findNl(p, e); }

inline const char* scanTabsV(const char* p, const char* e, uint32_t* tabs, int maxTabs, int& ntabs) {
  return scanTabs(p, e, tabs, maxTabs, ntabs);
}
inline const char* findQuoteV(const char* p, const char* e) { return findQuoteOrBackslash(p, e); }
#endif

// ---------------------------------------------------------------------------------------------
// OpenVPN `status 3`

inline bool openVpnStatus3(Tracker& t, const char* p, size_t n) {
  OvpnHeader h;
  for (int& i : h.idx) i = -1;
  std::vector<uint32_t> tabs(1);
  bool endSeen = false;
  const char* s = p;
  const char* end = p + n;
  static const uint64_t kClientL = load64("CLIENT_L");
  static const uint64_t kIstTab = load32("IST\t");
  while (s < end) {
    if (end - s >= 12 && load64(s) == kClientL && load32(s + 8) == kIstTab) {
      // CLIENT_LIST row: one pass finds the tabs up to the last column we need and the line end.
      const char* q = s + 12;
      int nt = 0;
      const char* nl = scanTabsV(q, end, tabs.data(), h.maxIdx, nt);
      const char* le = nl;
      if (le > q && le[-1] == '\r') --le;
      s = nl < end ? nl + 1 : end;
      if (!h.valid || nt < h.maxIdx - 1) {
        t.malformed();  // no header yet, or fewer fields than the header promised
        continue;
      }
      Slice f[kRoleCount];
      for (Slice& x : f) x = Slice(q, 0);  // (only the roles the header has are read)
      for (int r = 1; r < kRoleCount; ++r) {
        int k = h.idx[r];
        if (k < 0) continue;
        uint32_t a = k == 1 ? 0 : tabs[static_cast<size_t>(k - 2)] + 1;
        uint32_t b = k - 1 < nt ? tabs[static_cast<size_t>(k - 1)] : static_cast<uint32_t>(le - q);
        f[r] = Slice(q + a, b - a);
      }
      // No virtual address yet: still authenticating (or being refused), not a session.
      if ((h.idx[kRVaddr] >= 0 || h.idx[kRVaddr6] >= 0) && f[kRVaddr].n == 0 && f[kRVaddr6].n == 0) continue;
      uint64_t rx, tx, since = 0;
      if (!parseCounterIn(f[kRRx].p, f[kRRx].n, end, rx) || !parseCounterIn(f[kRTx].p, f[kRTx].n, end, tx) ||
          (h.idx[kRSince] >= 0 && !parseCounterIn(f[kRSince].p, f[kRSince].n, end, since))) {
        t.malformed();
        continue;
      }
      Slice user = f[kRCn];
      if (h.idx[kRUser] >= 0 && f[kRUser].n > 0 && !f[kRUser].equals("UNDEF", 5)) user = f[kRUser];
      Slice remote = h.idx[kRReal] >= 0 ? f[kRReal] : Slice("", 0);
      if (h.idx[kRCid] >= 0) {
        if (f[kRCid].n == 0) {
          t.malformed();
          continue;
        }
        t.textRow(RowIn{f[kRCid], Slice(), user, remote, rx, tx, since, kNone, false, false});
      } else {
        // OpenVPN < 2.4 has no Client ID: common name + real address identify the connection.
        t.textRow(RowIn{f[kRCn], remote, user, remote, rx, tx, since, kNone, true, false});
      }
      continue;
    }
    const char* nl = findNlV(s, end);
    const char* le = nl;
    if (le > s && le[-1] == '\r') --le;
    const size_t len = static_cast<size_t>(le - s);
    const char* ls = s;
    s = nl < end ? nl + 1 : end;
    if (len == 11 && std::memcmp(ls, "CLIENT_LIST", 11) == 0) {
      t.malformed();
    } else if (len >= 18 && ls[0] == 'H' && std::memcmp(ls, "HEADER\tCLIENT_LIST", 18) == 0 &&
               (len == 18 || ls[18] == '\t')) {
      parseOvpnHeader(len == 18 ? le : ls + 19, le, h);
      tabs.assign(static_cast<size_t>(h.maxIdx) + 1, 0);
    } else if (len == 3 && ls[0] == 'E' && ls[1] == 'N' && ls[2] == 'D') {
      endSeen = true;
    }
  }
  return endSeen && h.valid && t.pollMalformed() == 0;
}

// ---------------------------------------------------------------------------------------------
// `wg show all dump`

inline bool wgDump(Tracker& t, const char* p, size_t n) {
  const char* s = p;
  const char* end = p + n;
  uint32_t tabs[9];
  while (s < end) {
    int nt = 0;
    const char* nl = scanTabsV(s, end, tabs, 9, nt);
    const char* le = nl;
    if (le > s && le[-1] == '\r') --le;
    const char* ls = s;
    s = nl < end ? nl + 1 : end;
    if (le == ls) continue;
    const int nf = nt + 1;  // (nt == 9 means ten or more fields)
    if (nf == 5) continue;  // interface line
    if (nf != 9) {
      t.malformed();
      continue;
    }
    Slice f[9];
    for (int i = 0; i < 9; ++i) {
      uint32_t a = i == 0 ? 0 : tabs[i - 1] + 1;
      uint32_t b = i < 8 ? tabs[i] : static_cast<uint32_t>(le - ls);
      f[i] = Slice(ls + a, b - a);
    }
    uint64_t hs, rx, tx;
    if (f[0].n == 0 || f[1].n == 0 || !parseCounterIn(f[5].p, f[5].n, end, hs) ||
        !parseCounterIn(f[6].p, f[6].n, end, rx) || !parseCounterIn(f[7].p, f[7].n, end, tx)) {
      t.malformed();
      continue;
    }
    if (hs == 0) continue;  // never completed a handshake: not a session
    Slice remote = f[3].equals("(none)", 6) ? Slice("", 0) : f[3];
    t.textRow(RowIn{f[0], f[1], f[1], remote, rx, tx, 0, kNone, true, true});
  }
  return t.pollMalformed() == 0;
}

class JsonScan {
 public:
  JsonScan(const char* p, size_t n) : p_(p), e_(p + n) {}

  bool ws() {
    if (p_ < e_ && static_cast<unsigned char>(*p_) > ' ') return true;
    // occtl indents with "\n    " before a key and "  " after a colon: skip those in one step.
    if (e_ - p_ >= 8) {
      const uint64_t v = load64(p_);
      if ((v & 0xFFFFFFFFFFull) == 0x202020200Aull)
        p_ += 5;
      else if ((v & 0xFFFFull) == 0x2020ull)
        p_ += 2;
    }
    constexpr uint64_t kWs = (1ull << ' ') | (1ull << '\n') | (1ull << '\r') | (1ull << '\t');
    while (p_ < e_ && static_cast<unsigned char>(*p_) <= ' ' && ((kWs >> static_cast<unsigned char>(*p_)) & 1)) ++p_;
    return p_ < e_;
  }
  bool at(char c) const { return p_ < e_ && *p_ == c; }
  void advance() { ++p_; }

  /** At '"': the raw body; a backslash escapes whatever byte follows it. */
  bool str(Slice& raw, bool& esc) {
    const char* s = ++p_;
    esc = false;
    for (;;) {
      const char* q = findQuoteV(p_, e_);
      if (q >= e_) return false;
      if (*q == '"') {
        raw = Slice(s, static_cast<size_t>(q - s));
        p_ = q + 1;
        return true;
      }
      esc = true;
      if (e_ - q < 2) return false;
      p_ = q + 2;
    }
  }

  bool value(int depth, Val& v) {
    if (!ws()) return false;
    char c = *p_;
    if (c == '"') {
      v.kind = kStr;
      return str(v.raw, v.esc);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      const char* s = p_;
      while (p_ < e_ && ((*p_ >= '0' && *p_ <= '9') || *p_ == '-' || *p_ == '+' || *p_ == '.' || *p_ == 'e' ||
                         *p_ == 'E'))
        ++p_;
      v.kind = kNum;
      v.esc = false;
      v.raw = Slice(s, static_cast<size_t>(p_ - s));
      return true;
    }
    if (c == '{' || c == '[') {
      v.kind = kComposite;
      return composite(depth);
    }
    v.kind = kLit;
    return literal("true", 4) || literal("false", 5) || literal("null", 4);
  }

  /** At '{' or '[': skips the whole value. */
  bool composite(int depth) {
    if (depth >= 64) return false;
    char open = *p_++;
    char close = open == '{' ? '}' : ']';
    if (!ws()) return false;
    if (*p_ == close) {
      ++p_;
      return true;
    }
    Val v;
    for (;;) {
      if (open == '{') {
        if (!ws() || *p_ != '"') return false;
        Slice k;
        bool esc;
        if (!str(k, esc)) return false;
        if (!ws() || *p_ != ':') return false;
        ++p_;
      }
      if (!value(depth + 1, v)) return false;
      if (!ws()) return false;
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == close) {
        ++p_;
        return true;
      }
      return false;
    }
  }

 private:
  bool literal(const char* lit, size_t n) {
    if (static_cast<size_t>(e_ - p_) >= n && std::memcmp(p_, lit, n) == 0) {
      p_ += n;
      return true;
    }
    return false;
  }

  const char* p_;
  const char* e_;
};

inline bool jsonCounter(const Val& v, std::string& scratch, const char* end, uint64_t& out) {
  if (v.kind == kNum) return parseCounterIn(v.raw.p, v.raw.n, end, out);
  if (v.kind != kStr) return false;
  if (!v.esc) return parseCounterIn(v.raw.p, v.raw.n, end, out);
  if (!decodeJsonString(v.raw, scratch)) return false;
  return parseCounter(scratch.data(), scratch.size(), out);
}


inline bool ocservJson(Tracker& t, const char* p, size_t n) {
  JsonScan j(p, n);
  const char* end = p + n;
  if (!j.ws() || !j.at('[')) return false;
  j.advance();
  if (!j.ws()) return false;
  if (j.at(']')) return t.pollMalformed() == 0;
  std::string keyBuf, idBuf, userBuf, remoteBuf, numBuf;
  Val fields[kFieldCount];
  Val skip;
  for (;;) {
    if (!j.ws()) return false;
    if (j.at('{')) {
      j.advance();
      for (Val& f : fields) f = Val();
      if (!j.ws()) return false;
      if (j.at('}')) {
        j.advance();
      } else {
        for (;;) {
          if (!j.ws() || !j.at('"')) return false;
          Slice key;
          bool kesc;
          if (!j.str(key, kesc)) return false;
          int field = kFNone;
          if (!kesc) {
            field = fieldOf(key);
          } else if (decodeJsonString(key, keyBuf)) {
            field = fieldOf(Slice(keyBuf.data(), keyBuf.size()));
          }
          if (!j.ws() || !j.at(':')) return false;
          j.advance();
          Val& v = field == kFNone ? skip : fields[field];
          if (!j.value(2, v)) return false;
          if (!j.ws()) return false;
          if (j.at(',')) {
            j.advance();
            continue;
          }
          if (j.at('}')) {
            j.advance();
            break;
          }
          return false;
        }
      }
      // One user object: turn it into a row or count it malformed.
      const Val& id = fields[kFId];
      Slice idText = Slice(), user = Slice(), remote("", 0);
      uint64_t rx, tx, since = 0;
      bool ok = true;
      if (id.kind == kNum) {
        ok = allDigits(id.raw);
        idText = id.raw;
      } else {
        ok = jsonText(id, idBuf, idText) && idText.n > 0;
      }
      ok = ok && jsonText(fields[kFUser], userBuf, user);
      ok = ok && jsonCounter(fields[kFRx], numBuf, end, rx) && jsonCounter(fields[kFTx], numBuf, end, tx);
      if (ok && fields[kFSince].kind != kAbsent) ok = jsonCounter(fields[kFSince], numBuf, end, since);
      if (ok && fields[kFRemote].kind == kStr) ok = jsonText(fields[kFRemote], remoteBuf, remote);
      if (ok)
        t.textRow(RowIn{idText, Slice(), user, remote, rx, tx, since, kNone, false, false});
      else
        t.malformed();
    } else {
      if (!j.value(1, skip)) return false;
      t.malformed();  // not an object
    }
    if (!j.ws()) return false;
    if (j.at(',')) {
      j.advance();
      continue;
    }
    if (j.at(']')) return t.pollMalformed() == 0;
    return false;
  }
}

