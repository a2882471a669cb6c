// Reading and checking Select-MoE files (select_moe_file.h).
#include <toml++/toml.h>

#include <map>
#include <set>

#include "../toml_json.h"
#include "esft/error.h"
#include "esft/train/train_options.h"
#include "experiment/experiment.h"
#include "select_moe/select_moe_file.h"

namespace esft::host::select_moe {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// One section of the file: its keys are checked against `known`, values read by type, paths resolved.
class Section {
 public:
  Section(const json& root, const std::string& name, const fs::path& file, std::set<std::string> known)
      : name_(name), where_(file.string() + ": [" + name + "]"), base_(file.parent_path()) {
    if (!root.contains(name) || !root[name].is_object()) throw Error(file.string() + ": needs a [" + name + "] table");
    table_ = root[name];
    for (const auto& item : table_.items())
      if (!known.count(item.key())) throw Error(where_ + ": unknown key " + item.key());
  }
  bool has(const char* key) const { return table_.contains(key); }
  template <typename T>
  T get(const char* key, T fallback) const {
    if (!has(key)) return fallback;
    try {
      return table_[key].get<T>();
    } catch (const json::exception&) {
      throw Error(where_ + ": " + key + " has the wrong type (" + table_[key].dump() + ")");
    }
  }
  fs::path path(const json& value, const char* key) const {
    if (!value.is_string()) throw Error(where_ + ": " + key + " must be a path");
    const fs::path p = value.get<std::string>();
    const auto full = p.is_absolute() ? p : (base_ / p).lexically_normal();
    if (!fs::exists(full)) throw Error(where_ + ": " + key + ": " + full.string() + " does not exist");
    return full;
  }
  fs::path path(const char* key) const {
    if (!has(key)) throw Error(where_ + ": needs " + key);
    return path(table_[key], key);
  }
  // A `train --config` table under this section ([router.train]), checked by the settings reader.
  json train_settings() const {
    if (!has("train")) return json::object();
    if (!table_["train"].is_object()) throw Error(where_ + ": train must be a table of training settings");
    train::TrainOptions::parse_toml(experiment::toml_text(table_["train"]), where_ + ".train", train::TrainOptions{});
    return table_["train"];
  }
  const std::string& where() const { return where_; }

 private:
  std::string name_, where_;
  fs::path base_;
  json table_;
};

}  // namespace

bool is_select_moe_file(const fs::path& file) {
  if (!fs::is_regular_file(file)) return false;
  return parse_toml_file(file).contains("select_moe");
}

SelectMoeFile load_select_moe_file(const fs::path& file) {
  if (!fs::is_regular_file(file)) throw Error("Select-MoE file " + file.string() + " does not exist");
  const json root = parse_toml_file(file);
  const std::set<std::string> sections = {"select_moe", "router", "selection", "finetune", "evaluate"};
  for (const auto& item : root.items())
    if (!sections.count(item.key())) throw Error(file.string() + ": unknown section [" + item.key() + "]");

  SelectMoeFile f;
  f.file = file;
  const Section base(root, "select_moe", file, {"model", "trash_experts", "seed", "device", "dtype"});
  f.model = base.path("model");
  f.trash_experts = base.get<int64_t>("trash_experts", 0);
  f.seed = base.get<uint64_t>("seed", 0);
  f.device = base.get<std::string>("device", "auto");
  f.dtype = base.get<std::string>("dtype", "auto");
  if (f.trash_experts < 0) throw Error(base.where() + ": trash_experts must be >= 1 (or 0 for top-k)");

  const Section router(root, "router", file, {"data", "train"});
  f.router_data = router.path("data");
  f.router_train = router.train_settings();

  const Section selection(root, "selection", file, {"data", "fraction", "batch_size", "max_length"});
  if (!selection.has("data")) throw Error(selection.where() + ": needs data (a path or a list of paths)");
  const json data = root["selection"]["data"];
  for (const auto& d : data.is_array() ? data : json::array({data})) f.selection_data.push_back(selection.path(d, "data"));
  if (f.selection_data.empty()) throw Error(selection.where() + ": data is an empty list");
  f.fraction = selection.get<double>("fraction", 0.05);
  f.batch_size = selection.get<int64_t>("batch_size", 16);
  f.max_length = selection.get<int64_t>("max_length", 512);
  if (!(f.fraction > 0 && f.fraction <= 1)) throw Error(selection.where() + ": fraction must be in (0, 1]");
  if (f.batch_size < 1 || f.max_length < 1) throw Error(selection.where() + ": batch_size and max_length must be positive");

  const Section finetune(root, "finetune", file, {"model", "top_p", "score_function", "train"});
  f.finetune_model = finetune.has("model") ? finetune.path("model") : f.model;
  f.top_p = finetune.get<double>("top_p", 0.2);
  f.score_function = finetune.get<std::string>("score_function", "token");
  if (!(f.top_p > 0 && f.top_p <= 1)) throw Error(finetune.where() + ": top_p must be in (0, 1]");
  if (f.score_function != "token" && f.score_function != "gate")
    throw Error(finetune.where() + ": score_function must be \"token\" or \"gate\"");
  f.finetune_train = finetune.train_settings();

  const Section evaluate(root, "evaluate", file, {"data", "fewshot", "fewshot_data", "limit"});
  f.eval_data = evaluate.path("data");
  f.fewshot = evaluate.get<int64_t>("fewshot", 0);
  f.limit = evaluate.get<int64_t>("limit", 0);
  if (evaluate.has("fewshot_data")) f.fewshot_data = evaluate.path("fewshot_data");
  if (f.fewshot < 0 || f.limit < 0) throw Error(evaluate.where() + ": fewshot and limit must be >= 0");
  if (f.fewshot > 0 && !f.fewshot_data) throw Error(evaluate.where() + ": fewshot needs fewshot_data");
  return f;
}

}  // namespace esft::host::select_moe
