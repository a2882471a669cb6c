#pragma once
// Training samples from JSON lines, in the three shapes of shared/spec/ESFT.md §4:
//   {"messages": [...]}                 rendered by the family's chat format; labels on assistant content and the
//                                       token that ends it (not on messages with "mask": 1);
//   {"prompt": "...", "completion": "..."}  labels on the completion and the EOS token;
//   {"text": "..."}                     labels on everything and the EOS token.
// BOS is prepended to prompt/completion and text samples when tokenizer_config.json says add_bos_token; EOS is
// appended to them whenever the config names an eos_token (a completion must learn to stop).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "esft/model/chat_format.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::data {

constexpr int32_t kIgnoreIndex = -100;  // label of a position without loss

// The special tokens of tokenizer_config.json (a token is a string or {"content": ...}).
struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, pad_token;
  bool add_bos_token = false;
  // `path`: tokenizer_config.json or a model directory holding one; a missing file gives the defaults (no special
  // tokens). Throws esft::Error for malformed JSON.
  static TokenizerConfig load(const std::filesystem::path& path);
};

struct Sample {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;  // same length; kIgnoreIndex where no loss
  std::string origin;           // "file:line", for messages about this sample
};

class SampleEncoder {
 public:
  // Throws esft::Error when a special token the config names (BOS, EOS, padding) is not in the tokenizer.
  SampleEncoder(const tok::Tokenizer& tokenizer, const TokenizerConfig& config, const ChatFormat& format,
                ChatOptions options = {});
  // One JSON record -> sample. Throws esft::Error prefixed with `origin` for a record of no known shape, fields of
  // the wrong type, or a malformed conversation.
  Sample encode(const nlohmann::json& record, const std::string& origin) const;
  // The id that pads rows: the config's pad_token, or 0 when it names none (padding is masked out either way).
  int32_t pad_id() const { return pad_; }

 private:
  void append(Sample& s, const std::string& text, bool trainable) const;
  const tok::Tokenizer& tokenizer_;
  const ChatFormat& format_;
  ChatOptions options_;
  std::optional<int32_t> bos_, eos_;
  int32_t pad_ = 0;
};

struct ReadReport {
  int64_t lines = 0;    // non-blank lines read
  int64_t samples = 0;
  int64_t tokens = 0;
  int64_t trainable_tokens = 0;
};

// Every non-blank line of a JSON-lines file. Throws esft::Error naming file and line for malformed JSON or a bad
// record; an empty file is an error too.
// Keeps the last `max_tokens` tokens of longer samples (where a conversation's answer is), for passes that take
// one sample per row: routing statistics, eval loss.
void keep_last_tokens(std::vector<Sample>& samples, int64_t max_tokens);

// Throws esft::Error naming the first sample with a token id the model cannot embed (a tokenizer larger than the
// model's vocabulary), or a padding id outside it.
void check_token_ids(const std::vector<Sample>& samples, int64_t vocab_size, int32_t pad_id);

std::vector<Sample> read_samples(const std::filesystem::path& jsonl, const SampleEncoder& encoder,
                                 ReadReport* report = nullptr);

}  // namespace esft::data
