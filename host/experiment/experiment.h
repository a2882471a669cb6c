#pragma once
// An experiment file (`esft-host run FILE.toml` when the file has an [experiment] table): models trained from
// scratch over a grid of settings, compared in one table and a few pictures (TinyMoE's expert-count sweep and
// capacity factor x jitter grid, Plan-B's router modes; shared/spec/VARIANTS.md §2-3).
//
//   [experiment]  plugin, tokenizer, train_data, eval_data, device ("auto"), dtype ("auto"), seed (0),
//                 heatmap = ["model.KEY", "model.KEY"]  (the best-PPL heatmap's x and y axes; optional),
//                 task = {data, metric, limit, max_new_tokens}  (optional: `eval` of each trained model, e.g.
//                 data/squad/eval.jsonl.gz with metric "f1"; its score joins the table)
//   [model]       the model's config keys, as `init --config` reads them
//   [train]       `train --config` settings (the pretrain method's defaults beneath)
//   [sweep]       "model.KEY" or "train.KEY" = [values]: every combination is one run
//   [[variant]]   name, set = {"model.KEY" = value, ...}: named variants, each combined with the sweep
// Paths are relative to the file's folder. Every run is built (on the meta device) and its settings checked before
// the first one starts, so a bad value anywhere leaves nothing behind.
//
// Output folder: runs/<name>/{model.toml, train.toml, init/, train/}, summary.csv, summary.json, and the pictures
// (loss_curves, utilisation, heatmap; PNG and SVG). A run whose train/summary.json exists is not run again; one with
// checkpoints but no summary resumes.
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace esft::host::experiment {

struct RunSpec {
  std::string name;
  nlohmann::json model;  // config keys
  nlohmann::json train;  // train settings
  nlohmann::json swept;  // "model.KEY"/"train.KEY" -> this run's value (for tables and the heatmap)
};

struct TaskEval {
  std::filesystem::path data;
  std::string metric;
  int64_t limit = 0;  // 0 = every record
  int64_t max_new_tokens = 32;
};

struct Experiment {
  std::filesystem::path file;
  std::string plugin, device = "auto", dtype = "auto";
  std::optional<std::filesystem::path> plugin_dir;
  std::filesystem::path tokenizer, train_data, eval_data;
  int64_t seed = 0;
  std::vector<std::string> heatmap;  // empty, or {x key, y key}
  std::optional<TaskEval> task;
  std::vector<RunSpec> runs;
};

// True when the TOML file is an experiment file (has an [experiment] table). Throws esft::Error for a file that does
// not parse.
bool is_experiment_file(const std::filesystem::path& file);

// Reads and checks an experiment file; `overrides` are `section.key=value` (`train.steps=50`,
// `sweep."model.num_experts"=[4]`). Throws esft::Error naming the file and key.
// `plugin_dir` is esft-host's --plugin-dir.
Experiment load_experiment(const std::filesystem::path& file, const std::vector<std::string>& overrides,
                           const std::optional<std::filesystem::path>& plugin_dir);

struct ExperimentOptions {
  std::filesystem::path output_dir;
  bool dry_run = false;
};

// The TOML text of a flat object: `key = value` lines (JSON literals are TOML values for strings, numbers,
// booleans and arrays of them), as init --config and train --config read it.
std::string toml_text(const nlohmann::json& object);

// Runs every run not yet done, then writes the summary table and the pictures. Returns the exit code.
int run_experiment(const Experiment& experiment, const ExperimentOptions& options);

// The summary table and the pictures from the runs' folders (report.cpp).
void write_report(const Experiment& experiment, const std::filesystem::path& output_dir);

}  // namespace esft::host::experiment
