#include "run/runner.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "cli.h"
#include "run/comparison.h"
#include "run/html_report.h"
#include "run/text_table.h"
#include "esft/compat.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/json_file.h"
#include "esft/io/sha256.h"
#include "esft/runtime.h"
#include "esft/version.h"

#ifndef ESFT_GIT_COMMIT
#define ESFT_GIT_COMMIT "unknown"
#endif

namespace esft::host::run {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string now_utc() {
  const std::time_t t = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&t, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

std::string file_hash(const fs::path& p) { return fs::is_regular_file(p) ? sha256_file_hex(p) : "missing"; }


// A step ended by SIGINT/SIGTERM (train saves a checkpoint first): the whole pipeline stops, it does not go on.
struct Interrupted {
  int code;
};

// Runs one esft-host command in this process, with the model's global options.
void invoke(const Plan& plan, const std::string& command, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"esft-host", "--device", plan.model.device, "--dtype", plan.model.dtype};
  if (!plan.model.plugin.empty()) argv.insert(argv.end(), {"--plugin", plan.model.plugin});
  argv.push_back(command);
  argv.insert(argv.end(), args.begin(), args.end());
  const int code = run_cli_echoed(std::move(argv));
  if (code > 128) throw Interrupted{code};
  if (code != 0) throw Error(command + " exited with code " + std::to_string(code));
}

// Stamps: `<dir>/.stamps/<name>.json` holds the hash of the inputs an output was made from.
struct Stamp {
  fs::path file;
  std::string hash;
  bool current(const fs::path& output) const {
    if (!fs::exists(output) || !fs::is_regular_file(file)) return false;
    try {
      return read_json_file(file).value("inputs", "") == hash;
    } catch (const Error&) {
      return false;
    }
  }
  void write(double seconds) const {
    fs::create_directories(file.parent_path());
    write_text_atomically(file, json{{"inputs", hash}, {"seconds", seconds}, {"finished", now_utc()}}.dump(2) + "\n");
  }
};

Stamp stamp_for(const fs::path& dir, const std::string& name, const json& inputs) {
  return {dir / ".stamps" / (name + ".json"), sha256_hex(inputs.dump())};
}

struct RunResult {
  RunResult(std::string t, std::string r) : task(std::move(t)), run(std::move(r)) {}
  std::string task, run;
  json steps = json::object();  // step -> "done" | "up to date" | "failed: ..." | "not selected"
  bool failed = false;
  int64_t experts = -1, routed = -1;
  double train_loss = -1;
  int64_t output_bytes = -1;  // the adapter or model the train step left (train_summary.json)
  std::optional<double> metric_before, metric_after;
  std::optional<double> general_before, general_after;  // [compare] general_data
  int64_t trainable = -1, parameters = -1;              // train_summary.json
  double train_seconds = -1;
  std::string label;                                    // [compare]'s method name
  std::string metric;
  double seconds = 0;
  bool pending = false;  // dry run: an earlier step would run, so every later one would too
};

class Runner {
 public:
  Runner(const Plan& plan, const RunOptions& options) : plan_(plan), options_(options) {}

