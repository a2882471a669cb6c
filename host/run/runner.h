#pragma once
// Carries out a pipeline plan: for each task, scores once, then for each run of the sweep select, train, merge and
// eval, each through the same code as its esft-host command. A step whose outputs exist and were made from the
// same inputs and settings (a SHA-256 stamp next to them) is skipped; a failing run is reported and the others go
// on. Writes run_record.json and summary.{csv,json} into the output folder and prints the summary table.
#include <filesystem>
#include <set>

#include "run/plan.h"

namespace esft::host::run {

struct RunOptions {
  std::filesystem::path output_dir;
  bool dry_run = false;
  std::set<Step> steps = {Step::Scores, Step::Select, Step::Train, Step::Merge, Step::Eval};
};

// A model directory as a step's input: its small files by SHA-256, its weight files by size (hashing gigabytes on
// every run would cost more than the steps it saves).
nlohmann::json model_fingerprint(const std::filesystem::path& dir);

// Returns the exit code: 0 when every run succeeded, 1 otherwise.
int execute(const Plan& plan, const RunOptions& options);

}  // namespace esft::host::run
