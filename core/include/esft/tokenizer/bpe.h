#pragma once
// The BPE model of a byte-level tokenizer.json: vocabulary and merge ranks, applied to one pre-token at a time.
// Tokens are kept as raw bytes (the byte-level characters decoded), so pre-tokens never need mapping: a pre-token's
// initial symbols are its bytes, and merges apply lowest rank first, leftmost on ties, as the `tokenizers` library.
#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace esft::tok {

class BpeModel {
 public:
  // model: the "model" object of tokenizer.json (type BPE). Throws esft::Error for options this code does not
  // implement (dropout, byte_fallback, subword prefixes/suffixes, unk_token) or for merges naming unknown tokens.
  explicit BpeModel(const nlohmann::json& model);

  // Appends the ids of one pre-token (raw bytes).
  void encode(std::string_view word, std::vector<int32_t>& ids) const;

  // Vocabulary entries in tokenizer.json's byte-level spelling.
  const std::vector<std::string>& tokens() const { return tokens_; }
  // Raw bytes of id, or nullptr when the token is not made of byte-level characters.
  const std::string* bytes_of(int32_t id) const;
  int32_t id_of_bytes(std::string_view bytes) const;  // -1 when absent
  size_t size() const { return tokens_.size(); }

 private:
  void merge(std::vector<int32_t>& symbols) const;
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  const Merge* find_merge(int32_t left, int32_t right) const;

  std::vector<std::string> tokens_;               // id -> byte-level spelling ("" for gaps in the id range)
  std::vector<std::string> bytes_;                // id -> raw bytes ("" when not byte-level)
  std::vector<bool> is_bytes_;
  std::unordered_map<std::string, int32_t> by_bytes_;
  std::unordered_map<uint64_t, Merge> merges_;    // (left << 32 | right) -> rank and merged id
  std::array<int32_t, 256> byte_ids_{};           // single-byte tokens
  bool ignore_merges_ = false;

  // Pre-tokens repeat a lot (words, indentation): remember their ids, as the Rust library's cache does.
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

}  // namespace esft::tok
