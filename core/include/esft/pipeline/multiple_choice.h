#pragma once
// Multiple-choice evaluation by log-likelihood (Select-MoE's stage 4; MMLU, ARC, HellaSwag style), computed as
// lm-evaluation-harness computes `acc` and `acc_norm` for multiple_choice tasks:
//   - each choice is scored as the continuation " " + choice of the context (target delimiter " "); whitespace that
//     ends the context moves to the start of the continuation;
//   - the continuation's tokens are encode(context + continuation) after the first len(encode(context)) tokens (no
//     special tokens added); an empty context is replaced by the prefix token (BOS, else EOS);
//   - the score of a choice is the sum of the log-probabilities of its tokens (inputs longer than max_length lose
//     their first tokens); acc takes the best sum, acc_norm the best sum divided by the choice's length in
//     characters (Unicode code points, as Python's len);
//   - few-shot: the first N records of a dev file, each as its context + " " + its correct choice, joined and
//     followed by the record's context with "\n\n" (lm-eval draws its shots at random; we take the first N, so that
//     a run is reproducible without a seed). lm-eval leaves a question out of its own shots when they come from the
//     test split; here the dev file is the caller's, and one that is the test file itself would show the answer.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "esft/model/moe_causal_lm.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::pipeline {

struct McRecord {
  std::string context;
  std::vector<std::string> choices;
  int64_t answer = 0;
  std::string origin;  // "file:line"
};

// {"context": str, "choices": [str, ...] (non-empty), "answer": index} per line (gzip allowed). Throws esft::Error
// naming file and line for another shape, an empty choice list or an answer index out of range; an empty file too.
std::vector<McRecord> read_mc_records(const std::filesystem::path& path);

// The few-shot prefix of the first `shots` dev records ("" for 0); esft::Error when the dev file has fewer.
std::string fewshot_prefix(const std::vector<McRecord>& dev, int64_t shots);

// lm-eval's request split: (context tokens, continuation tokens).
struct EncodedPair {
  std::vector<int32_t> context, continuation;
};
EncodedPair encode_pair(const tok::Tokenizer& tokenizer, std::string context, std::string continuation,
                        int32_t prefix_token);

// Unicode code points of UTF-8 text.
int64_t code_points(const std::string& text);

struct McResult {
  std::vector<double> loglik;  // per choice
  size_t best = 0, best_norm = 0;
  bool correct = false, correct_norm = false;
};

struct McOptions {
  int64_t max_length = 2048;
  int32_t prefix_token = 0;
};

// Scores one record's choices in one padded forward pass; `prefix` (few-shot) goes before its context.
McResult score_mc(MoECausalLM& model, const tok::Tokenizer& tokenizer, const McRecord& record,
                  const std::string& prefix, const c10::Device& device, const McOptions& options);

}  // namespace esft::pipeline
