// The accounting tracker: previous counters of every live connection, kept between polls,
// turned into per-connection deltas and per-user sums in one pass. Pure C++ (no N-API) so the
// hot path can be read and tested on its own; the addon supplies output memory and the
// WireGuard name resolver through Host.
//
// The rules here are mirrored line for line by native/fallback.ts; change both together.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace pg {

enum EntryState : uint8_t { kFree = 0, kLive = 1, kEnded = 2 };

/** Row flags; the same bits are exported to TypeScript as RowFlag. */
enum RowFlag : uint8_t {
  kFlagNew = 1,        // key not tracked before: delta = full counters
  kFlagReset = 2,      // a counter went down: treated as a new connection
  kFlagReconnect = 4,  // connectedAt changed under the same key: treated as a new connection
  kFlagRevived = 8,    // the key had ended (ended()) and is reported live again
  kFlagRepeat = 16,    // the key already appeared earlier in this tick
};

constexpr size_t kInline = 76;
constexpr uint16_t kUserNotInline = 0xFFFF;

/**
 * One tracked connection, two cache lines. The key is stored inline when it fits (else in
 * keyArena_), followed by a copy of the username when that fits too, so the steady-state path
 * (same key, same user) touches nothing but this entry.
 */
struct alignas(64) Entry {
  uint64_t hash;
  uint64_t rx;
  uint64_t tx;
  uint64_t connectedAt;
  uint32_t userId;
  uint32_t succ;  // slot of the row that followed this one last time (predicts the next row)
  uint32_t keyLen;
  uint32_t keyOff;   // offset in keyArena_ when keyLen > kInline
  uint16_t userLen;  // length of the inline username copy, or kUserNotInline
  uint8_t state;
  uint8_t userEmpty;  // the username is ''
  char inl[kInline];
};
static_assert(sizeof(Entry) == 128, "Entry should be two cache lines");

/** Per slot, kept apart from Entry so the vanish scan reads 8 bytes per slot. */
struct SlotMeta {
  uint32_t scope;  // kNone for free slots
  uint32_t tick;   // tick in which the slot was last seen
};

/** Per row, native-only. */
struct RowAux {
  uint32_t slot;
  uint32_t remOff;
  uint32_t remLen;
};

/** One session row as a parser or a sample batch hands it over (passed by reference: cheap). */
struct RowIn {
  Slice a;       // text rows: the key after "scope:"; sample rows: the whole key
  Slice b;       // text rows with hasB: a second key part, joined to `a` with ':'
  Slice user;    // the username, or (resolveUser) the WireGuard public key to resolve
  Slice remote;  // text rows only
  uint64_t rx;
  uint64_t tx;
  uint64_t connectedAt;
  uint32_t sampleIndex;  // sample rows: index in the batch (the remote address stays in JS)
  bool hasB;
  bool resolveUser;
};

/** Columns the addon exposes to JS as typed arrays; indexed by row. */
struct RowColumns {
  double* rxDelta = nullptr;
  double* txDelta = nullptr;
  double* rx = nullptr;
  double* tx = nullptr;
  double* connectedAt = nullptr;
  uint32_t* user = nullptr;
  uint8_t* flags = nullptr;
  size_t capacity = 0;
};

/** Columns indexed by user id. */
struct UserColumns {
  double* rxDelta = nullptr;
  double* txDelta = nullptr;
  uint32_t* live = nullptr;
  size_t capacity = 0;
};

class Host {
 public:
  virtual ~Host() = default;
  /** Make rows.capacity >= minCapacity keeping the first `used` rows. */
  virtual void growRows(size_t minCapacity, size_t used) = 0;
  /** Make users.capacity >= minCapacity keeping the first `used` entries; new entries are 0. */
  virtual void growUsers(size_t minCapacity, size_t used) = 0;
  /** WireGuard: public key → username ('' when unknown). Must not throw. */
  virtual void resolveUser(const char* p, size_t n, std::string& out) = 0;
};

/** Open-addressing (linear probing) index of 32-bit ids; stores a 32-bit tag of each hash. */
class HashIndex {
 public:
  HashIndex() { clear(); }
  void clear() {
    cells_.assign(16, 0);
    mask_ = 15;
    count_ = 0;
  }
  size_t size() const { return count_; }

  template <class Eq>
  uint32_t find(uint64_t h, Eq eq) const {
    const uint64_t tag = h >> 32;
    size_t i = static_cast<size_t>(h) & mask_;
    for (;;) {
      uint64_t c = cells_[i];
      if (c == 0) return kNone;
      if ((c >> 32) == tag) {
        uint32_t id = static_cast<uint32_t>(c) - 1;
        if (eq(id)) return id;
      }
      i = (i + 1) & mask_;
    }
  }

  template <class HashOf>
  void insert(uint64_t h, uint32_t id, HashOf hashOf) {
    if ((count_ + 1) * 2 > cells_.size()) grow(hashOf);
    place(h, id);
    ++count_;
  }

