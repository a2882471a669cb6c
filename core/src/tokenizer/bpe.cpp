#include "esft/tokenizer/bpe.h"

#include <algorithm>
#include <queue>

#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/tokenizer/byte_level.h"

namespace esft::tok {

namespace {
uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

void refuse_option(const nlohmann::json& model, const char* key, bool allowed_if_set) {
  if (!model.contains(key) || model.at(key).is_null()) return;
  const auto& v = model.at(key);
  const bool set = v.is_boolean() ? v.get<bool>() : v.is_string() ? !v.get<std::string>().empty() : true;
  if (set && !allowed_if_set) throw Error(std::string("tokenizer.json: BPE option '") + key + "' is not supported");
}

constexpr size_t kCachedWordBytes = 256;
constexpr size_t kCacheEntries = 200000;
}  // namespace

BpeModel::BpeModel(const nlohmann::json& model) {
  if (model.value("type", std::string()) != "BPE") throw Error("tokenizer.json: model type must be BPE");
  for (const char* key : {"dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "byte_fallback"}) {
    refuse_option(model, key, false);
  }
  ignore_merges_ = model.value("ignore_merges", false);
  const auto& byte_level = ByteLevel::get();

  const auto& vocab = model.at("vocab");
  if (!vocab.is_object()) throw Error("tokenizer.json: model.vocab must be an object");
  // Ids index the token tables, so they must be non-negative integers and, as in every real vocabulary, about as
  // dense as the vocabulary is large (a single id of 2e9 would ask for 2e9 table entries).
  const int64_t id_limit = 2 * static_cast<int64_t>(vocab.size()) + 1024;
  auto id_of_entry = [&](const nlohmann::json& value, const std::string& token) {
    const auto id = json_get<int32_t>(value);
    if (!id || *id < 0 || *id >= id_limit)
      throw Error("tokenizer.json: the id of '" + token + "' must be an integer from 0 to " + std::to_string(id_limit - 1) +
                  " (the vocabulary has " + std::to_string(vocab.size()) + " entries), got " + json_excerpt(value));
    return *id;
  };
  int32_t max_id = -1;
  for (const auto& item : vocab.items()) max_id = std::max(max_id, id_of_entry(item.value(), item.key()));
  tokens_.assign(static_cast<size_t>(max_id + 1), std::string());
  bytes_.assign(tokens_.size(), std::string());
  is_bytes_.assign(tokens_.size(), false);
  by_bytes_.reserve(tokens_.size());
  for (const auto& item : vocab.items()) {
    const auto id = id_of_entry(item.value(), item.key());
    tokens_[id] = item.key();
    std::string raw;
    if (byte_level.decode(item.key(), raw)) {
      bytes_[id] = raw;
      is_bytes_[id] = true;
      by_bytes_.emplace(std::move(raw), id);
    }
  }
  for (int b = 0; b < 256; ++b) byte_ids_[b] = id_of_bytes(std::string(1, static_cast<char>(b)));

  const auto& merges = model.at("merges");
  merges_.reserve(merges.size());
  int32_t rank = 0;
  for (const auto& m : merges) {
    std::string left, right;
    if (m.is_string()) {  // "a b"
      const auto s = m.get<std::string>();
      const auto space = s.find(' ');
      if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
        throw Error("tokenizer.json: merge '" + s + "' is not two tokens separated by one space");
      }
      left = s.substr(0, space), right = s.substr(space + 1);
    } else if (m.is_array() && m.size() == 2) {  // ["a", "b"]
      left = m[0].get<std::string>(), right = m[1].get<std::string>();
    } else {
      throw Error("tokenizer.json: a merge must be \"a b\" or [\"a\", \"b\"]");
    }
    auto id_of = [&](const std::string& token) {
      auto it = vocab.find(token);
      if (it == vocab.end()) throw Error("tokenizer.json: merge names '" + token + "', which is not in the vocabulary");
      return id_of_entry(*it, token);
    };
    const int32_t l = id_of(left), r = id_of(right), merged = id_of(left + right);
    // A repeated pair takes its last rank, as the Rust library's HashMap collect does.
    merges_[pair_key(l, r)] = Merge{rank++, merged};
  }
}

const std::string* BpeModel::bytes_of(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= bytes_.size() || !is_bytes_[id]) return nullptr;
  return &bytes_[id];
}

int32_t BpeModel::id_of_bytes(std::string_view bytes) const {
  auto it = by_bytes_.find(std::string(bytes));
  return it == by_bytes_.end() ? -1 : it->second;
}

const BpeModel::Merge* BpeModel::find_merge(int32_t left, int32_t right) const {
  auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? nullptr : &it->second;
}

void BpeModel::merge(std::vector<int32_t>& symbols) const {
  // The tokenizers library's Word::merge_all: a queue of candidate merges ordered by (rank, position); stale
  // candidates (a side already merged away) are skipped when popped.
  const int n = static_cast<int>(symbols.size());
  std::vector<int> next(n), prev(n);
  std::vector<bool> alive(n, true);
  for (int i = 0; i < n; ++i) next[i] = i + 1 < n ? i + 1 : -1, prev[i] = i - 1;
  struct Candidate {
    int32_t rank;
    int pos;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  for (int i = 0; i + 1 < n; ++i)
    if (const auto* m = find_merge(symbols[i], symbols[i + 1])) queue.push({m->rank, i});
  while (!queue.empty()) {
    const auto c = queue.top();
    queue.pop();
    if (!alive[c.pos] || next[c.pos] < 0) continue;
    const int right = next[c.pos];
    const auto* m = find_merge(symbols[c.pos], symbols[right]);
    if (!m || m->rank != c.rank) continue;
    symbols[c.pos] = m->id;
    alive[right] = false;
    next[c.pos] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.pos;
    if (prev[c.pos] >= 0)
      if (const auto* p = find_merge(symbols[prev[c.pos]], symbols[c.pos])) queue.push({p->rank, prev[c.pos]});
    if (next[c.pos] >= 0)
      if (const auto* q = find_merge(symbols[c.pos], symbols[next[c.pos]])) queue.push({q->rank, c.pos});
  }
  size_t out = 0;
  for (int i = 0; i >= 0 && i < n; i = next[i]) symbols[out++] = symbols[i];
  symbols.resize(out);
}

void BpeModel::encode(std::string_view word, std::vector<int32_t>& ids) const {
  if (word.empty()) return;
  const std::string key(word);  // one copy serves the vocabulary lookup and the cache
  if (ignore_merges_) {  // a pre-token that is a whole vocabulary entry is emitted as is
    auto whole = by_bytes_.find(key);
    if (whole != by_bytes_.end()) {
      ids.push_back(whole->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      ids.insert(ids.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> symbols;
  symbols.reserve(word.size());
  // A byte without a single-byte token has no id (no unk_token, no byte fallback): the Rust library drops it.
  for (unsigned char b : word)
    if (byte_ids_[b] >= 0) symbols.push_back(byte_ids_[b]);
  if (symbols.size() > 1) merge(symbols);
  ids.insert(ids.end(), symbols.begin(), symbols.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() >= kCacheEntries) cache_.clear();
    cache_.emplace(key, std::move(symbols));
  }
}

}  // namespace esft::tok
