#pragma once
// A pipeline file (`esft-host run FILE.toml`): the model, the tasks, and the settings of each step, with sweep lists
// expanded into named runs. Everything a file can get wrong is found here, before any step starts: TOML syntax
// (line and column), unknown sections and keys (with a "did you mean"), wrong types, missing files, and training
// settings the trainer would refuse.
//
//   [model]   path, plugin, device, dtype
//   [[task]]  name, train_data, eval_data, metric, enable_thinking
//   [scores]  n_sample_tokens, seed, batch_size, seq_length
//   [select]  score_function, top_p, train_shared_experts, train_non_expert_modules     (lists sweep)
//   [train]   every `train --config` setting                                            (lists sweep)
//   [merge]   enabled, max_shard_size
//   [eval]    max_new_tokens, limit, before
//   [compare] methods (of full, lora, esft-token, esft-gate), general_data, general_metric; [compare.full],
//             [compare.lora], [compare.esft]: [train] settings for that method alone
// Paths are relative to the pipeline file's folder.
//
// With [compare], each point of the sweep grid becomes one run per method (the ESFT paper's comparison: full
// fine-tuning, LoRA and ESFT with token or gate scores, on one scores pass), each evaluated on the task and, with
// general_data, on data the task does not touch (general ability kept).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace esft::host::run {

enum class Step { Scores, Select, Train, Merge, Eval };
inline constexpr Step kSteps[] = {Step::Scores, Step::Select, Step::Train, Step::Merge, Step::Eval};
const char* step_name(Step step);
Step parse_step(const std::string& name);  // throws esft::UsageError listing the steps

struct ModelSpec {
  std::filesystem::path path;
  std::string plugin, device = "auto", dtype = "auto";
};

struct TaskSpec {
  std::string name;
  std::filesystem::path train_data, eval_data;
  std::string metric = "loss";
  std::optional<bool> enable_thinking;
};

// One point of the sweep grid (with [compare], one method at one point).
struct RunSpec {
  std::string name;                  // "default", or the swept values: "top_p=0.1,score_function=gate"; with
                                     // [compare], the method first: "lora", "esft-gate,top_p=0.1"
  std::string method = "esft";       // train --method: esft, full or lora
  std::string label;                 // [compare]'s name of the method ("esft-token"), else empty
  nlohmann::json select;             // score_function, top_p, train_shared_experts, train_non_expert_modules
  std::string train_toml;            // the resolved [train] table, as train --config reads it
  bool uses_selection() const { return method == "esft"; }
};

struct CompareSpec {
  std::vector<std::string> methods;        // as written: full, lora, esft-token, esft-gate
  std::filesystem::path general_data;      // empty: no general-ability evaluation
  std::string general_metric = "loss";
};

struct Plan {
  std::filesystem::path file;
  std::string file_sha256;
  nlohmann::json resolved;           // the whole configuration after --set, as JSON (sweep lists kept)
  ModelSpec model;
  std::vector<TaskSpec> tasks;
  nlohmann::json scores;             // n_sample_tokens, seed, batch_size, seq_length
  nlohmann::json merge;              // enabled, max_shard_size
  nlohmann::json eval;               // max_new_tokens, limit, before
  std::optional<CompareSpec> compare;
  std::vector<RunSpec> runs;
};

// `overrides` are `section.key=value` with a TOML value (`select.top_p=[0.1,0.3]`, `model.device="cpu"`; a bare
// word is taken as a string). Throws esft::Error (file problems) or esft::UsageError (a malformed override).
Plan load_plan(const std::filesystem::path& file, const std::vector<std::string>& overrides);

// The closest of `known` to `name` when it is close enough to be a likely typo, for "did you mean".
std::optional<std::string> closest_name(const std::string& name, const std::vector<std::string>& known);

}  // namespace esft::host::run