  template <class HashOf>
  void erase(uint64_t h, uint32_t id, HashOf hashOf) {
    size_t i = static_cast<size_t>(h) & mask_;
    while (static_cast<uint32_t>(cells_[i]) != id + 1) {
      if (cells_[i] == 0) return;  // not present
      i = (i + 1) & mask_;
    }
    size_t j = i;
    for (;;) {
      j = (j + 1) & mask_;
      uint64_t c = cells_[j];
      if (c == 0) break;
      size_t k = static_cast<size_t>(hashOf(static_cast<uint32_t>(c) - 1)) & mask_;
      bool stays = (i <= j) ? (i < k && k <= j) : (i < k || k <= j);
      if (!stays) {
        cells_[i] = c;
        i = j;
      }
    }
    cells_[i] = 0;
    --count_;
  }

 private:
  void place(uint64_t h, uint32_t id) {
    size_t i = static_cast<size_t>(h) & mask_;
    while (cells_[i] != 0) i = (i + 1) & mask_;
    cells_[i] = ((h >> 32) << 32) | (static_cast<uint64_t>(id) + 1);
  }
  template <class HashOf>
  void grow(HashOf hashOf) {
    std::vector<uint64_t> old;
    old.swap(cells_);
    cells_.assign(old.size() * 2, 0);
    mask_ = cells_.size() - 1;
    for (uint64_t c : old)
      if (c != 0) place(hashOf(static_cast<uint32_t>(c) - 1), static_cast<uint32_t>(c) - 1);
  }

  std::vector<uint64_t> cells_;
  size_t mask_ = 15;
  size_t count_ = 0;
};

struct UserRec {
  uint64_t hash;
  uint32_t off;
  uint32_t len;
};

struct ScopeRec {
  std::string name;
  uint32_t tracked = 0;  // entries (live or ended) whose scope is this one
  uint32_t seen = 0;     // of those, seen in the current tick
  uint32_t polledTick = 0;
  uint32_t firstSlot = kNone;
  bool incomplete = false;
};

struct PollStat {
  uint32_t rowStart = 0;
  uint32_t rowCount = 0;
  uint32_t malformed = 0;
  uint32_t ignored = 0;
  bool complete = true;
};

struct VanishedRec {
  std::string key;
  uint32_t scope;
  uint32_t user;
  uint64_t rx, tx, connectedAt;
};

struct EndedOut {
  bool known = false;
  uint32_t user = 0;
  uint32_t scope = kNone;
  uint64_t rxDelta = 0, txDelta = 0, rx = 0, tx = 0, connectedAt = 0;
};

struct SnapshotRec {
  const char* key;
  size_t keyLen;
  uint32_t scope;
  uint32_t user;
  uint64_t rx, tx, connectedAt;
  bool ended;
};

class Tracker {
 public:
  Tracker();

  RowColumns rows;
  UserColumns ucols;

  // ---- one tick: beginTick, then per poll beginPoll / rows / endPoll, then endTick
  void beginTick(Host* host);
  uint32_t internScope(const char* p, size_t n);
  void beginPoll(uint32_t scopeId);
  /** The text rows of this poll point into (lets short copies read a few bytes past a field). */
  void setSource(const char* p, size_t n) {
    srcBegin_ = p;
    srcEnd_ = p + n;
  }
  /** key = scope ':' a [':' b] */
  void textRow(const RowIn& r);
  /** key = a (sample batches) */
  void sampleRow(const RowIn& r);
  void malformed() { ++poll_.malformed; }
  uint32_t pollMalformed() const { return poll_.malformed; }
  void endPoll(bool complete);
  void endTick();
  /** Ends a tick that failed half-way: no vanishing, outputs as far as they got. */
  void abortTick();
  bool inTick() const { return inTick_; }

  // ---- results of the last tick (valid until the next mutation)
  uint32_t tick() const { return tick_; }
  size_t rowCount() const { return rowCount_; }
  const std::vector<uint32_t>& activeUsers() const { return active_; }
  const std::vector<VanishedRec>& vanished() const { return vanished_; }
  const std::vector<PollStat>& polls() const { return polls_; }
  size_t userCount() const { return users_.size(); }
  size_t usersReported() const { return usersReported_; }
  void markUsersReported() { usersReported_ = users_.size(); }
  Slice userName(uint32_t id) const { return Slice(userArena_.data() + users_[id].off, users_[id].len); }
  const std::string& scopeName(uint32_t id) const { return scopes_[id].name; }
  Slice rowKey(size_t row) const;
  /** False for a sample row: then `index` is the sample's index in its batch. */
  bool rowRemote(size_t row, Slice& out, uint32_t& index) const {
    const RowAux& x = aux_[row];
    if (x.remLen == kNone) {
      index = x.remOff;
      return false;
    }
    out = Slice(remotes_.data() + x.remOff, x.remLen);
    return true;
  }