  int execute() {
    record_ = {{"format", "esft-run-record"},
               {"version", 1},
               {"pipeline", fs::absolute(plan_.file).string()},
               {"pipeline_sha256", plan_.file_sha256},
               {"resolved", plan_.resolved},
               {"esft", ESFT_VERSION_STRING},
               {"git_commit", ESFT_GIT_COMMIT},
               {"libtorch", ESFT_TORCH_VERSION_STRING},
               {"accelerators", describe_accelerators(accelerators())},
               {"device", plan_.model.device},
               {"dtype", plan_.model.dtype},
               {"threads", at::get_num_threads()},
               {"started", now_utc()}};
    model_ = model_fingerprint(plan_.model.path);
    json inputs = {{"model", model_}};
    for (const auto& t : plan_.tasks) {
      inputs[t.train_data.string()] = file_hash(t.train_data);
      if (!t.eval_data.empty()) inputs[t.eval_data.string()] = file_hash(t.eval_data);
    }
    record_["inputs"] = inputs;
    if (!options_.dry_run) fs::create_directories(options_.output_dir);

    int interrupted = 0;
    try {
      for (const auto& task : plan_.tasks) run_task(task);
    } catch (const Interrupted& i) {
      interrupted = i.code;
      std::cerr << "esft-host: run: interrupted; run the same command again to continue (training resumes from its "
                   "checkpoint)\n";
    }

    record_["ended"] = now_utc();
    if (interrupted) record_["interrupted"] = true;
    json runs = json::array();
    bool ok = true;
    for (const auto& r : results_) {
      ok = ok && !r.failed;
      runs.push_back({{"task", r.task}, {"run", r.run}, {"steps", r.steps}, {"failed", r.failed}});
    }
    record_["runs"] = runs;
    if (!options_.dry_run) {
      write_text_atomically(options_.output_dir / "run_record.json", record_.dump(2) + "\n");
      write_summary();
    }
    print_summary();
    if (plan_.compare && !options_.dry_run) {
      const auto rows = comparison_rows();
      const ComparisonNames names{general() ? plan_.compare->general_metric : ""};
      print_comparison(rows, names);
      write_comparison(options_.output_dir, rows, names);
    }
    if (interrupted) return interrupted;
    return ok ? 0 : 1;
  }

 private:
  bool wanted(Step s) const { return options_.steps.count(s) != 0; }

  // Runs `body` for `step` unless its stamp is current; `result.steps[step]` says what happened.
  template <typename F>
  void step(RunResult& result, Step s, const Stamp& stamp, const fs::path& output, F&& body) {
    const char* name = step_name(s);
    if (!wanted(s)) {
      result.steps[name] = "not selected";
      return;
    }
    if (!result.pending && stamp.current(output)) {
      result.steps[name] = "up to date";
      if (options_.dry_run) std::cout << "  " << name << ": up to date\n";
      return;
    }
    if (options_.dry_run) {
      std::cout << "  " << name << ": run -> " << output.string() << "\n";
      result.steps[name] = "would run";
      result.pending = true;
      return;
    }
    std::cout << "\n== " << result.task << " / " << result.run << ": " << name << "\n" << std::flush;
    const auto start = std::chrono::steady_clock::now();
    body();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.seconds += seconds;
    stamp.write(seconds);
    result.steps[name] = "done";
  }

  void run_task(const TaskSpec& task) {
    const auto task_dir = options_.output_dir / task.name;
    const auto scores_dir = task_dir / "scores";
    RunResult task_result(task.name, "(task)");
    task_result.metric = task.metric;
    if (options_.dry_run) std::cout << task.name << ":\n";
    try {
      step(task_result, Step::Scores,
           stamp_for(task_dir, "scores", {{"model", model_}, {"data", file_hash(task.train_data)}, {"settings", plan_.scores}}),
           scores_dir / "scores.json", [&] {
             fs::create_directories(task_dir);
             invoke(plan_, "scores", {"--model", plan_.model.path.string(), "--data", task.train_data.string(), "--out",
                                      scores_dir.string(), "--n-sample-tokens", plan_.scores["n_sample_tokens"].dump(),
                                      "--seed", plan_.scores["seed"].dump(), "--batch-size", plan_.scores["batch_size"].dump(),
                                      "--seq-length", plan_.scores["seq_length"].dump()});
           });
      if (!task.eval_data.empty() && plan_.eval.value("before", true)) {
        const auto out = task_dir / "eval_base.json";
        step(task_result, Step::Eval, stamp_for(task_dir, "eval_base", eval_inputs(task, "")), out,
             [&] { invoke(plan_, "eval", eval_args(task, plan_.model.path, "", out)); });
        if (fs::exists(out)) task_result.metric_before = read_json_file(out).value("value", 0.0);
      }
      if (general() && plan_.eval.value("before", true)) {
        const auto out = task_dir / "eval_general_base.json";
        step(task_result, Step::Eval, stamp_for(task_dir, "eval_general_base", general_inputs("")), out,
             [&] { invoke(plan_, "eval", general_args(plan_.model.path, "", out)); });
        if (fs::exists(out)) task_result.general_before = read_json_file(out).value("value", 0.0);
      }
    } catch (const std::exception& e) {
      report_failure(task_result, e);
      for (const auto& run : plan_.runs) {
        RunResult r(task.name, run.name);
        r.metric = task.metric;
        r.failed = true;
        r.steps["scores"] = "failed";
        results_.push_back(r);
      }
      return;
    }
    for (const auto& run : plan_.runs) {
      RunResult r(task.name, run.name);
      r.pending = task_result.pending;
      r.steps["scores"] = task_result.steps.value("scores", "not selected");
      r.metric = task.metric;
      r.metric_before = task_result.metric_before;
      r.general_before = task_result.general_before;
      r.label = run.label;
      r.seconds = task_result.seconds / static_cast<double>(plan_.runs.size());
      if (options_.dry_run) std::cout << " " << run.name << ":\n";
      try {
        run_one(task, run, task_dir / run.name, scores_dir, r);
      } catch (const std::exception& e) {
        report_failure(r, e);
      }
      collect(task_dir / run.name, r);
      results_.push_back(r);
    }
  }

