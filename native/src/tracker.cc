#include "tracker.h"

#include <algorithm>
#include <stdexcept>

namespace pg {

Tracker::Tracker() { keyBuf_.resize(256); }

// ---------------------------------------------------------------------------------------------
// users and scopes

uint32_t Tracker::internUser(const char* p, size_t n) {
  uint64_t h = hashBytes(p, n);
  uint32_t id = userIndex_.find(h, [&](uint32_t u) { return userIs(u, p, n); });
  if (id != kNone) return id;
  if (userArena_.size() + n > 0xFFFFFFF0u) throw std::length_error("too many user names");
  id = static_cast<uint32_t>(users_.size());
  users_.push_back(UserRec{h, static_cast<uint32_t>(userArena_.size()), static_cast<uint32_t>(n)});
  userArena_.append(p, n);
  userIndex_.insert(h, id, [&](uint32_t u) { return users_[u].hash; });
  return id;
}

uint32_t Tracker::internScope(const char* p, size_t n) {
  std::string name(p, n);
  auto it = scopeIds_.find(name);
  if (it != scopeIds_.end()) return it->second;
  uint32_t id = static_cast<uint32_t>(scopes_.size());
  ScopeRec rec;
  rec.name = name;
  scopes_.push_back(rec);
  scanScope_.push_back(0);
  scopeIds_.emplace(std::move(name), id);
  return id;
}

// ---------------------------------------------------------------------------------------------
// slots

uint32_t Tracker::allocSlot() {
  if (!free_.empty()) {
    uint32_t s = free_.back();
    free_.pop_back();
    return s;
  }
  if (entries_.size() >= 0xFFFFFFF0u) throw std::length_error("too many sessions");
  entries_.emplace_back();
  meta_.push_back(SlotMeta{kNone, 0});
  return static_cast<uint32_t>(entries_.size() - 1);
}

void Tracker::setKey(Entry& e, const char* k, size_t n) {
  e.keyLen = static_cast<uint32_t>(n);
  if (n <= kInline) {
    std::memcpy(e.inl, k, n);
    e.keyOff = 0;
  } else {
    if (keyArena_.size() + n > 0xFFFFFFF0u) throw std::length_error("keys too long");
    e.keyOff = static_cast<uint32_t>(keyArena_.size());
    keyArena_.append(k, n);
  }
}

void Tracker::freeSlot(uint32_t s) {
  Entry& e = entries_[s];
  index_.erase(e.hash, s, [&](uint32_t x) { return entries_[x].hash; });
  if (e.keyLen > kInline) keyGarbage_ += e.keyLen;
  e.state = kFree;
  uint32_t sc = meta_[s].scope;
  if (sc != kNone) {
    scopes_[sc].tracked--;
    if (inTick_ && meta_[s].tick == tick_) scopes_[sc].seen--;
  }
  meta_[s].scope = kNone;
  free_.push_back(s);
}

void Tracker::maybeCompactKeys() {
  if (keyGarbage_ < (1u << 20) || keyGarbage_ * 2 < keyArena_.size()) return;
  std::string fresh;
  fresh.reserve(keyArena_.size() - keyGarbage_);
  for (Entry& e : entries_) {
    if (e.state == kFree || e.keyLen <= kInline) continue;
    uint32_t off = static_cast<uint32_t>(fresh.size());
    fresh.append(keyArena_.data() + e.keyOff, e.keyLen);
    e.keyOff = off;
  }
  keyArena_.swap(fresh);
  keyGarbage_ = 0;
}

void Tracker::moveScope(uint32_t slot, uint32_t scope) {
  uint32_t old = meta_[slot].scope;
  bool seen = meta_[slot].tick == tick_;
  if (old != kNone) {
    scopes_[old].tracked--;
    if (seen) scopes_[old].seen--;
  }
  scopes_[scope].tracked++;
  if (seen) scopes_[scope].seen++;
  meta_[slot].scope = scope;
}

void Tracker::markSeen(uint32_t slot) {
  if (meta_[slot].tick != tick_) {
    meta_[slot].tick = tick_;
    scopes_[meta_[slot].scope].seen++;
  }
}

void Tracker::link(uint32_t slot) {
  if (prevRow_ != kNone)
    entries_[prevRow_].succ = slot;
  else
    scopes_[curScope_].firstSlot = slot;
  prevRow_ = slot;
  pred_ = entries_[slot].succ;
}

Slice Tracker::rowKey(size_t row) const {
  const Entry& e = entries_[aux_[row].slot];
  return Slice(keyPtr(e), e.keyLen);
}

// ---------------------------------------------------------------------------------------------
// tick

void Tracker::beginTick(Host* host) {
  host_ = host;
  inTick_ = true;
  ++tick_;
  if (tick_ == 0) {  // wrapped after 2^32 ticks: forget "seen" marks so none look current
    for (SlotMeta& m : meta_) m.tick = 0;
    for (UserAcc& a : acc_) a.tick = 0;
    tick_ = 1;
  }
  for (uint32_t u : active_) {
    if (u < ucols.capacity) {
      ucols.rxDelta[u] = 0;
      ucols.txDelta[u] = 0;
      ucols.live[u] = 0;
    }
  }
  active_.clear();
  rowCount_ = 0;
  remotesLen_ = 0;
  vanished_.clear();
  polls_.clear();
  for (ScopeRec& s : scopes_) s.seen = 0;
}

void Tracker::beginPoll(uint32_t scopeId) {
  curScope_ = scopeId;
  ScopeRec& sc = scopes_[scopeId];
  if (sc.polledTick != tick_) {
    sc.polledTick = tick_;
    sc.incomplete = false;
  }
  prefixLen_ = sc.name.size() + 1;
  if (keyBuf_.size() < prefixLen_ + 64) keyBuf_.resize(prefixLen_ + 256);
  std::memcpy(keyBuf_.data(), sc.name.data(), sc.name.size());
  keyBuf_[sc.name.size()] = ':';
  prevRow_ = kNone;
  pred_ = sc.firstSlot;
  pollSeen_ = 0;
  srcBegin_ = srcEnd_ = nullptr;
  poll_ = PollStat();
  poll_.rowStart = static_cast<uint32_t>(rowCount_);
}

void Tracker::endPoll(bool complete) {
  scopes_[curScope_].seen += pollSeen_;
  pollSeen_ = 0;
  poll_.complete = complete;
  poll_.rowCount = static_cast<uint32_t>(rowCount_) - poll_.rowStart;
  if (!complete) scopes_[curScope_].incomplete = true;
  polls_.push_back(poll_);
  curScope_ = kNone;
}

void Tracker::textRow(const RowIn& r) {
  const Slice a = r.a, b = r.b;
  const size_t len = prefixLen_ + a.n + (r.hasB ? 1 + b.n : 0);
  // Predicted slot first, compared piecewise so the key is only assembled for a miss.
  if (pred_ != kNone) {
    const Entry& e = entries_[pred_];
    if (e.state != kFree && e.keyLen == len) {
      const char* k = keyPtr(e);
      if (bytesEq(k, keyBuf_.data(), prefixLen_) && bytesEq(k + prefixLen_, a.p, a.n) &&
          (!r.hasB || (k[prefixLen_ + a.n] == ':' && bytesEq(k + prefixLen_ + a.n + 1, b.p, b.n)))) {
        process(k, len, pred_, r);
        return;
      }
    }
  }
  if (len > keyBuf_.size()) keyBuf_.resize(len * 2);
  char* k = keyBuf_.data();
  std::memcpy(k + prefixLen_, a.p, a.n);
  if (r.hasB) {
    k[prefixLen_ + a.n] = ':';
    std::memcpy(k + prefixLen_ + a.n + 1, b.p, b.n);
  }
  process(k, len, kNoPrediction, r);
}

void Tracker::sampleRow(const RowIn& r) { process(r.a.p, r.a.n, kNone, r); }

void Tracker::process(const char* key, size_t klen, uint32_t slot, const RowIn& in) {
  uint64_t h = 0;
  if (slot == kNoPrediction) {
    slot = kNone;
  } else if (slot == kNone && pred_ != kNone) {
    // Polls list sessions in the same order tick after tick: try the slot that followed the
    // previous row last time before hashing.
    const Entry& e = entries_[pred_];
    if (e.state != kFree && keyEq(e, key, klen)) slot = pred_;
  }
  if (slot == kNone) {
    h = hashBytes(key, klen);
    slot = lookup(h, key, klen);
  }
  if (slot != kNone) {
    // Steady state: the same live connection, same user, same scope, counters not lower.
    Entry& e = entries_[slot];
    SlotMeta& m = meta_[slot];
    if (e.state == kLive && in.connectedAt == e.connectedAt && in.rx >= e.rx && in.tx >= e.tx &&
        m.scope == curScope_ && m.tick != tick_ &&
        (in.resolveUser ? !e.userEmpty : entryUserIs(e, in.user.p, in.user.n))) {
      const uint64_t drx = in.rx - e.rx, dtx = in.tx - e.tx;
      e.rx = in.rx;
      e.tx = in.tx;
      m.tick = tick_;
      ++pollSeen_;
      emit(slot, e.userId, drx, dtx, 0, in);
      return;
    }
  }
  processSlow(key, klen, slot, h, in);
}

void Tracker::processSlow(const char* key, size_t klen, uint32_t slot, uint64_t h, const RowIn& in) {
  const uint64_t rx = in.rx, tx = in.tx, connectedAt = in.connectedAt;
  const Slice user = in.user;
  const bool resolveUser = in.resolveUser;
  uint8_t flags = 0;
  uint64_t drx, dtx;
  if (slot == kNone) {
    uint32_t uid;
    if (resolveUser) {
      resolved_.clear();
      host_->resolveUser(user.p, user.n, resolved_);
      uid = internUser(resolved_.data(), resolved_.size());
    } else {
      uid = internUser(user.p, user.n);
    }
    slot = allocSlot();
    Entry& e = entries_[slot];
    e.hash = h;
    setKey(e, key, klen);
    e.rx = rx;
    e.tx = tx;
    e.connectedAt = connectedAt;
    setEntryUser(e, uid);
    e.succ = kNone;
    e.state = kLive;
    index_.insert(h, slot, [&](uint32_t x) { return entries_[x].hash; });
    meta_[slot].scope = curScope_;
    meta_[slot].tick = tick_;
    scopes_[curScope_].tracked++;
    ++pollSeen_;
    drx = rx;
    dtx = tx;
    flags = kFlagNew;
  } else {
    Entry& e = entries_[slot];
    if (e.state == kEnded) {
      if (connectedAt == e.connectedAt && rx <= e.rx && tx <= e.tx) {
        // A row for a session whose final counters ended() already took (status captured
        // before the disconnect, or a status file not yet rewritten): nothing new in it.
        markSeen(slot);
        ++poll_.ignored;
        link(slot);
        return;
      }
      e.state = kLive;
      flags |= kFlagRevived;
    }
    if (resolveUser) {
      if (e.userEmpty) {
        resolved_.clear();
        host_->resolveUser(user.p, user.n, resolved_);
        uint32_t uid = internUser(resolved_.data(), resolved_.size());
        if (uid != e.userId) setEntryUser(entries_[slot], uid);
      }
    } else if (!entryUserIs(e, user.p, user.n)) {
      setEntryUser(e, internUser(user.p, user.n));
    }
    Entry& f = entries_[slot];
    if (connectedAt != f.connectedAt) {
      flags |= kFlagReconnect;
      drx = rx;
      dtx = tx;
    } else if (rx < f.rx || tx < f.tx) {
      flags |= kFlagReset;
      drx = rx;
      dtx = tx;
    } else {
      drx = rx - f.rx;
      dtx = tx - f.tx;
    }
    f.rx = rx;
    f.tx = tx;
    f.connectedAt = connectedAt;
    SlotMeta& m = meta_[slot];
    if (m.scope != curScope_) moveScope(slot, curScope_);
    if (m.tick != tick_) {
      m.tick = tick_;
      scopes_[curScope_].seen++;
    } else {
      flags |= kFlagRepeat;
    }
  }
  emit(slot, entries_[slot].userId, drx, dtx, flags, in);
}

inline void Tracker::emit(uint32_t slot, uint32_t uid, uint64_t drx, uint64_t dtx, uint8_t flags, const RowIn& in) {
  const size_t r = rowCount_;
  if (r >= rows.capacity) host_->growRows(r + 1, r);
  if (r >= aux_.size()) aux_.resize(r < 512 ? 1024 : r * 2);
  rows.rxDelta[r] = static_cast<double>(drx);
  rows.txDelta[r] = static_cast<double>(dtx);
  rows.rx[r] = static_cast<double>(in.rx);
  rows.tx[r] = static_cast<double>(in.tx);
  rows.connectedAt[r] = static_cast<double>(in.connectedAt);
  rows.user[r] = uid;
  rows.flags[r] = flags;
  RowAux& x = aux_[r];
  x.slot = slot;
  const Slice remote = in.remote;
  if (in.sampleIndex != kNone) {
    x.remOff = in.sampleIndex;
    x.remLen = kNone;
  } else {
    x.remOff = static_cast<uint32_t>(remotesLen_);
    x.remLen = static_cast<uint32_t>(remote.n);
    if (remote.n) {
      if (remotesLen_ + remote.n + 32 > remotes_.size())
        remotes_.resize(std::max<size_t>(remotes_.size() * 2, 4096) + remote.n + 32);
      char* d = remotes_.data() + remotesLen_;
      // Addresses are short: two fixed 16-byte moves when the source has the bytes to spare.
      if (remote.n <= 32 && remote.p >= srcBegin_ && remote.p + 32 <= srcEnd_) {
        std::memcpy(d, remote.p, 16);
        std::memcpy(d + 16, remote.p + 16, 16);
      } else {
        std::memcpy(d, remote.p, remote.n);
      }
      remotesLen_ += remote.n;
    }
  }
  rowCount_ = r + 1;
  link(slot);
}

/**
 * Per-user sums in one tight pass over the rows once they are all known: the accesses are
 * random over users, and here nothing else waits on them.
 */
void Tracker::aggregateUsers() {
  if (users_.size() > ucols.capacity) host_->growUsers(users_.size(), ucols.capacity);
  if (acc_.size() < users_.size()) acc_.resize(users_.size());
  UserAcc* acc = acc_.data();
  const uint32_t* user = rows.user;
  const double* rxd = rows.rxDelta;
  const double* txd = rows.txDelta;
  const uint8_t* flags = rows.flags;
  const uint32_t t = tick_;
  const size_t n = rowCount_;
  // One 24-byte record per user (one cache line touched per row), copied out to the three JS
  // columns for the active users only.
  for (size_t r = 0; r < n; ++r) {
    UserAcc& a = acc[user[r]];
    if (a.tick != t) {
      a.tick = t;
      a.rx = 0;
      a.tx = 0;
      a.live = 0;
      active_.push_back(user[r]);
    }
    a.rx += rxd[r];
    a.tx += txd[r];
    a.live += (flags[r] & kFlagRepeat) ? 0 : 1;
  }
  for (uint32_t u : active_) {
    ucols.rxDelta[u] = acc[u].rx;
    ucols.txDelta[u] = acc[u].tx;
    ucols.live[u] = acc[u].live;
  }
}

void Tracker::endTick() {
  aggregateUsers();
  bool any = false;
  for (size_t i = 0; i < scopes_.size(); ++i) {
    const ScopeRec& s = scopes_[i];
    bool scan = s.polledTick == tick_ && !s.incomplete && s.tracked != s.seen;
    scanScope_[i] = scan ? 1 : 0;
    any |= scan;
  }
  if (any) {
    const size_t n = entries_.size();
    for (size_t s = 0; s < n; ++s) {
      const SlotMeta m = meta_[s];
      if (m.scope == kNone || !scanScope_[m.scope] || m.tick == tick_) continue;
      const Entry& e = entries_[s];
      if (e.state == kLive) {
        vanished_.push_back(VanishedRec{std::string(keyPtr(e), e.keyLen), m.scope, e.userId, e.rx, e.tx, e.connectedAt});
      }
      freeSlot(static_cast<uint32_t>(s));
    }
    maybeCompactKeys();
  }
  if (rows.capacity == 0) host_->growRows(1, 0);
  inTick_ = false;
  host_ = nullptr;
}

void Tracker::abortTick() {
  if (curScope_ != kNone) endPoll(false);
  // Rows so far stay consistent with the tracked counters; sum them so nothing is half-done.
  if (host_) aggregateUsers();
  inTick_ = false;
  host_ = nullptr;
}

// ---------------------------------------------------------------------------------------------
// between ticks

bool Tracker::ended(Slice key, uint64_t rx, uint64_t tx, bool hasConnectedAt, uint64_t connectedAt, bool hasUser,
                    Slice user, bool hasScope, Slice scope, EndedOut& out) {
  uint64_t h = hashBytes(key.p, key.n);
  uint32_t slot = lookup(h, key.p, key.n);
  if (slot == kNone) {
    // Connected and gone between two polls: everything it moved is new to us.
    if (!hasUser) return false;
    uint32_t uid = internUser(user.p, user.n);
    uint64_t cat = hasConnectedAt ? connectedAt : 0;
    out.known = false;
    out.user = uid;
    out.rxDelta = rx;
    out.txDelta = tx;
    out.rx = rx;
    out.tx = tx;
    out.connectedAt = cat;
    out.scope = kNone;
    if (hasScope) {
      // Keep a tombstone so a stale row of this session in the next poll is not counted again.
      uint32_t sc = internScope(scope.p, scope.n);
      uint32_t s = allocSlot();
      Entry& e = entries_[s];
      e.hash = h;
      setKey(e, key.p, key.n);
      e.rx = rx;
      e.tx = tx;
      e.connectedAt = cat;
      setEntryUser(e, uid);
      e.succ = kNone;
      e.state = kEnded;
      index_.insert(h, s, [&](uint32_t x) { return entries_[x].hash; });
      meta_[s] = SlotMeta{sc, 0};
      scopes_[sc].tracked++;
      out.scope = sc;
    }
    return true;
  }
  uint64_t cat = hasConnectedAt ? connectedAt : entries_[slot].connectedAt;
  if (hasUser && user.n > 0 && entries_[slot].userEmpty) setEntryUser(entries_[slot], internUser(user.p, user.n));
  Entry& f = entries_[slot];
  uint64_t drx, dtx;
  if (f.state == kEnded && cat == f.connectedAt && rx <= f.rx && tx <= f.tx) {
    drx = dtx = 0;  // the same end reported twice, or an older report of it
    rx = f.rx;
    tx = f.tx;
  } else if (cat != f.connectedAt || rx < f.rx || tx < f.tx) {
    drx = rx;
    dtx = tx;
  } else {
    drx = rx - f.rx;
    dtx = tx - f.tx;
  }
  f.rx = rx;
  f.tx = tx;
  f.connectedAt = cat;
  f.state = kEnded;
  out.known = true;
  out.user = f.userId;
  out.scope = meta_[slot].scope;
  out.rxDelta = drx;
  out.txDelta = dtx;
  out.rx = rx;
  out.tx = tx;
  out.connectedAt = cat;
  return true;
}

void Tracker::seed(Slice key, Slice scope, Slice user, uint64_t rx, uint64_t tx, uint64_t connectedAt, bool ended) {
  uint32_t sc = internScope(scope.p, scope.n);
  uint32_t uid = internUser(user.p, user.n);
  uint64_t h = hashBytes(key.p, key.n);
  uint32_t slot = lookup(h, key.p, key.n);
  if (slot == kNone) {
    slot = allocSlot();
    Entry& e = entries_[slot];
    e.hash = h;
    setKey(e, key.p, key.n);
    e.succ = kNone;
    index_.insert(h, slot, [&](uint32_t x) { return entries_[x].hash; });
    meta_[slot] = SlotMeta{sc, 0};
    scopes_[sc].tracked++;
  } else if (meta_[slot].scope != sc) {
    moveScope(slot, sc);
  }
  Entry& e = entries_[slot];
  e.rx = rx;
  e.tx = tx;
  e.connectedAt = connectedAt;
  setEntryUser(e, uid);
  e.state = ended ? kEnded : kLive;
}

bool Tracker::forget(Slice key) {
  uint64_t h = hashBytes(key.p, key.n);
  uint32_t slot = lookup(h, key.p, key.n);
  if (slot == kNone) return false;
  freeSlot(slot);
  maybeCompactKeys();
  return true;
}

void Tracker::reset() {
  entries_.clear();
  meta_.clear();
  free_.clear();
  index_.clear();
  keyArena_.clear();
  keyGarbage_ = 0;
  users_.clear();
  acc_.clear();
  userArena_.clear();
  userIndex_.clear();
  usersReported_ = 0;
  scopes_.clear();
  scopeIds_.clear();
  scanScope_.clear();
  // Output columns stay allocated; zero what the last tick wrote into the per-user sums.
  for (uint32_t u : active_) {
    if (u < ucols.capacity) {
      ucols.rxDelta[u] = 0;
      ucols.txDelta[u] = 0;
      ucols.live[u] = 0;
    }
  }
  active_.clear();
  rowCount_ = 0;
  remotesLen_ = 0;
  vanished_.clear();
  polls_.clear();
}

}  // namespace pg