  // ---- between ticks
  bool ended(Slice key, uint64_t rx, uint64_t tx, bool hasConnectedAt, uint64_t connectedAt, bool hasUser, Slice user,
             bool hasScope, Slice scope, EndedOut& out);
  void seed(Slice key, Slice scope, Slice user, uint64_t rx, uint64_t tx, uint64_t connectedAt, bool ended);
  bool forget(Slice key);
  void reset();
  size_t trackedCount() const { return index_.size(); }
  template <class Fn>
  void forEachTracked(Fn fn) const {
    for (size_t s = 0; s < entries_.size(); ++s) {
      const Entry& e = entries_[s];
      if (e.state == kFree) continue;
      SnapshotRec r{keyPtr(e), e.keyLen, meta_[s].scope, e.userId, e.rx, e.tx, e.connectedAt, e.state == kEnded};
      fn(r);
    }
  }

 private:
  const char* keyPtr(const Entry& e) const { return e.keyLen <= kInline ? e.inl : keyArena_.data() + e.keyOff; }
  bool keyEq(const Entry& e, const char* k, size_t n) const { return e.keyLen == n && bytesEq(keyPtr(e), k, n); }
  bool entryUserIs(const Entry& e, const char* p, size_t n) const {
    if (e.userLen != kUserNotInline) return e.userLen == n && bytesEq(e.inl + e.keyLen, p, n);
    return userIs(e.userId, p, n);
  }
  void setEntryUser(Entry& e, uint32_t uid) {
    const UserRec& u = users_[uid];
    e.userId = uid;
    e.userEmpty = u.len == 0;
    if (e.keyLen <= kInline && u.len <= kInline - e.keyLen) {
      e.userLen = static_cast<uint16_t>(u.len);
      if (u.len) std::memcpy(e.inl + e.keyLen, userArena_.data() + u.off, u.len);
    } else {
      e.userLen = kUserNotInline;
    }
  }
  void aggregateUsers();
  uint32_t lookup(uint64_t h, const char* k, size_t n) const {
    return index_.find(h, [&](uint32_t s) { return keyEq(entries_[s], k, n); });
  }
  uint32_t internUser(const char* p, size_t n);
  bool userIs(uint32_t id, const char* p, size_t n) const {
    const UserRec& u = users_[id];
    return u.len == n && (n == 0 || std::memcmp(userArena_.data() + u.off, p, n) == 0);
  }
  uint32_t allocSlot();
  void setKey(Entry& e, const char* k, size_t n);
  void freeSlot(uint32_t s);
  void moveScope(uint32_t slot, uint32_t scope);
  void markSeen(uint32_t slot);
  void link(uint32_t slot);
  /** slot: the entry when already known, kNone to predict/look up, kNoPrediction to look up. */
  void process(const char* key, size_t klen, uint32_t slot, const RowIn& in);
  void processSlow(const char* key, size_t klen, uint32_t slot, uint64_t h, const RowIn& in);
  void emit(uint32_t slot, uint32_t uid, uint64_t drx, uint64_t dtx, uint8_t flags, const RowIn& in);
  static constexpr uint32_t kNoPrediction = 0xFFFFFFFEu;
  void maybeCompactKeys();

  std::vector<Entry> entries_;
  std::vector<SlotMeta> meta_;
  std::vector<uint32_t> free_;
  HashIndex index_;
  std::string keyArena_;
  size_t keyGarbage_ = 0;

  std::vector<UserRec> users_;
  std::string userArena_;
  HashIndex userIndex_;
  size_t usersReported_ = 0;

  std::vector<ScopeRec> scopes_;
  std::unordered_map<std::string, uint32_t> scopeIds_;
  std::vector<uint8_t> scanScope_;

  // per tick
  Host* host_ = nullptr;
  bool inTick_ = false;
  uint32_t tick_ = 0;
  size_t rowCount_ = 0;
  std::vector<RowAux> aux_;
  std::vector<char> remotes_;
  size_t remotesLen_ = 0;
  struct UserAcc {
    double rx = 0;
    double tx = 0;
    uint32_t live = 0;
    uint32_t tick = 0;  // last tick the user had a row (membership of active_)
  };
  std::vector<UserAcc> acc_;
  std::vector<uint32_t> active_;
  std::vector<VanishedRec> vanished_;
  std::vector<PollStat> polls_;

  // per poll
  PollStat poll_;
  uint32_t curScope_ = kNone;
  size_t prefixLen_ = 0;
  std::vector<char> keyBuf_;
  size_t keyLen_ = 0;
  std::string resolved_;
  uint32_t prevRow_ = kNone;
  uint32_t pred_ = kNone;
  uint32_t pollSeen_ = 0;  // scopes_[curScope_].seen increments not yet added
  const char* srcBegin_ = nullptr;
  const char* srcEnd_ = nullptr;
};

}  // namespace pg
