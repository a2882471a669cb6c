// Running an experiment (experiment.h): for each run, init then train --method pretrain, in this process; runs done
// before are kept, interrupted ones resume; then the report.
#include <fstream>
#include <iostream>
#include <iterator>
#include <tuple>

#include "../cli.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/train/train_options.h"
#include "esft/train/trainer.h"
#include "experiment/experiment.h"

namespace esft::host::experiment {

namespace fs = std::filesystem;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Trained, measured (behaviour.json), and scored on the task when there is one.
bool run_done(const Experiment& x, const fs::path& dir) {
  return fs::exists(dir / "train" / "summary.json") && fs::exists(dir / "behaviour.json") &&
         (!x.task || fs::exists(dir / "task.json"));
}

// A train setting of the run, or the pretrain method's default.
int64_t train_setting(const RunSpec& r, const char* key, int64_t fallback) {
  const auto it = r.train.find(key);
  return it != r.train.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

struct Interrupted {
  int code;
};

void invoke(const Experiment& x, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"esft-host", "--device", x.device, "--dtype", x.dtype, "--plugin", x.plugin};
  if (x.plugin_dir) argv.insert(argv.end(), {"--plugin-dir", x.plugin_dir->string()});
  argv.insert(argv.end(), args.begin(), args.end());
  const int code = run_cli_echoed(argv);
  if (code > 128) throw Interrupted{code};
  if (code != 0) throw Error(args.front() + " exited with code " + std::to_string(code));
}

}  // namespace

int run_experiment(const Experiment& x, const ExperimentOptions& options) {
  const auto runs_dir = options.output_dir / "runs";
  int done = 0;
  for (const auto& r : x.runs) done += run_done(x, runs_dir / r.name);
  std::cout << "experiment " << x.file.string() << ": " << x.runs.size() << " run(s), " << done << " done -> "
            << options.output_dir.string() << "\n";
  for (const auto& r : x.runs) {
    std::cout << "  " << r.name << (run_done(x, runs_dir / r.name) ? "  (done)" : "") << "\n";
  }
  if (options.dry_run) return 0;

  size_t index = 0;
  for (const auto& r : x.runs) {
    ++index;
    const auto dir = runs_dir / r.name;
    const auto train_dir = dir / "train";
    if (run_done(x, dir)) continue;
    std::cout << "\n== run " << index << "/" << x.runs.size() << ": " << r.name << "\n" << std::flush;
    fs::create_directories(dir);
    // A run folder holds one run: settings that changed since it started would mix two.
    for (const auto& [file, text, made] : {std::tuple{"model.toml", toml_text(r.model), dir / "init"},
                                           std::tuple{"train.toml", toml_text(r.train), train_dir}}) {
      if (fs::exists(made) && fs::exists(dir / file) && read_text(dir / file) != text)
        throw Error("run " + r.name + ": its " + file + " settings changed since it started; remove " + dir.string() +
                    " to run it again");
      write_text_atomically(dir / file, text);
    }
    try {
      if (!fs::exists(dir / "init" / "config.json")) {
        invoke(x, {"init", "--config", (dir / "model.toml").string(), "--tokenizer", x.tokenizer.string(), "--out",
                   (dir / "init").string(), "--seed", std::to_string(x.seed)});
      }
      std::vector<std::string> args = {"train", "--method", "pretrain", "--model", (dir / "init").string(), "--data",
                                       x.train_data.string(), "--eval-data", x.eval_data.string(), "--config",
                                       (dir / "train.toml").string(), "--out", train_dir.string()};
      if (!train::list_checkpoints(train_dir).empty()) args.push_back("--resume");
      if (!fs::exists(train_dir / "summary.json")) invoke(x, args);
      if (!fs::exists(dir / "behaviour.json")) {
        // Plan-B's figures on the rows the evaluations used (max_eval_rows), or the first 64 when they used all.
        const int64_t eval_rows = train_setting(r, "max_eval_rows", 0);
        const auto defaults = train::pretrain_defaults();
        invoke(x, {"behaviour", "--model", (train_dir / "model").string(), "--data", x.eval_data.string(),
                   "--seq-length", std::to_string(train_setting(r, "seq_length", defaults.seq_length)), "--rows",
                   std::to_string(eval_rows > 0 ? eval_rows : 64), "--seed", std::to_string(x.seed),
                   "--result", (dir / "behaviour.json").string()});
      }
      if (x.task) {
        std::vector<std::string> eval = {"eval", "--model", (train_dir / "model").string(), "--data",
                                         x.task->data.string(), "--metric", x.task->metric, "--max-new-tokens",
                                         std::to_string(x.task->max_new_tokens), "--result",
                                         (dir / "task.json").string(), "--out", (dir / "completions.jsonl").string()};
        if (x.task->limit > 0) eval.insert(eval.end(), {"--limit", std::to_string(x.task->limit)});
        invoke(x, eval);
      }
    } catch (const Interrupted& i) {
      std::cerr << "esft-host: experiment interrupted in run " << r.name << "; run the same command again to go on\n";
      return i.code;
    }
  }
  std::cout << "\n";
  write_report(x, options.output_dir);
  return 0;
}

}  // namespace esft::host::experiment
