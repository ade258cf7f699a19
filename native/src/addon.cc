// N-API glue for the accounting tracker. Arguments arrive already validated by native/index.ts;
// the checks here only keep a wrong call from crashing the process.
#include <napi.h>

#include <algorithm>
#include <string>

#include "parsers.h"
#include "tracker.h"

namespace {

using pg::Slice;

/** A JS ArrayBuffer the tracker writes into; replaced (old one left to the GC) when it grows. */
struct JsBuf {
  Napi::Reference<Napi::ArrayBuffer> ref;
  void* data = nullptr;
  size_t bytes = 0;

  void grow(Napi::Env env, size_t minBytes, size_t keepBytes) {
    size_t nb = std::max<size_t>({minBytes, bytes * 2, 4096});
    Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, nb);  // zero-filled
    if (keepBytes) std::memcpy(ab.Data(), data, keepBytes);
    ref = Napi::Persistent(ab);
    data = ab.Data();
    bytes = nb;
  }
  Napi::Value value(Napi::Env env) const { return ref.IsEmpty() ? env.Undefined() : ref.Value(); }
};

std::string utf8Arg(const Napi::Value& v, const char* what) {
  if (!v.IsString()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

double numberArg(const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= static_cast<double>(pg::kMaxSafe)) || d != static_cast<double>(static_cast<uint64_t>(d)))
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a non-negative safe integer");
  return d;
}

