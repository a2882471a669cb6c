#pragma once
// The modes of `esft-host eval`, one file each; commands/eval.cpp reads the options and picks one.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

#include "../cli.h"
#include "esft/data/samples.h"
#include "esft/pipeline/metrics.h"
#include "esft/tokenizer/tokenizer.h"
#include "scoring.h"

namespace esft::host::eval {

// --result: the score as one JSON object ({metric, value, records, ...} plus adapter and data), for pipelines
// that collect results.
void write_result(const po::variables_map& vm, nlohmann::json result);

// --metric loss: mean cross-entropy and perplexity over the labelled tokens of training-shaped records.
int run_loss(const po::variables_map& vm, LoadedModel& m, const data::SampleEncoder& encoder,
             const std::filesystem::path& data_path, int64_t batch_size, int64_t seq_length);

// --metric mc: multiple choice by log-likelihood (pipeline/multiple_choice.h), lm-evaluation-harness's acc and
// acc_norm.
int run_mc(const po::variables_map& vm, LoadedModel& m, const tok::Tokenizer& tokenizer,
           const data::TokenizerConfig& special, const std::filesystem::path& data_path, int64_t seq_length);

// Task metrics: greedy completions of {"prompt"|"messages", "answers"} records scored against the answers.
int run_generation(const po::variables_map& vm, LoadedModel& m, const tok::Tokenizer& tokenizer,
                   const data::TokenizerConfig& special, const std::filesystem::path& data_path,
                   const CompletionScorer& scorer);

// --rescore: saved completions (the reference's or esft's own) scored again, no model.
int run_rescore(const po::variables_map& vm, const CompletionScorer& scorer);

}  // namespace esft::host::eval
