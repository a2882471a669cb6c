// Reading and checking experiment files (experiment.h).
#include <ATen/ATen.h>
#include <toml++/toml.h>

#include <set>

#include "../plugin_loader.h"
#include "../toml_json.h"
#include "esft/error.h"
#include "esft/model/model_config.h"
#include "esft/pipeline/metrics.h"
#include "esft/tokenizer/tokenizer.h"
#include "esft/train/train_options.h"
#include "experiment/experiment.h"

namespace esft::host::experiment {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// `section.key=value` with a TOML value (a bare word is a string); the key may itself hold dots (sweep keys).
void apply_override(json& root, const std::string& text) {
  const auto eq = text.find('='), dot = text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq)
    throw UsageError("--set " + text + ": expected section.key=value (e.g. train.steps=50)");
  const auto section = text.substr(0, dot), value = text.substr(eq + 1);
  std::string key = text.substr(dot + 1, eq - dot - 1);
  if (key.size() >= 2 && key.front() == '"' && key.back() == '"') key = key.substr(1, key.size() - 2);
  json parsed;
  try {
    parsed = to_json(toml::parse("v = " + value))["v"];
  } catch (const toml::parse_error&) {
    parsed = value;
  }
  if (!root.contains(section)) root[section] = json::object();
  if (!root[section].is_object()) throw UsageError("--set " + text + ": [" + section + "] is not a table");
  root[section][key] = parsed;
}

std::string value_label(const json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

std::string short_key(const std::string& key) { return key.substr(key.find('.') + 1); }

fs::path resolve(const fs::path& base, const json& table, const char* key, const std::string& where) {
  if (!table.contains(key) || !table[key].is_string()) throw Error(where + ": [experiment] needs " + key + " (a path)");
  const fs::path p = table[key].get<std::string>();
  const auto full = p.is_absolute() ? p : (base / p).lexically_normal();
  if (!fs::exists(full)) throw Error(where + ": [experiment] " + key + ": " + full.string() + " does not exist");
  return full;
}

// Sets "model.KEY" / "train.KEY" in a run.
void set_key(RunSpec& run, const std::string& key, const json& value, const std::string& where) {
  const auto dot = key.find('.');
  const auto section = dot == std::string::npos ? "" : key.substr(0, dot);
  if ((section != "model" && section != "train") || dot + 1 >= key.size())
    throw Error(where + ": \"" + key + "\" must name model.KEY or train.KEY");
  (section == "model" ? run.model : run.train)[key.substr(dot + 1)] = value;
}

}  // namespace

std::string toml_text(const json& object) {
  std::string out;
  for (const auto& [k, v] : object.items()) out += k + " = " + v.dump() + "\n";
  return out;
}

bool is_experiment_file(const fs::path& file) {
  if (!fs::is_regular_file(file)) return false;
  return parse_toml_file(file).contains("experiment");
}

