// Running a Select-MoE file (select_moe_file.h): convert, router pre-training, selection, fine-tuning and the
// multiple-choice evaluation before and after, through the same commands a user would type, in this process.
#include <fstream>
#include <iomanip>
#include <iostream>

#include "../cli.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/json_file.h"
#include "esft/io/sha256.h"
#include "experiment/experiment.h"
#include "run/runner.h"
#include "select_moe/select_moe_file.h"

namespace esft::host::select_moe {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {


// A number as its shortest JSON text (0.3, not 0.300000).
std::string number_text(double v) { return json(v).dump(); }

struct Interrupted {
  int code;
};

class Runner {
 public:
  Runner(const SelectMoeFile& f, fs::path out, const std::optional<fs::path>& plugin_dir,
         const std::optional<std::string>& plugin)
      : f_(f), out_(std::move(out)), plugin_dir_(plugin_dir), plugin_(plugin) {}

  // Runs `body` unless the stage's stamp holds the hash of `inputs` (and `made` exists); returns that hash, which
  // the next stage takes as an input, so a stage that ran again makes the later ones run again too.
  template <typename F>
  std::string stage(const std::string& name, const json& inputs, const fs::path& made, F&& body) {
    const auto hash = sha256_hex(inputs.dump());
    const auto stamp = out_ / ".stamps" / (name + ".json");
    if (fs::exists(made) && fs::exists(stamp) && read_json_file(stamp).value("inputs", "") == hash) {
      std::cout << "\n== " << name << ": up to date\n";
      return hash;
    }
    std::cout << "\n== " << name << "\n" << std::flush;
    std::error_code ec;
    fs::remove(stamp, ec);
    fs::remove_all(out_ / name, ec);  // a stage runs from its start
    body();
    fs::create_directories(stamp.parent_path());
    write_text_atomically(stamp, json{{"inputs", hash}}.dump() + "\n");
    return hash;
  }

  void invoke(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"esft-host", "--device", f_.device, "--dtype", f_.dtype};
    if (plugin_dir_) argv.insert(argv.end(), {"--plugin-dir", plugin_dir_->string()});
    if (plugin_) argv.insert(argv.end(), {"--plugin", *plugin_});
    argv.insert(argv.end(), args.begin(), args.end());
    const int code = run_cli_echoed(argv);
    if (code > 128) throw Interrupted{code};
    if (code != 0) throw Error(args.front() + " exited with code " + std::to_string(code));
  }

  int run() {
    fs::create_directories(out_);
    const auto select = out_ / "select", router = out_ / "router", selection = out_ / "selection",
               finetune = out_ / "finetune", evaluate = out_ / "evaluate";
    auto h = stage("select", {{"model", run::model_fingerprint(f_.model)}, {"trash_experts", f_.trash_experts}, {"seed", f_.seed}},
                   select / "config.json", [&] {
                     invoke({"convert", "--model", f_.model.string(), "--out", select.string(), "--trash-experts",
                             std::to_string(f_.trash_experts), "--seed", std::to_string(f_.seed)});
                   });
    h = stage("router", {{"after", h}, {"data", sha256_file_hex(f_.router_data)}, {"train", f_.router_train}},
              router / "adapter" / "model.safetensors", [&] {
                fs::create_directories(router);
                write_text_atomically(router / "train.toml", experiment::toml_text(f_.router_train));
                invoke({"train", "--method", "router", "--model", select.string(), "--data", f_.router_data.string(),
                        "--config", (router / "train.toml").string(), "--out", (router / "run").string()});
                fs::rename(router / "run" / "adapter", router / "adapter");
              });
    json data_hashes = json::array();
    std::string data_list;
    for (const auto& d : f_.selection_data) {
      data_hashes.push_back(sha256_file_hex(d));
      data_list += (data_list.empty() ? "" : ",") + d.string();
    }
    h = stage("selection",
              {{"after", h}, {"data", data_hashes}, {"fraction", f_.fraction}, {"batch_size", f_.batch_size},
               {"max_length", f_.max_length}},
              selection / "selected_data.jsonl", [&] {
                invoke({"select-data", "--model", select.string(), "--adapter", (router / "adapter").string(), "--data",
                        data_list, "--fraction", number_text(f_.fraction), "--batch-size",
                        std::to_string(f_.batch_size), "--max-length", std::to_string(f_.max_length), "--out",
                        selection.string()});
              });
    const auto selected = (selection / "selected_data.jsonl").string();
    h = stage("finetune",
              {{"after", h}, {"model", run::model_fingerprint(f_.finetune_model)}, {"top_p", f_.top_p},
               {"score_function", f_.score_function}, {"train", f_.finetune_train}},
              finetune / "train" / "adapter" / "model.safetensors", [&] {
                fs::create_directories(finetune);
                write_text_atomically(finetune / "train.toml", experiment::toml_text(f_.finetune_train));
                invoke({"scores", "--model", f_.finetune_model.string(), "--data", selected, "--out",
                        (finetune / "scores").string()});
                invoke({"select", "--scores", (finetune / "scores" / "scores.json").string(), "--score-function",
                        f_.score_function, "--top-p", number_text(f_.top_p), "--out",
                        (finetune / "expert_config.json").string()});
                invoke({"train", "--model", f_.finetune_model.string(), "--expert-config",
                        (finetune / "expert_config.json").string(), "--data", selected, "--config",
                        (finetune / "train.toml").string(), "--out", (finetune / "train").string()});
              });
    stage("evaluate",
          {{"after", h}, {"data", sha256_file_hex(f_.eval_data)}, {"fewshot", f_.fewshot},
           {"fewshot_data", f_.fewshot_data ? sha256_file_hex(*f_.fewshot_data) : ""}, {"limit", f_.limit}},
          evaluate / "after.json", [&] {
            fs::create_directories(evaluate);
            for (const auto& [name, adapter] : {std::pair<std::string, fs::path>{"before", {}},
                                                 std::pair<std::string, fs::path>{"after", finetune / "train" / "adapter"}}) {
              std::vector<std::string> args = {"eval", "--model", f_.finetune_model.string(), "--data",
                                               f_.eval_data.string(), "--metric", "mc", "--result",
                                               (evaluate / (name + ".json")).string()};
              if (!adapter.empty()) args.insert(args.end(), {"--adapter", adapter.string()});
              if (f_.limit > 0) args.insert(args.end(), {"--limit", std::to_string(f_.limit)});
              if (f_.fewshot > 0)
                args.insert(args.end(), {"--fewshot", std::to_string(f_.fewshot), "--fewshot-data", f_.fewshot_data->string()});
              invoke(args);
            }
          });
    return summarise();
  }