  // What a run's train step leaves, by method: the ESFT adapter, the LoRA adapter (PEFT's files) or a whole model.
  struct Trained {
    fs::path weights;           // the file whose hash stands for the trained weights in later steps' stamps
    fs::path model, adapter;    // what eval takes: --model (and --adapter, unless empty)
  };
  Trained trained_of(const RunSpec& run, const fs::path& train_dir) const {
    // A whole model may be sharded, and its index stays the same when the weights change: the run's
    // train_summary.json (written last, with the run's timings) stands for it instead.
    if (run.method == "full") return {train_dir / "train_summary.json", train_dir / "model", {}};
    const auto adapter = train_dir / "adapter";
    return {adapter / (run.method == "lora" ? "adapter_model.safetensors" : "model.safetensors"), plan_.model.path, adapter};
  }

  void run_one(const TaskSpec& task, const RunSpec& run, const fs::path& dir, const fs::path& scores_dir, RunResult& r) {
    const auto config = dir / "expert_config.json";
    const auto train_dir = dir / "train", merged = dir / "merged";
    const auto trained = trained_of(run, train_dir);
    if (run.uses_selection()) {
      step(r, Step::Select, stamp_for(dir, "select", {{"scores", file_hash(scores_dir / "scores.json")}, {"settings", run.select}}),
           config, [&] {
             need(scores_dir / "scores.json", "scores");
             fs::create_directories(dir);
             std::vector<std::string> args = {"--scores", (scores_dir / "scores.json").string(), "--score-function",
                                              run.select["score_function"].get<std::string>(), "--top-p",
                                              run.select["top_p"].dump(), "--out", config.string()};
             if (run.select.value("train_shared_experts", false)) args.push_back("--train-shared-experts");
             if (run.select.value("train_non_expert_modules", false)) args.push_back("--train-non-expert-modules");
             invoke(plan_, "select", args);
           });
    } else {
      r.steps["select"] = "not used (" + run.method + ")";
    }
    json train_inputs = {{"model", model_}, {"data", file_hash(task.train_data)}, {"settings", run.train_toml}};
    if (run.uses_selection()) train_inputs["expert_config"] = file_hash(config);
    else train_inputs["method"] = run.method;  // (esft's inputs as before, so its earlier runs stay up to date)
    const auto train_stamp = stamp_for(dir, "train", train_inputs);
    // train_summary.json is the last file a finished train writes.
    step(r, Step::Train, train_stamp, train_dir / "train_summary.json", [&] {
           if (run.uses_selection()) need(config, "select");
           // A run interrupted with these same inputs resumes from its checkpoint; anything else starts afresh.
           const auto started = stamp_for(dir, "train.started", {{"inputs", train_stamp.hash}});
           const bool resume = started.current(train_dir) && fs::exists(train_dir / "checkpoints");
           if (!resume) fs::remove_all(train_dir);
           fs::create_directories(dir);
           write_text_atomically(dir / "train.toml", run.train_toml);
           started.write(0);
           std::vector<std::string> args = {"--method", run.method, "--model", plan_.model.path.string(), "--data",
                                            task.train_data.string(), "--config", (dir / "train.toml").string(),
                                            "--out", train_dir.string()};
           if (run.uses_selection()) args.insert(args.end(), {"--expert-config", config.string()});
           if (resume) args.push_back("--resume");
           invoke(plan_, "train", args);
         });
    if (plan_.merge.value("enabled", true) && !trained.adapter.empty()) {
      step(r, Step::Merge,
           stamp_for(dir, "merge", {{"model", model_}, {"adapter", file_hash(trained.weights)}, {"settings", plan_.merge}}),
           merged / "config.json", [&] {
             need(trained.weights, "train");
             fs::remove_all(merged);
             invoke(plan_, "merge", {"--model", plan_.model.path.string(), "--adapter", trained.adapter.string(), "--out",
                                     merged.string(), "--max-shard-size", plan_.merge["max_shard_size"].get<std::string>()});
           });
    } else if (trained.adapter.empty()) {
      r.steps["merge"] = "not used (a whole model)";
    }
    if (!task.eval_data.empty()) {
      const auto out = dir / "eval.json";
      step(r, Step::Eval, stamp_for(dir, "eval", eval_inputs(task, trained.weights.string())), out, [&] {
        need(trained.weights, "train");
        invoke(plan_, "eval", eval_args(task, trained.model, trained.adapter.string(), out));
      });
    }
    if (general()) {
      const auto out = dir / "eval_general.json";
      // Recorded as eval_general: the task's eval above has the step's own name in r.steps.
      RunResult scratch(r.task, r.run);
      scratch.pending = r.pending;
      try {
        step(scratch, Step::Eval, stamp_for(dir, "eval_general", general_inputs(trained.weights.string())), out, [&] {
          need(trained.weights, "train");
          invoke(plan_, "eval", general_args(trained.model, trained.adapter.string(), out));
        });
      } catch (const std::exception& e) {
        r.steps["eval_general"] = std::string("failed: ") + one_line_utf8(e.what());
        throw;
      }
      r.steps["eval_general"] = scratch.steps.value("eval", "?");
      r.seconds += scratch.seconds;
    }
  }

