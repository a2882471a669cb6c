#pragma once
// A byte-level BPE tokenizer read from Hugging Face's tokenizer.json, producing the ids the `tokenizers` library
// produces: added tokens first (leftmost longest match, lstrip/rstrip), then the normalizer (none or NFC), the
// pre-tokenizer (a Split regex, or ByteLevel's own GPT-2 regex), BPE by merge rank, and the ByteLevel decoder.
// Anything else in a tokenizer.json is refused by name rather than approximated.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace esft::tok {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;     // skipped by decode(..., skip_special_tokens = true)
  bool lstrip = false;      // a match also takes the whitespace before it
  bool rstrip = false;      // ... and after it
  bool normalized = false;  // matched in the normalized text instead of the raw text
};

class Tokenizer {
 public:
  // `path`: a tokenizer.json (optionally gzip-compressed) or a model directory holding one. Throws esft::Error
  // naming the file for a missing or malformed file or an unsupported component.
  static Tokenizer load(const std::filesystem::path& path);
  static Tokenizer from_json(const nlohmann::json& tokenizer, const std::string& source);

  // Ids of `text` (valid UTF-8; esft::Error otherwise) without adding special tokens; added tokens written in the
  // text are recognised.
  std::vector<int32_t> encode(std::string_view text) const;
  // Text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD as in the Rust library. Throws
  // esft::Error for an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const;

  int32_t token_to_id(std::string_view token) const;  // -1 when absent; added tokens included
  std::string id_to_token(int32_t id) const;          // tokenizer.json spelling; esft::Error when out of range
  size_t vocab_size() const;                          // one past the largest id
  const std::vector<AddedToken>& added_tokens() const;
  const std::string& source() const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

// Reads a whole file, transparently gunzipping it when it is gzip-compressed. Throws esft::Error.
std::string read_maybe_gzipped(const std::filesystem::path& path);

}  // namespace esft::tok