 private:
  int summarise() {
    int64_t scored = 0, kept = 0;
    {
      std::ifstream in(out_ / "selection" / "scores.jsonl");
      for (std::string line; std::getline(in, line);) scored += !line.empty();
      std::ifstream sel(out_ / "selection" / "selected_data.jsonl");
      for (std::string line; std::getline(sel, line);) kept += !line.empty();
    }
    const auto before = read_json_file(out_ / "evaluate" / "before.json");
    const auto after = read_json_file(out_ / "evaluate" / "after.json");
    const json summary = {{"file", f_.file.string()},
                          {"scored", scored},
                          {"kept", kept},
                          {"fraction", f_.fraction},
                          {"before", {{"acc", before["acc"]}, {"acc_norm", before["acc_norm"]}}},
                          {"after", {{"acc", after["acc"]}, {"acc_norm", after["acc_norm"]}}}};
    write_text_atomically(out_ / "summary.json", summary.dump(2) + "\n");
    std::cout << "\nselection  kept " << kept << " of " << scored << " records\n"
              << std::fixed << std::setprecision(4) << "mc before  acc " << before["acc"].get<double>()
              << "  acc_norm " << before["acc_norm"].get<double>() << "\nmc after   acc "
              << after["acc"].get<double>() << "  acc_norm " << after["acc_norm"].get<double>() << "\nsummary    "
              << (out_ / "summary.json").string() << "\n";
    return 0;
  }

  const SelectMoeFile& f_;
  fs::path out_;
  std::optional<fs::path> plugin_dir_;
  std::optional<std::string> plugin_;
};

}  // namespace

int run_select_moe(const SelectMoeFile& f, const fs::path& output_dir, bool dry_run,
                   const std::optional<fs::path>& plugin_dir, const std::optional<std::string>& plugin) {
  std::cout << "select-moe " << f.file.string() << ": convert " << f.model.string() << ", pre-train its routers on "
            << f.router_data.string() << ", keep " << f.fraction << " of " << f.selection_data.size()
            << " file(s), fine-tune " << f.finetune_model.string() << ", evaluate on " << f.eval_data.string()
            << " -> " << output_dir.string() << "\n";
  if (dry_run) return 0;
  try {
    return Runner(f, output_dir, plugin_dir, plugin).run();
  } catch (const Interrupted& i) {
    std::cerr << "esft-host: interrupted; run the same command again to go on (finished stages are kept)\n";
    return i.code;
  }
}

}  // namespace esft::host::select_moe