  // The base model's row, then each method's, per task.
  std::vector<ComparisonRow> comparison_rows() const {
    std::vector<ComparisonRow> rows;
    std::string task;
    for (const auto& r : results_) {
      if (r.task != task) {
        task = r.task;
        rows.push_back({r.task, "base", r.metric, r.metric_before, r.general_before, 0, -1, 0, -1});
      }
      rows.push_back({r.task, r.run, r.metric, r.metric_after, r.general_after, r.trainable, r.parameters,
                      r.train_seconds, r.output_bytes});
    }
    return rows;
  }

  bool general() const { return plan_.compare && !plan_.compare->general_data.empty(); }

  json general_inputs(const std::string& weights) const {
    return {{"model", model_},
            {"weights", weights.empty() ? "none" : file_hash(weights)},
            {"data", file_hash(plan_.compare->general_data)},
            {"metric", plan_.compare->general_metric},
            {"settings", plan_.eval}};
  }

  std::vector<std::string> general_args(const fs::path& model, const std::string& adapter, const fs::path& out) const {
    std::vector<std::string> args = {"--model", model.string(), "--data", plan_.compare->general_data.string(),
                                     "--metric", plan_.compare->general_metric, "--result", out.string()};
    if (!adapter.empty()) args.insert(args.end(), {"--adapter", adapter});
    if (plan_.compare->general_metric != "loss" && plan_.compare->general_metric != "mc") {
      args.insert(args.end(), {"--max-new-tokens", plan_.eval["max_new_tokens"].dump()});
    }
    if (plan_.eval.contains("limit") && plan_.compare->general_metric != "loss") {
      args.insert(args.end(), {"--limit", plan_.eval["limit"].dump()});
    }
    return args;
  }