Experiment load_experiment(const fs::path& file, const std::vector<std::string>& overrides,
                           const std::optional<fs::path>& plugin_dir) {
  if (!fs::is_regular_file(file)) throw Error("experiment file " + file.string() + " does not exist");
  json root = parse_toml_file(file);
  for (const auto& o : overrides) apply_override(root, o);
  const std::string where = file.string();
  const std::set<std::string> sections = {"experiment", "model", "train", "sweep", "variant"};
  for (const auto& [name, value] : root.items())
    if (!sections.count(name))
      throw Error(where + ": unknown section [" + name + "] (experiment, model, train, sweep, variant)");
  const auto& e = root["experiment"];
  if (!e.is_object()) throw Error(where + ": [experiment] must be a table");
  const std::set<std::string> keys = {"plugin", "tokenizer", "train_data", "eval_data", "device", "dtype", "seed", "heatmap", "task"};
  for (const auto& [name, value] : e.items())
    if (!keys.count(name))
      throw Error(where + ": [experiment] " + name + ": unknown key (plugin, tokenizer, train_data, eval_data, device, "
                  "dtype, seed, heatmap, task)");

  Experiment x;
  x.file = file;
  x.plugin_dir = plugin_dir;
  const auto base = file.parent_path();
  if (!e.contains("plugin") || !e["plugin"].is_string()) throw Error(where + ": [experiment] needs plugin (a name)");
  x.plugin = e["plugin"];
  x.tokenizer = resolve(base, e, "tokenizer", where);
  x.train_data = resolve(base, e, "train_data", where);
  x.eval_data = resolve(base, e, "eval_data", where);
  x.device = e.value("device", std::string("auto"));
  x.dtype = e.value("dtype", std::string("auto"));
  if (e.contains("seed") && !e["seed"].is_number_integer()) throw Error(where + ": [experiment] seed must be an integer");
  x.seed = e.value("seed", int64_t{0});
  if (e.contains("heatmap")) {
    const auto& h = e["heatmap"];
    if (!h.is_array() || h.size() != 2 || !h[0].is_string() || !h[1].is_string())
      throw Error(where + ": [experiment] heatmap must be two swept keys, [\"model.X\", \"model.Y\"]");
    x.heatmap = {h[0], h[1]};
  }

  if (e.contains("task")) {
    const auto& t = e["task"];
    const std::string at = where + ": [experiment] task";
    if (!t.is_object()) throw Error(at + " must be a table {data, metric, limit, max_new_tokens}");
    for (const auto& [k, v] : t.items())
      if (k != "data" && k != "metric" && k != "limit" && k != "max_new_tokens")
        throw Error(at + ": unknown key " + k + " (data, metric, limit, max_new_tokens)");
    TaskEval task;
    task.data = resolve(base, t, "data", at);
    if (!t.contains("metric") || !t["metric"].is_string()) throw Error(at + " needs metric (exact, rouge-l, f1, ...)");
    task.metric = t["metric"];
    pipeline::parse_metric(task.metric);  // names the valid ones
    if (t.contains("limit") && (!t["limit"].is_number_integer() || t["limit"].get<int64_t>() <= 0))
      throw Error(at + ": limit must be a positive integer");
    if (t.contains("max_new_tokens") && (!t["max_new_tokens"].is_number_integer() || t["max_new_tokens"].get<int64_t>() <= 0))
      throw Error(at + ": max_new_tokens must be a positive integer");
    task.limit = t.value("limit", int64_t{0});
    task.max_new_tokens = t.value("max_new_tokens", int64_t{32});
    x.task = task;
  }

  // The grid: every combination of the sweep's lists, in the file's order, for each variant.
  RunSpec base_run;
  base_run.model = root.value("model", json::object());
  base_run.train = root.value("train", json::object());
  base_run.swept = json::object();
  if (!base_run.model.is_object() || !base_run.train.is_object()) throw Error(where + ": [model] and [train] must be tables");
  std::vector<std::pair<std::string, json>> axes;
  const json sweep = root.value("sweep", json::object());
  if (!sweep.is_object()) throw Error(where + ": [sweep] must be a table");
  for (const auto& [key, values] : sweep.items()) {
    if (!values.is_array()) throw Error(where + ": [sweep] " + key + " must be a list of values");
    if (values.empty()) throw Error(where + ": [sweep] " + key + " is an empty list (no run would be made)");
    RunSpec probe;
    set_key(probe, key, values[0], where + ": [sweep]");
    axes.emplace_back(key, values);
  }
  for (const auto& key : x.heatmap) {
    bool swept = false;
    for (const auto& a : axes) swept |= a.first == key;
    if (!swept) throw Error(where + ": [experiment] heatmap: " + key + " is not swept in [sweep]");
  }
  std::vector<RunSpec> variants;
  if (root.contains("variant")) {
    if (!root["variant"].is_array()) throw Error(where + ": variants are [[variant]] tables");
    for (const auto& v : root["variant"]) {
      if (!v.is_object() || !v.contains("name") || !v["name"].is_string() || v["name"].get<std::string>().empty())
        throw Error(where + ": every [[variant]] needs a name");
      RunSpec run = base_run;
      run.name = v["name"];
      for (const auto& [k, value] : v.items()) {
        if (k == "name") continue;
        if (k != "set" || !value.is_object()) throw Error(where + ": [[variant]] " + run.name + ": only name and set = {...}");
        for (const auto& [key, setting] : value.items()) set_key(run, key, setting, where + ": [[variant]] " + run.name);
      }
      variants.push_back(run);
    }
  } else {
    variants.push_back(base_run);
  }
  for (const auto& variant : variants) {
    std::vector<RunSpec> grid = {variant};
    for (const auto& [key, values] : axes) {
      std::vector<RunSpec> next;
      for (const auto& run : grid)
        for (const auto& v : values) {
          RunSpec r = run;
          set_key(r, key, v, where);
          r.swept[key] = v;
          r.name += (r.name.empty() ? "" : ",") + short_key(key) + "=" + value_label(v);
          next.push_back(r);
        }
      grid = std::move(next);
    }
    for (auto& r : grid) {
      if (r.name.empty()) r.name = "default";
      x.runs.push_back(std::move(r));
    }
  }
  std::set<std::string> names;
  for (const auto& r : x.runs) {
    if (r.name.find('/') != std::string::npos) throw Error(where + ": run name " + r.name + " holds a '/'");
    if (!names.insert(r.name).second) throw Error(where + ": two runs are named " + r.name);
  }

  // Every run built on the meta device and its settings read, before anything runs.
  const auto family = PluginLoader(plugin_dir).load(x.plugin);
  const auto vocab = static_cast<int64_t>(tok::Tokenizer::load(x.tokenizer).vocab_size());
  for (auto& r : x.runs) {
    const std::string at = where + ": run " + r.name;
    if (!r.model.contains("vocab_size")) r.model["vocab_size"] = vocab;
    if (!r.model.contains("model_type")) r.model["model_type"] = family->model_types().front();
    try {
      family->create(ModelConfig::from_json(r.model, at + " [model]"), c10::Device(c10::kMeta), c10::kFloat);
      train::TrainOptions::parse_toml(toml_text(r.train), at + " [train]", train::pretrain_defaults());
    } catch (const Error& e) {
      throw Error(std::string(e.what()).rfind(at, 0) == 0 ? e.what() : at + ": " + e.what());
    }
  }
  return x;
}

}  // namespace esft::host::experiment
