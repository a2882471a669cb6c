#include "esft/tokenizer/bpe_trainer.h"

#include <algorithm>
#include <array>
#include <queue>
#include <unordered_set>

#include "esft/error.h"
#include "esft/tokenizer/byte_level.h"
#include "esft/tokenizer/regex_split.h"
#include "esft/tokenizer/utf8.h"

namespace esft::tok {

namespace {


using PairKey = uint64_t;  // left id << 32 | right id: ordering keys orders pairs by (left, right)

PairKey pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}
int32_t left_of(PairKey k) { return static_cast<int32_t>(k >> 32); }
int32_t right_of(PairKey k) { return static_cast<int32_t>(k & 0xffffffffu); }

// Token spellings in tokenizer.json's byte-level characters. A spelling made twice (two pairs can spell the same
// token: "ab"+"c" and "a"+"bc") keeps its first id.
class Vocabulary {
 public:
  int32_t add(const std::string& spelling) {
    auto [it, added] = ids_.emplace(spelling, static_cast<int32_t>(spellings_.size()));
    if (added) spellings_.push_back(spelling);
    return it->second;
  }
  const std::string& spelling(int32_t id) const { return spellings_[static_cast<size_t>(id)]; }
  size_t size() const { return spellings_.size(); }

 private:
  std::vector<std::string> spellings_;
  std::unordered_map<std::string, int32_t> ids_;
};

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

// A pair's count when it was queued; a count that has changed since is re-queued when popped.
struct Candidate {
  int64_t count;
  PairKey pair;
};
// priority_queue's "less": the top is the highest count, and among equal counts the smallest pair.
struct LowerPriority {
  bool operator()(const Candidate& a, const Candidate& b) const {
    return a.count != b.count ? a.count < b.count : a.pair > b.pair;
  }
};

// Replaces every (left, right) in `symbols` with `merged`, scanning left to right ("aaa" with (a, a) becomes "Xa"),
// and reports each neighbouring pair that disappears (-1) or appears (+1). The merged pair itself is not reported.
template <typename Change>
void merge_word(std::vector<int32_t>& symbols, int32_t left, int32_t right, int32_t merged, const Change& change) {
  const size_t n = symbols.size();
  size_t out = 0;  // symbols[0, out) is the merged prefix
  for (size_t i = 0; i < n;) {
    if (i + 1 < n && symbols[i] == left && symbols[i + 1] == right) {
      if (out > 0) change(pair_key(symbols[out - 1], left), -1), change(pair_key(symbols[out - 1], merged), +1);
      if (i + 2 < n) change(pair_key(right, symbols[i + 2]), -1), change(pair_key(merged, symbols[i + 2]), +1);
      symbols[out++] = merged;
      i += 2;
    } else {
      symbols[out++] = symbols[i++];
    }
  }
  symbols.resize(out);
}

nlohmann::json byte_level_settings(const char* type) {
  return {{"type", type}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
}

}  // namespace

BpeTrainer::BpeTrainer(BpeTrainerOptions options)
    : options_(std::move(options)), split_(std::make_unique<RegexSplit>(kGpt2Pattern)) {
  const auto& specials = options_.special_tokens;
  for (size_t i = 0; i < specials.size(); ++i) {
    if (specials[i].empty()) throw Error("BPE training: a special token is empty");
    if (!is_valid_utf8(specials[i]))
      throw Error("BPE training: special token '" + specials[i] + "' is not valid UTF-8");
    if (std::find(specials.begin(), specials.begin() + static_cast<std::ptrdiff_t>(i), specials[i]) !=
        specials.begin() + static_cast<std::ptrdiff_t>(i)) {
      throw Error("BPE training: special token '" + specials[i] + "' is given twice");
    }
  }
  const size_t fixed = specials.size() + 256;
  if (options_.vocab_size < fixed) {
    throw Error("BPE training: vocabulary size " + std::to_string(options_.vocab_size) + " is too small: the " +
                std::to_string(specials.size()) + " special token(s) and the 256 bytes need " + std::to_string(fixed));
  }
  if (options_.vocab_size > static_cast<size_t>(INT32_MAX)) {
    throw Error("BPE training: vocabulary size " + std::to_string(options_.vocab_size) + " is too large");
  }
}

BpeTrainer::~BpeTrainer() = default;

void BpeTrainer::add_text(std::string_view text) {
  if (!is_valid_utf8(text)) throw Error("BPE training: the text is not valid UTF-8");
  // Special tokens are cut out first, leftmost and then longest as Tokenizer::encode matches them. `next` caches
  // each one's next occurrence, so a token that is rare or absent is not searched for again at every cut.
  const auto& specials = options_.special_tokens;
  std::vector<size_t> next(specials.size());
  for (size_t i = 0; i < specials.size(); ++i) next[i] = text.find(specials[i]);
  for (size_t pos = 0;;) {
    size_t cut = std::string_view::npos, length = 0;
    for (size_t i = 0; i < specials.size(); ++i) {
      if (next[i] != std::string_view::npos && next[i] < pos) next[i] = text.find(specials[i], pos);
      if (next[i] < cut || (next[i] == cut && next[i] != std::string_view::npos && specials[i].size() > length)) {
        cut = next[i];
        length = specials[i].size();
      }
    }
    if (cut == std::string_view::npos) return count_words(text.substr(pos));
    count_words(text.substr(pos, cut - pos));
    pos = cut + length;
  }
}

void BpeTrainer::count_words(std::string_view piece) {
  if (piece.empty()) return;
  split_->split(piece, [&](size_t begin, size_t end) {
    ++counts_[std::string(piece.substr(begin, end - begin))];
    ++words_;
  });
}

nlohmann::json BpeTrainer::train() const {
  if (counts_.empty())
    throw Error("BPE training: no text to learn from (the input is empty or holds only special tokens)");
  const auto& byte_level = ByteLevel::get();

  Vocabulary vocab;
  for (const auto& s : options_.special_tokens) vocab.add(s);
  // The bytes in the order of their byte-level characters' code points (UTF-8 orders as its code points do).
  std::array<int, 256> bytes{};
  for (int b = 0; b < 256; ++b) bytes[b] = b;
  std::sort(bytes.begin(), bytes.end(), [&](int a, int b) {
    return byte_level.encode(static_cast<unsigned char>(a)) < byte_level.encode(static_cast<unsigned char>(b));
  });
  std::array<int32_t, 256> byte_id{};
  for (int b : bytes) byte_id[b] = vocab.add(byte_level.encode(static_cast<unsigned char>(b)));

  std::vector<Word> words;
  words.reserve(counts_.size());
  for (const auto& [text, count] : counts_) {
    Word w{{}, static_cast<int64_t>(count)};
    w.symbols.reserve(text.size());
    for (unsigned char b : text) w.symbols.push_back(byte_id[b]);
    words.push_back(std::move(w));
  }

  // Pair counts over all words, and for each pair the words that hold it (or held it once: a word left in a list
  // after losing the pair is harmless, merging there changes nothing).
  std::unordered_map<PairKey, int64_t> pair_counts;
  std::unordered_map<PairKey, std::vector<uint32_t>> where;
  for (uint32_t wi = 0; wi < words.size(); ++wi) {
    const auto& s = words[wi].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const PairKey k = pair_key(s[i], s[i + 1]);
      pair_counts[k] += words[wi].count;
      auto& list = where[k];
      if (list.empty() || list.back() != wi) list.push_back(wi);
    }
  }
  std::priority_queue<Candidate, std::vector<Candidate>, LowerPriority> queue;
  for (const auto& [k, count] : pair_counts) queue.push({count, k});