  json eval_inputs(const TaskSpec& task, const std::string& weights) const {
    return {{"model", model_},
            {"adapter", weights.empty() ? "none" : file_hash(weights)},
            {"data", file_hash(task.eval_data)},
            {"metric", task.metric},
            {"thinking", task.enable_thinking ? json(*task.enable_thinking) : json()},
            {"settings", plan_.eval}};
  }

  std::vector<std::string> eval_args(const TaskSpec& task, const fs::path& model, const std::string& adapter,
                                     const fs::path& out) const {
    std::vector<std::string> args = {"--model", model.string(), "--data", task.eval_data.string(),
                                     "--metric", task.metric, "--result", out.string()};
    if (!adapter.empty()) args.insert(args.end(), {"--adapter", adapter});
    if (task.metric != "loss") {
      // The completions beside the score (eval.completions.jsonl), for reading them or scoring them again
      // (`eval --rescore`, e.g. with another metric).
      args.insert(args.end(), {"--out", fs::path(out).replace_extension(".completions.jsonl").string()});
      args.insert(args.end(), {"--max-new-tokens", plan_.eval["max_new_tokens"].dump()});
      if (task.enable_thinking) args.insert(args.end(), {"--enable-thinking", *task.enable_thinking ? "true" : "false"});
      if (plan_.eval.contains("limit")) args.insert(args.end(), {"--limit", plan_.eval["limit"].dump()});
    }
    return args;
  }

  static void need(const fs::path& input, const char* step) {
    if (!fs::exists(input)) throw Error("needs " + input.string() + ", which the " + std::string(step) + " step makes");
  }

  void report_failure(RunResult& r, const std::exception& e) {
    r.failed = true;
    std::string what = e.what();  // a LibTorch message may run over lines and quote anything; JSON needs UTF-8
    if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
    what = one_line_utf8(what);
    for (const auto s : kSteps) {
      const char* name = step_name(s);
      if (!r.steps.contains(name)) {
        r.steps[name] = "failed: " + what;
        break;
      }
    }
    std::cerr << "esft-host: error: " << r.task << " / " << r.run << ": " << what << " (the other runs go on)\n";
  }

  // The summary's figures from the run's outputs (present whether this invocation made them or an earlier one).
  void collect(const fs::path& dir, RunResult& r) const {
    if (fs::exists(dir / "expert_config.json")) {
      const auto c = read_json_file(dir / "expert_config.json");
      r.experts = 0;
      for (const auto& [layer, list] : c["experts"].items()) r.experts += static_cast<int64_t>(list.size());
    }
    if (std::ifstream in(dir / "train" / "metrics.jsonl"); in) {
      for (std::string line; std::getline(in, line);) {
        const auto j = json::parse(line, nullptr, false);
        if (!j.is_discarded() && j.contains("loss")) r.train_loss = j["loss"].get<double>();
      }
    }
    if (fs::exists(dir / "train" / "train_summary.json")) {
      const auto t = read_json_file(dir / "train" / "train_summary.json");
      r.trainable = t.value("trainable_parameters", int64_t{-1});
      r.parameters = t.value("parameters", int64_t{-1});
      r.train_seconds = t.value("train_seconds", -1.0);
      if (t.contains("output")) r.output_bytes = t["output"].value("bytes", int64_t{-1});
    }
    if (fs::exists(dir / "eval.json")) r.metric_after = read_json_file(dir / "eval.json").value("value", 0.0);
    if (fs::exists(dir / "eval_general.json")) r.general_after = read_json_file(dir / "eval_general.json").value("value", 0.0);
  }

