#pragma once
// Learning a byte-level BPE vocabulary from text, written as a Hugging Face tokenizer.json that Tokenizer::load and
// the `tokenizers` library both read (ByteLevel pre-tokenizer and decoder, no normalizer, GPT-2's regex).
//
// Words are the pre-tokens, counted; each step merges, in every word, the adjacent pair of tokens that occurs most
// often, left to right without overlaps ("aaa" with (a, a) becomes "aa a"). Ties go to the smallest pair of ids (left
// id first), ids being vocabulary ids: special tokens first, then the 256 bytes in the order of their byte-level
// characters (GPT-2's order: '!' is the first byte), then merged tokens in the order they were made. These are the
// `tokenizers` library's BpeTrainer rules, so both learn the same vocabulary and merges from the same text (given all
// 256 bytes as its initial alphabet; tests/test_bpe_trainer.cpp and scripts/check-bpe-trainer.py check it). Special
// tokens written in the text separate words and are never part of one (the Rust trainer, unlike its tokenizer, does
// not cut them out: feed it the text already cut at them).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace esft::tok {

class RegexSplit;

struct BpeTrainerOptions {
  size_t vocab_size = 0;       // special tokens + 256 bytes + merges, at most
  size_t min_frequency = 2;    // a pair seen fewer times than this is never merged
  std::vector<std::string> special_tokens;  // e.g. "<|endoftext|>": ids 0, 1, ... in this order
  // Called now and then during training with a line of progress (merges made so far); may be empty.
  std::function<void(const std::string&)> progress;
};

class BpeTrainer {
 public:
  // Throws esft::Error when vocab_size cannot hold the special tokens and the 256 bytes, or for an empty or
  // repeated special token.
  explicit BpeTrainer(BpeTrainerOptions options);
  ~BpeTrainer();

  // Counts the words of one text (valid UTF-8; esft::Error otherwise). Texts are pre-tokenized separately, so a word
  // never spans two of them.
  void add_text(std::string_view text);
  uint64_t words() const { return words_; }  // pre-tokens counted so far
  size_t distinct_words() const { return counts_.size(); }

  // The tokenizer.json. Throws esft::Error when no word was counted (no text, or only special tokens).
  nlohmann::json train() const;

 private:
  void count_words(std::string_view piece);

  BpeTrainerOptions options_;
  std::unique_ptr<RegexSplit> split_;
  std::unordered_map<std::string, uint64_t> counts_;  // pre-token (raw bytes) -> occurrences
  uint64_t words_ = 0;
};

// BpeTrainer over `texts`, one after the other.
nlohmann::json train_bpe(const std::vector<std::string>& texts, const BpeTrainerOptions& options);

}  // namespace esft::tok