class TrackerWrap : public Napi::ObjectWrap<TrackerWrap>, public pg::Host {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "NativeTracker",
                       {
                           InstanceMethod<&TrackerWrap::Tick>("tick"),
                           InstanceMethod<&TrackerWrap::KeyAt>("keyAt"),
                           InstanceMethod<&TrackerWrap::RemoteAt>("remoteAt"),
                           InstanceMethod<&TrackerWrap::Ended>("ended"),
                           InstanceMethod<&TrackerWrap::Seed>("seed"),
                           InstanceMethod<&TrackerWrap::Forget>("forget"),
                           InstanceMethod<&TrackerWrap::Snapshot>("snapshot"),
                           InstanceMethod<&TrackerWrap::Reset>("reset"),
                           InstanceMethod<&TrackerWrap::Size>("size"),
                       });
  }

  explicit TrackerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TrackerWrap>(info) {}

  // ---- pg::Host
  void growRows(size_t minCapacity, size_t used) override {
    size_t cap = std::max<size_t>({minCapacity, t_.rows.capacity * 2, 1024});
    rxd_.grow(env_, cap * 8, used * 8);
    txd_.grow(env_, cap * 8, used * 8);
    rx_.grow(env_, cap * 8, used * 8);
    tx_.grow(env_, cap * 8, used * 8);
    cat_.grow(env_, cap * 8, used * 8);
    user_.grow(env_, cap * 4, used * 4);
    flags_.grow(env_, cap, used);
    t_.rows.rxDelta = static_cast<double*>(rxd_.data);
    t_.rows.txDelta = static_cast<double*>(txd_.data);
    t_.rows.rx = static_cast<double*>(rx_.data);
    t_.rows.tx = static_cast<double*>(tx_.data);
    t_.rows.connectedAt = static_cast<double*>(cat_.data);
    t_.rows.user = static_cast<uint32_t*>(user_.data);
    t_.rows.flags = static_cast<uint8_t*>(flags_.data);
    t_.rows.capacity = std::min({rxd_.bytes / 8, user_.bytes / 4, flags_.bytes});
  }

  void growUsers(size_t minCapacity, size_t used) override {
    size_t cap = std::max<size_t>({minCapacity, t_.ucols.capacity * 2, 1024});
    urx_.grow(env_, cap * 8, used * 8);
    utx_.grow(env_, cap * 8, used * 8);
    ulive_.grow(env_, cap * 4, used * 4);
    t_.ucols.rxDelta = static_cast<double*>(urx_.data);
    t_.ucols.txDelta = static_cast<double*>(utx_.data);
    t_.ucols.live = static_cast<uint32_t*>(ulive_.data);
    t_.ucols.capacity = std::min(urx_.bytes / 8, ulive_.bytes / 4);
  }

  void resolveUser(const char* p, size_t n, std::string& out) override {
    if (resolver_.IsEmpty() || !resolver_.IsFunction()) return;
    Napi::HandleScope scope(env_);
    Napi::Value r = resolver_.As<Napi::Function>().Call({Napi::String::New(env_, p, n)});
    if (r.IsString()) out = r.As<Napi::String>().Utf8Value();
  }

 private:
  void notBusy(Napi::Env env) {
    if (t_.inTick()) throw Napi::Error::New(env, "accounting tracker: re-entrant call during tick()");
  }

  // tick(polls): each poll is [format, data, scope, resolver|undefined] for text, or
  // [3, keysAndUsers, scope, undefined, lengths(Uint32Array, 2/sample), numbers(Float64Array,
  //  3/sample), count, keysAndUsers.length, isAscii]
  // (A worker thread parsing later polls ahead was tried: on the 2-vCPU target two busy threads
  // ran at 1.77x the time of one, so it only added jitter.)
  Napi::Value Tick(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    if (!info[0].IsArray()) throw Napi::TypeError::New(env, "tick: polls must be an array");
    Napi::Array polls = info[0].As<Napi::Array>();
    env_ = env;
    t_.beginTick(this);
    try {
      const uint32_t np = polls.Length();
      for (uint32_t i = 0; i < np; ++i) {
        Napi::HandleScope hs(env);
        Napi::Value pv = polls.Get(i);
        if (!pv.IsArray()) throw Napi::TypeError::New(env, "tick: malformed poll descriptor");
        Napi::Array d = pv.As<Napi::Array>();
        const int format = d.Get(0u).As<Napi::Number>().Int32Value();
        const std::string scope = utf8Arg(d.Get(2u), "scope");
        t_.beginPoll(t_.internScope(scope.data(), scope.size()));
        bool complete = true;
        if (format == pg::kSamples) {
          complete = feedSamples(env, d);
        } else {
          Napi::Value data = d.Get(1u);
          const char* p;
          size_t n;
          if (data.IsTypedArray()) {
            Napi::TypedArray ta = data.As<Napi::TypedArray>();
            if (ta.TypedArrayType() != napi_uint8_array) throw Napi::TypeError::New(env, "text must be a Uint8Array");
            Napi::Uint8Array u8 = data.As<Napi::Uint8Array>();
            p = reinterpret_cast<const char*>(u8.Data());
            n = u8.ByteLength();
          } else if (data.IsString()) {
            size_t len = 0;
            if (napi_get_value_string_utf8(env, data, nullptr, 0, &len) != napi_ok)
              throw Napi::Error::New(env, "cannot read text");
            text_.resize(len + 1);
            if (napi_get_value_string_utf8(env, data, &text_[0], len + 1, &len) != napi_ok)
              throw Napi::Error::New(env, "cannot read text");
            p = text_.data();
            n = len;
          } else {
            throw Napi::TypeError::New(env, "text must be a string or Uint8Array");
          }
          resolver_ = d.Get(3u);
          t_.setSource(p, n);
          switch (format) {
            case pg::kOpenVpnStatus3: complete = pg::parseOpenVpnStatus3(t_, p, n); break;
            case pg::kWgDump: complete = pg::parseWgDump(t_, p, n); break;
            case pg::kOcservJson: complete = pg::parseOcservJson(t_, p, n); break;
            default: throw Napi::TypeError::New(env, "unknown status format");
          }
          resolver_ = Napi::Value();
        }
        t_.endPoll(complete);
      }
      t_.endTick();
    } catch (...) {
      resolver_ = Napi::Value();
      t_.abortTick();
      throw;
    }
    return result(env);
  }

  bool feedSamples(Napi::Env env, Napi::Array d) {
    Napi::Value sv = d.Get(1u);
    Napi::Value lv = d.Get(4u);
    Napi::Value nv = d.Get(5u);
    const size_t count = d.Get(6u).As<Napi::Number>().Uint32Value();
    const size_t joined = d.Get(7u).As<Napi::Number>().Uint32Value();
    if (!sv.IsString() || !lv.IsTypedArray() || !nv.IsTypedArray())
      throw Napi::TypeError::New(env, "tick: malformed sample batch");
    Napi::Uint32Array lens = lv.As<Napi::Uint32Array>();
    Napi::Float64Array nums = nv.As<Napi::Float64Array>();
    if (lens.ElementLength() < count * 2 || nums.ElementLength() < count * 3)
      throw Napi::TypeError::New(env, "tick: malformed sample batch");
    const uint32_t* L = lens.Data();
    const double* N = nums.Data();
    size_t total = 0;
    for (size_t i = 0; i < count * 2; ++i) total += L[i];
    if (total != joined) throw Napi::TypeError::New(env, "tick: malformed sample batch");
    // All-ASCII (the usual case; JS checked): the UTF-16 lengths are byte lengths and the UTF-8
    // copy is sliced as is.
    if (d.Get(8u).ToBoolean().Value()) {
      text_.resize(joined + 1);
      size_t copied = 0;
      if (napi_get_value_string_utf8(env, sv, &text_[0], joined + 1, &copied) != napi_ok || copied != joined)
        throw Napi::Error::New(env, "tick: cannot read sample batch");
      const char* s = text_.data();
      for (size_t i = 0; i < count; ++i) {
        const size_t kl = L[2 * i], ul = L[2 * i + 1];
        t_.sampleRow(pg::RowIn{Slice(s, kl), Slice(), Slice(s + kl, ul), Slice(), static_cast<uint64_t>(N[3 * i]),
                               static_cast<uint64_t>(N[3 * i + 1]), static_cast<uint64_t>(N[3 * i + 2]),
                               static_cast<uint32_t>(i), false, false});
        s += kl + ul;
      }
      return true;
    }
    u16_.resize(joined + 1);
    size_t copied = 0;
    if (napi_get_value_string_utf16(env, sv, &u16_[0], joined + 1, &copied) != napi_ok || copied != joined)
      throw Napi::Error::New(env, "tick: cannot read sample batch");
    const char16_t* s = u16_.data();
    for (size_t i = 0; i < count; ++i) {
      const size_t kl = L[2 * i], ul = L[2 * i + 1];
      skey_.clear();
      pg::appendUtf16(skey_, s, kl);
      s += kl;
      suser_.clear();
      pg::appendUtf16(suser_, s, ul);
      s += ul;
      t_.sampleRow(pg::RowIn{Slice(skey_.data(), skey_.size()), Slice(), Slice(suser_.data(), suser_.size()),
                             Slice(), static_cast<uint64_t>(N[3 * i]), static_cast<uint64_t>(N[3 * i + 1]),
                             static_cast<uint64_t>(N[3 * i + 2]), static_cast<uint32_t>(i), false, false});
    }
    return true;
  }

  Napi::Value result(Napi::Env env) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("tick", Napi::Number::New(env, t_.tick()));
    o.Set("rowCount", Napi::Number::New(env, static_cast<double>(t_.rowCount())));
    o.Set("rxDelta", rxd_.value(env));
    o.Set("txDelta", txd_.value(env));
    o.Set("rx", rx_.value(env));
    o.Set("tx", tx_.value(env));
    o.Set("connectedAt", cat_.value(env));
    o.Set("user", user_.value(env));
    o.Set("flags", flags_.value(env));
    o.Set("userRxDelta", urx_.value(env));
    o.Set("userTxDelta", utx_.value(env));
    o.Set("userLive", ulive_.value(env));
    const auto& act = t_.activeUsers();
    Napi::Uint32Array active = Napi::Uint32Array::New(env, act.size());
    if (!act.empty()) std::memcpy(active.Data(), act.data(), act.size() * 4);
    o.Set("activeUsers", active);
    size_t from = t_.usersReported(), to = t_.userCount();
    Napi::Array names = Napi::Array::New(env, to - from);
    for (size_t u = from; u < to; ++u) {
      Slice nm = t_.userName(static_cast<uint32_t>(u));
      names.Set(static_cast<uint32_t>(u - from), Napi::String::New(env, nm.p, nm.n));
    }
    t_.markUsersReported();
    o.Set("newUsers", names);
    const auto& van = t_.vanished();
    Napi::Array va = Napi::Array::New(env, van.size());
    for (size_t i = 0; i < van.size(); ++i) {
      const pg::VanishedRec& v = van[i];
      Napi::Object x = Napi::Object::New(env);
      Slice un = t_.userName(v.user);
      x.Set("key", Napi::String::New(env, v.key.data(), v.key.size()));
      x.Set("scope", Napi::String::New(env, t_.scopeName(v.scope)));
      x.Set("user", Napi::String::New(env, un.p, un.n));
      x.Set("rx", Napi::Number::New(env, static_cast<double>(v.rx)));
      x.Set("tx", Napi::Number::New(env, static_cast<double>(v.tx)));
      x.Set("connectedAt", Napi::Number::New(env, static_cast<double>(v.connectedAt)));
      va.Set(static_cast<uint32_t>(i), x);
    }
    o.Set("vanished", va);
    const auto& ps = t_.polls();
    Napi::Float64Array pa = Napi::Float64Array::New(env, ps.size() * 5);
    for (size_t i = 0; i < ps.size(); ++i) {
      pa[i * 5] = ps[i].rowStart;
      pa[i * 5 + 1] = ps[i].rowCount;
      pa[i * 5 + 2] = ps[i].malformed;
      pa[i * 5 + 3] = ps[i].ignored;
      pa[i * 5 + 4] = ps[i].complete ? 1 : 0;
    }
    o.Set("polls", pa);
    return o;
  }

  Napi::Value KeyAt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t row = rowArg(info);
    Slice k = t_.rowKey(row);
    return Napi::String::New(env, k.p, k.n);
  }

  /** The remote address, or (for a sample row) the sample's index in its batch. */
  Napi::Value RemoteAt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    size_t row = rowArg(info);
    Slice r;
    uint32_t index = 0;
    if (!t_.rowRemote(row, r, index)) return Napi::Number::New(env, index);
    return Napi::String::New(env, r.p, r.n);
  }

  size_t rowArg(const Napi::CallbackInfo& info) {
    double d = numberArg(info[0], "row");
    if (d >= static_cast<double>(t_.rowCount())) throw Napi::RangeError::New(info.Env(), "row out of range");
    return static_cast<size_t>(d);
  }

  // ended(key, rx, tx, connectedAt|undefined, user|undefined, scope|undefined) → object | null
  Napi::Value Ended(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    std::string key = utf8Arg(info[0], "key");
    uint64_t rx = static_cast<uint64_t>(numberArg(info[1], "rx"));
    uint64_t tx = static_cast<uint64_t>(numberArg(info[2], "tx"));
    bool hasCat = !info[3].IsUndefined();
    uint64_t cat = hasCat ? static_cast<uint64_t>(numberArg(info[3], "connectedAt")) : 0;
    bool hasUser = !info[4].IsUndefined();
    std::string user = hasUser ? utf8Arg(info[4], "user") : std::string();
    bool hasScope = !info[5].IsUndefined();
    std::string scope = hasScope ? utf8Arg(info[5], "scope") : std::string();
    pg::EndedOut out;
    if (!t_.ended(Slice(key.data(), key.size()), rx, tx, hasCat, cat, hasUser, Slice(user.data(), user.size()),
                  hasScope, Slice(scope.data(), scope.size()), out))
      return env.Null();
    Napi::Object o = Napi::Object::New(env);
    Slice un = t_.userName(out.user);
    o.Set("known", Napi::Boolean::New(env, out.known));
    o.Set("user", Napi::String::New(env, un.p, un.n));
    if (out.scope == pg::kNone)
      o.Set("scope", env.Undefined());
    else
      o.Set("scope", Napi::String::New(env, t_.scopeName(out.scope)));
    o.Set("rxDelta", Napi::Number::New(env, static_cast<double>(out.rxDelta)));
    o.Set("txDelta", Napi::Number::New(env, static_cast<double>(out.txDelta)));
    o.Set("rx", Napi::Number::New(env, static_cast<double>(out.rx)));
    o.Set("tx", Napi::Number::New(env, static_cast<double>(out.tx)));
    o.Set("connectedAt", Napi::Number::New(env, static_cast<double>(out.connectedAt)));
    return o;
  }

  // seed(key, scope, user, rx, tx, connectedAt, ended)
  Napi::Value Seed(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    std::string key = utf8Arg(info[0], "key");
    std::string scope = utf8Arg(info[1], "scope");
    std::string user = utf8Arg(info[2], "user");
    uint64_t rx = static_cast<uint64_t>(numberArg(info[3], "rx"));
    uint64_t tx = static_cast<uint64_t>(numberArg(info[4], "tx"));
    uint64_t cat = static_cast<uint64_t>(numberArg(info[5], "connectedAt"));
    bool ended = info[6].ToBoolean().Value();
    t_.seed(Slice(key.data(), key.size()), Slice(scope.data(), scope.size()), Slice(user.data(), user.size()), rx,
            tx, cat, ended);
    return env.Undefined();
  }

  Napi::Value Forget(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    std::string key = utf8Arg(info[0], "key");
    return Napi::Boolean::New(env, t_.forget(Slice(key.data(), key.size())));
  }

  Napi::Value Snapshot(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    notBusy(env);
    Napi::Array out = Napi::Array::New(env, t_.trackedCount());
    uint32_t i = 0;
    t_.forEachTracked([&](const pg::SnapshotRec& r) {
      Napi::Object o = Napi::Object::New(env);
      Slice un = t_.userName(r.user);
      o.Set("key", Napi::String::New(env, r.key, r.keyLen));
      o.Set("scope", Napi::String::New(env, t_.scopeName(r.scope)));
      o.Set("user", Napi::String::New(env, un.p, un.n));
      o.Set("rx", Napi::Number::New(env, static_cast<double>(r.rx)));
      o.Set("tx", Napi::Number::New(env, static_cast<double>(r.tx)));
      o.Set("connectedAt", Napi::Number::New(env, static_cast<double>(r.connectedAt)));
      o.Set("ended", Napi::Boolean::New(env, r.ended));
      out.Set(i++, o);
    });
    return out;
  }

  Napi::Value Reset(const Napi::CallbackInfo& info) {
    notBusy(info.Env());
    t_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Size(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(t_.trackedCount()));
  }

  pg::Tracker t_;
  napi_env env_ = nullptr;
  Napi::Value resolver_;
  JsBuf rxd_, txd_, rx_, tx_, cat_, user_, flags_, urx_, utx_, ulive_;
  std::string text_;  // UTF-8 copy of a string text, or a sample batch's bytes
  std::u16string u16_;
  std::string skey_, suser_;
};

/** Bare baseline for the benchmark: count '\n' with memchr. */
Napi::Value MemchrLines(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) throw Napi::TypeError::New(env, "memchrLines: expected a Uint8Array");
  Napi::Uint8Array u8 = info[0].As<Napi::Uint8Array>();
  const char* p = reinterpret_cast<const char*>(u8.Data());
  const char* e = p + u8.ByteLength();
  double lines = 0;
  while (p < e) {
    const void* q = std::memchr(p, '\n', static_cast<size_t>(e - p));
    if (!q) break;
    ++lines;
    p = static_cast<const char*>(q) + 1;
  }
  return Napi::Number::New(env, lines);
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeTracker", TrackerWrap::Init(env));
  exports.Set("memchrLines", Napi::Function::New(env, MemchrLines, "memchrLines"));
  exports.Set("abiVersion", Napi::Number::New(env, 1));
  exports.Set("parserIsa", Napi::String::New(env, pg::parserIsa()));
  return exports;
}

}  // namespace

NODE_API_MODULE(polygate_accounting, Init)