  static std::string number(double v, int precision) {
    std::ostringstream out;
    out << std::fixed << std::setprecision(precision) << v;
    return out.str();
  }

  TextTable table() const {
    std::vector<std::vector<std::string>> rows = {{"task", "run", "status", "experts", "trainable", "train loss",
                                                   "metric", "before", "after", "output MiB", "seconds"}};
    if (general()) rows[0].insert(rows[0].begin() + 9, {"general before", "general after"});
    for (const auto& r : results_) {
      bool cached = true;
      for (const auto& [step, status] : r.steps.items()) cached = cached && status == "up to date";
      const std::string status = r.failed ? "failed" : options_.dry_run ? "planned" : cached ? "up to date" : "ok";
      rows.push_back({r.task, r.run, status,
                      r.experts >= 0 ? std::to_string(r.experts) : "-", r.trainable >= 0 ? std::to_string(r.trainable) : "-",
                      r.train_loss >= 0 ? number(r.train_loss, 4) : "-",
                      r.metric, r.metric_before ? number(*r.metric_before, 4) : "-",
                      r.metric_after ? number(*r.metric_after, 4) : "-",
                      r.output_bytes >= 0 ? number(static_cast<double>(r.output_bytes) / 1048576.0, 3) : "-",
                      number(r.seconds, 1)});
      if (general()) {
        rows.back().insert(rows.back().begin() + 9, {r.general_before ? number(*r.general_before, 4) : "-",
                                                     r.general_after ? number(*r.general_after, 4) : "-"});
      }
    }
    return rows;
  }

  void print_summary() const {
    std::cout << "\nsummary" << (options_.dry_run ? " (dry run: nothing was run)" : "") << "\n";
    print_text_table(std::cout, table());
  }

  void write_summary() const {
    const auto rows = table();
    write_text_atomically(options_.output_dir / "summary.csv", csv_text(rows));
    json j = json::array();
    for (const auto& r : results_) {
      j.push_back({{"task", r.task}, {"run", r.run}, {"failed", r.failed}, {"steps", r.steps},
                   {"experts", r.experts >= 0 ? json(r.experts) : json()},
                   {"train_loss", r.train_loss >= 0 ? json(r.train_loss) : json()}, {"metric", r.metric},
                   {"metric_before", r.metric_before ? json(*r.metric_before) : json()},
                   {"metric_after", r.metric_after ? json(*r.metric_after) : json()},
                   {"output_bytes", r.output_bytes >= 0 ? json(r.output_bytes) : json()},
                   {"trainable_parameters", r.trainable >= 0 ? json(r.trainable) : json()},
                   {"train_seconds", r.train_seconds >= 0 ? json(r.train_seconds) : json()},
                   {"general_before", r.general_before ? json(*r.general_before) : json()},
                   {"general_after", r.general_after ? json(*r.general_after) : json()},
                   {"seconds", r.seconds}});
    }
    write_text_atomically(options_.output_dir / "summary.json", j.dump(2) + "\n");
    write_html_report(options_.output_dir, "esft run " + options_.output_dir.filename().string(), rows);
    std::cout << "report: " << (options_.output_dir / "report.html").string() << "\n";
  }

  const Plan& plan_;
  const RunOptions& options_;
  json record_, model_;
  std::vector<RunResult> results_;
};

}  // namespace

json model_fingerprint(const fs::path& dir) {
  json j = json::object();
  for (const auto& e : fs::directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    const auto name = e.path().filename().string();
    const bool weights = e.path().extension() == ".safetensors";
    j[name] = weights ? json("bytes:" + std::to_string(e.file_size())) : json(sha256_file_hex(e.path()));
  }
  return j;
}

int execute(const Plan& plan, const RunOptions& options) { return Runner(plan, options).execute(); }

}  // namespace esft::host::run
