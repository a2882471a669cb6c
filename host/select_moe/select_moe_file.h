#pragma once
// A Select-MoE file (`esft-host run FILE.toml` when the file has a [select_moe] table): the four stages of
// shared/spec/VARIANTS.md §1 in order, each skipped when its stamp says its inputs have not changed.
//
//   [select_moe]       model (the OLMoE to convert), trash_experts (0 = top-k), seed, device, dtype
//   [router]           data (stage 1's records); [router.train]: `train --config` settings of --method router
//   [selection]        data (a path or a list), fraction, batch_size, max_length
//   [finetune]         model (default: [select_moe] model), top_p, score_function; [finetune.train]: settings of
//                      ESFT training on the selected records
//   [evaluate]         data (multiple choice), fewshot, fewshot_data, limit: `eval --metric mc` before and after
// Paths are relative to the file's folder. Everything is checked before the first stage runs.
//
// Output folder: select/ (convert), router/ (train --method router), selection/ (select-data), finetune/ (scores,
// expert_config.json, train/), evaluate/ (before.json, after.json), .stamps/, summary.json. A stage whose inputs
// changed runs again from the start, and so do the stages after it.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace esft::host::select_moe {

struct SelectMoeFile {
  std::filesystem::path file;
  std::filesystem::path model;
  std::string device = "auto", dtype = "auto";
  int64_t trash_experts = 0;
  uint64_t seed = 0;
  std::filesystem::path router_data;
  nlohmann::json router_train = nlohmann::json::object();
  std::vector<std::filesystem::path> selection_data;
  double fraction = 0.05;
  int64_t batch_size = 16, max_length = 512;
  std::filesystem::path finetune_model;
  double top_p = 0.2;
  std::string score_function = "token";
  nlohmann::json finetune_train = nlohmann::json::object();
  std::filesystem::path eval_data;
  int64_t fewshot = 0, limit = 0;
  std::optional<std::filesystem::path> fewshot_data;
};

// True when the TOML file has a [select_moe] table. Throws esft::Error for a file that does not parse.
bool is_select_moe_file(const std::filesystem::path& file);

// Reads and checks the file; throws esft::Error naming the file, section and key.
SelectMoeFile load_select_moe_file(const std::filesystem::path& file);

// Runs the stages not up to date, then prints and writes summary.json. Returns the exit code.
int run_select_moe(const SelectMoeFile& f, const std::filesystem::path& output_dir, bool dry_run,
                   const std::optional<std::filesystem::path>& plugin_dir, const std::optional<std::string>& plugin);

}  // namespace esft::host::select_moe