  const int64_t least = std::max<int64_t>(1, static_cast<int64_t>(options_.min_frequency));
  const size_t wanted_merges = options_.vocab_size - vocab.size();
  std::vector<PairKey> merges;
  std::unordered_set<PairKey> merged;
  std::unordered_map<PairKey, int64_t> delta;  // this step's changes of pair counts
  size_t reported = 0;
  while (vocab.size() < options_.vocab_size && !queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    const auto found = pair_counts.find(top.pair);
    const int64_t count = found == pair_counts.end() ? 0 : found->second;
    if (count != top.count) {  // the count changed since it was queued
      if (count > 0) queue.push({count, top.pair});
      continue;
    }
    if (count < least) break;

    const int32_t left = left_of(top.pair), right = right_of(top.pair);
    const int32_t id = vocab.add(vocab.spelling(left) + vocab.spelling(right));
    // A pair merged before can form again only through a token spelled twice; its first rank already applies.
    if (merged.insert(top.pair).second) merges.push_back(top.pair);

    delta.clear();
    const auto holders = std::move(where[top.pair]);
    where.erase(top.pair);
    for (uint32_t wi : holders) {
      auto& w = words[wi];
      merge_word(w.symbols, left, right, id, [&](PairKey k, int sign) {
        delta[k] += sign * w.count;
        if (sign > 0) {
          auto& list = where[k];
          if (list.empty() || list.back() != wi) list.push_back(wi);
        }
      });
    }
    pair_counts.erase(top.pair);  // every occurrence is merged
    for (const auto& [k, d] : delta) {
      if (d == 0 || k == top.pair) continue;
      auto& c = pair_counts[k];
      c += d;
      if (d > 0) queue.push({c, k});  // a count that grew needs a new entry; one that fell is fixed when popped
      if (c <= 0) pair_counts.erase(k), where.erase(k);
    }
    if (options_.progress && merges.size() % 1000 == 0 && merges.size() != reported) {
      reported = merges.size();
      options_.progress("BPE: " + std::to_string(merges.size()) + " of at most " + std::to_string(wanted_merges) +
                        " merges, the last seen " + std::to_string(count) + " times");
    }
  }

  nlohmann::json vocab_json = nlohmann::json::object();
  for (size_t id = 0; id < vocab.size(); ++id) vocab_json[vocab.spelling(static_cast<int32_t>(id))] = id;
  nlohmann::json merges_json = nlohmann::json::array();
  for (PairKey k : merges) merges_json.push_back({vocab.spelling(left_of(k)), vocab.spelling(right_of(k))});
  nlohmann::json added = nlohmann::json::array();
  for (size_t id = 0; id < options_.special_tokens.size(); ++id) {
    added.push_back({{"id", id},
                     {"content", options_.special_tokens[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", std::move(added)},
          {"normalizer", nullptr},
          {"pre_tokenizer", byte_level_settings("ByteLevel")},
          {"post_processor", nullptr},
          {"decoder", byte_level_settings("ByteLevel")},
          {"model",
           {{"type", "BPE"},
            {"dropout", nullptr},
            {"unk_token", nullptr},
            {"continuing_subword_prefix", nullptr},
            {"end_of_word_suffix", nullptr},
            {"fuse_unk", false},
            {"byte_fallback", false},
            {"ignore_merges", false},
            {"vocab", std::move(vocab_json)},
            {"merges", std::move(merges_json)}}}};
}

nlohmann::json train_bpe(const std::vector<std::string>& texts, const BpeTrainerOptions& options) {
  BpeTrainer trainer(options);
  for (const auto& text : texts) trainer.add_text(text);
  return trainer.train();
}

}  // namespace esft::tok
