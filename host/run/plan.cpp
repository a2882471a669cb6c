#include "plan.h"
#include "../toml_json.h"

#include <toml++/toml.h>

#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "esft/error.h"
#include "esft/io/sha256.h"
#include "esft/pipeline/metrics.h"
#include "esft/train/train_options.h"

namespace esft::host::run {

namespace fs = std::filesystem;

namespace {

// What a key holds: s(tring), i(nteger), f(loat; integers too), b(oolean); `sweep`: a list makes runs of it.
struct KeySpec {
  char type;
  bool sweep = false;
  bool required = false;
};
using Schema = std::map<std::string, KeySpec>;

const std::map<std::string, Schema>& schemas() {
  static const std::map<std::string, Schema> s = {
      {"model", {{"path", {'s', false, true}}, {"plugin", {'s'}}, {"device", {'s'}}, {"dtype", {'s'}}}},
      {"task", {{"name", {'s', false, true}}, {"train_data", {'s', false, true}}, {"eval_data", {'s'}},
                {"metric", {'s'}}, {"enable_thinking", {'b'}}}},
      {"scores", {{"n_sample_tokens", {'i'}}, {"seed", {'i'}}, {"batch_size", {'i'}}, {"seq_length", {'i'}}}},
      {"select", {{"score_function", {'s', true}}, {"top_p", {'f', true}}, {"train_shared_experts", {'b'}},
                  {"train_non_expert_modules", {'b'}}}},
      {"merge", {{"enabled", {'b'}}, {"max_shard_size", {'s'}}}},
      {"eval", {{"max_new_tokens", {'i'}}, {"limit", {'i'}}, {"before", {'b'}}}},
      {"train", {}},  // filled from TrainOptions::keys(); every setting may sweep
      {"compare", {{"methods", {'s', true, true}}, {"general_data", {'s'}}, {"general_metric", {'s'}}}},
  };
  return s;
}

std::vector<std::string> names_of(const Schema& schema) {
  std::vector<std::string> out;
  for (const auto& kv : schema) out.push_back(kv.first);
  return out;
}

std::string where_of(const fs::path& file, const toml::node& node) {
  const auto& at = node.source().begin;
  return file.string() + ":" + std::to_string(at.line) + ":" + std::to_string(at.column);
}

std::string unknown(const std::string& what, const std::string& name, const std::vector<std::string>& known) {
  std::string text = "unknown " + what + " '" + name + "'";
  if (auto guess = closest_name(name, known)) return text + " (did you mean '" + *guess + "'?)";
  std::string list;
  for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
  return text + " (known: " + list + ")";
}

bool has_type(const toml::node& n, char type) {
  switch (type) {
    case 's': return n.is_string();
    case 'i': return n.is_integer();
    case 'f': return n.is_floating_point() || n.is_integer();
    case 'b': return n.is_boolean();
  }
  return false;
}

const char* type_text(char type) {
  switch (type) {
    case 's': return "a string";
    case 'i': return "an integer";
    case 'f': return "a number";
    case 'b': return "true or false";
  }
  return "?";
}

const std::vector<std::string> kCompareMethods = {"full", "lora", "esft-token", "esft-gate"};
const std::vector<std::string> kCompareOverrides = {"full", "lora", "esft"};  // [compare.<method>] tables

void check_train_keys(const fs::path& file, const std::string& section, const toml::table& table, bool sweeps) {
  const auto keys = train::TrainOptions::keys();
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
      throw Error(where_of(file, node) + ": [" + section + "] " + unknown("setting", key, keys));
    }
    if (auto* list = node.as_array(); list && list->empty()) {
      throw Error(where_of(file, node) + ": " + section + "." + key + ": an empty sweep list");
    }
    if (!sweeps && node.is_array() && key != "lora_targets") {
      throw Error(where_of(file, node) + ": " + section + "." + key + ": a method's settings do not sweep (sweep in [train])");
    }
  }
}

// Checks a table against its schema; for [train], the trainer's own checks run per run later.
void check_table(const fs::path& file, const std::string& section, const toml::table& table) {
  if (section == "compare") {
    // [compare.full], [compare.lora], [compare.esft]: one method's own [train] settings.
    for (const auto& [k, node] : table) {
      if (!node.is_table()) continue;
      const std::string name(k.str());
      if (std::find(kCompareOverrides.begin(), kCompareOverrides.end(), name) == kCompareOverrides.end()) {
        throw Error(where_of(file, node) + ": [compare.<method>] " + unknown("method", name, kCompareOverrides));
      }
      check_train_keys(file, "compare." + name, *node.as_table(), false);
    }
  }
  const auto& schema = schemas().at(section);
  if (section == "train") return check_train_keys(file, "train", table, true);
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    if (section == "compare" && node.is_table()) continue;  // checked above
    auto it = schema.find(key);
    if (it == schema.end()) throw Error(where_of(file, node) + ": [" + section + "] " + unknown("key", key, names_of(schema)));
    const auto& spec = it->second;
    const std::string name = section + "." + key;
    if (auto* list = node.as_array()) {
      if (!spec.sweep) throw Error(where_of(file, node) + ": " + name + " must be " + type_text(spec.type) + ", not a list");
      if (list->empty()) throw Error(where_of(file, node) + ": " + name + ": an empty sweep list");
      for (const auto& item : *list) {
        if (!has_type(item, spec.type)) {
          throw Error(where_of(file, item) + ": " + name + " values must be " + type_text(spec.type));
        }
      }
    } else if (!has_type(node, spec.type)) {
      throw Error(where_of(file, node) + ": " + name + " must be " + type_text(spec.type) +
                  (spec.sweep ? " (or a list of them to sweep)" : ""));
    }
  }
  for (const auto& [key, spec] : schema) {
    if (spec.required && !table.contains(key)) throw Error(file.string() + ": [" + section + "] needs '" + key + "'");
  }
}

// A node as TOML writes it (strings quoted).
std::string toml_text(const toml::node& n) {
  std::ostringstream out;
  n.visit([&](const auto& v) { out << v; });
  return out.str();
}

std::string value_text(const toml::node& n) {
  if (auto s = n.value_exact<std::string>()) return *s;
  if (auto d = n.value_exact<double>()) {
    std::ostringstream out;
    out << *d;
    return out.str();
  }
  return toml_text(n);
}


void apply_override(toml::table& root, const std::string& text) {
  const auto eq = text.find('='), dot = text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq) {
    throw UsageError("--set " + text + ": expected section.key=value (e.g. select.top_p=0.1)");
  }
  const auto section = text.substr(0, dot), key = text.substr(dot + 1, eq - dot - 1), value = text.substr(eq + 1);
  if (section == "task") throw UsageError("--set " + text + ": tasks are set in the file, not with --set");
  if (!schemas().count(section)) {
    throw UsageError("--set " + text + ": " + unknown("section", section, names_of(
        [] { Schema s; for (const auto& kv : schemas()) if (kv.first != "task") s[kv.first]; return s; }())));
  }
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    parsed.insert("v", value);  // a bare word: a string
  }
  if (!root.contains(section)) root.insert(section, toml::table{});
  auto* table = root[section].as_table();
  if (!table) throw UsageError("--set " + text + ": [" + section + "] is not a table in the file");
  table->insert_or_assign(key, *parsed.get("v"));
}

// The grid of swept values, in section then key order: ("select", "top_p") -> its values.
struct Axis {
  std::string section, key;
  std::vector<const toml::node*> values;
};

fs::path resolve(const fs::path& base, const std::string& p) {
  const fs::path path(p);
  return path.is_absolute() ? path : (base / path).lexically_normal();
}

bool safe_name(const std::string& s) {
  return !s.empty() && s[0] != '.' &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.'; });
}

}  // namespace

const char* step_name(Step step) {
  switch (step) {
    case Step::Scores: return "scores";
    case Step::Select: return "select";
    case Step::Train: return "train";
    case Step::Merge: return "merge";
    case Step::Eval: return "eval";
  }
  return "?";
}

Step parse_step(const std::string& name) {
  for (auto s : kSteps)
    if (name == step_name(s)) return s;
  throw UsageError("unknown step '" + name + "' (steps: scores, select, train, merge, eval)");
}

std::optional<std::string> closest_name(const std::string& name, const std::vector<std::string>& known) {
  std::optional<std::string> best;
  size_t best_distance = std::max<size_t>(2, name.size() / 3) + 1;
  for (const auto& k : known) {
    // Levenshtein distance, one row at a time.
    std::vector<size_t> row(k.size() + 1);
    for (size_t j = 0; j <= k.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= name.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= k.size(); ++j) {
        const size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (name[i - 1] == k[j - 1] ? 0 : 1)});
        diagonal = up;
      }
    }
    if (row[k.size()] < best_distance) best_distance = row[k.size()], best = k;
  }
  return best;
}

Plan load_plan(const fs::path& file, const std::vector<std::string>& overrides) {
  if (!fs::is_regular_file(file)) throw Error("pipeline file " + file.string() + " does not exist");
  toml::table root;
  try {
    root = toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    throw Error(file.string() + ":" + std::to_string(at.line) + ":" + std::to_string(at.column) + ": " +
                std::string(e.description()));
  }
  for (const auto& o : overrides) apply_override(root, o);

  std::vector<std::string> sections;
  for (const auto& kv : schemas()) sections.push_back(kv.first);
  for (const auto& [k, node] : root) {
    const std::string section(k.str());
    if (!schemas().count(section)) throw Error(where_of(file, node) + ": " + unknown("section", section, sections));
    if (section == "task") {
      auto* tasks = node.as_array();
      if (!tasks) throw Error(where_of(file, node) + ": tasks are written [[task]] (an array of tables)");
      for (const auto& t : *tasks) {
        if (!t.is_table()) throw Error(where_of(file, t) + ": tasks are written [[task]] (an array of tables)");
        check_table(file, "task", *t.as_table());
      }
    } else {
      if (!node.is_table()) throw Error(where_of(file, node) + ": [" + section + "] must be a table");
      check_table(file, section, *node.as_table());
    }
  }
  if (!root.contains("model")) throw Error(file.string() + ": no [model] table (path of the base model)");
  if (!root.contains("task")) throw Error(file.string() + ": no [[task]] (name, train_data, ...)");

  Plan plan;
  plan.file = file;
  plan.file_sha256 = sha256_file_hex(file);
  plan.resolved = to_json(root);
  const auto base = fs::absolute(file).parent_path();
  auto get = [&](const char* section) -> const toml::table& {
    static const toml::table empty;
    auto* t = root[section].as_table();
    return t ? *t : empty;
  };

  const auto& model = get("model");
  plan.model.path = resolve(base, model["path"].value_or(std::string()));
  plan.model.plugin = model["plugin"].value_or(std::string());
  plan.model.device = model["device"].value_or(std::string("auto"));
  plan.model.dtype = model["dtype"].value_or(std::string("auto"));
  if (!fs::is_regular_file(plan.model.path / "config.json")) {
    throw Error(where_of(file, *model.get("path")) + ": model.path " + plan.model.path.string() + " has no config.json");
  }

  std::set<std::string> names;
  for (const auto& node : *root["task"].as_array()) {
    const auto& t = *node.as_table();
    TaskSpec task;
    task.name = t["name"].value_or(std::string());
    if (!safe_name(task.name)) {
      throw Error(where_of(file, t) + ": task name '" + task.name + "' must be letters, digits, '_', '-' or '.' (it names a folder)");
    }
    if (!names.insert(task.name).second) throw Error(where_of(file, t) + ": task '" + task.name + "' appears twice");
    task.train_data = resolve(base, t["train_data"].value_or(std::string()));
    if (!fs::is_regular_file(task.train_data)) {
      throw Error(where_of(file, *t.get("train_data")) + ": task " + task.name + ": train_data " + task.train_data.string() + " does not exist");
    }
    if (auto e = t["eval_data"].value<std::string>()) {
      task.eval_data = resolve(base, *e);
      if (!fs::is_regular_file(task.eval_data)) {
        throw Error(where_of(file, *t.get("eval_data")) + ": task " + task.name + ": eval_data " + task.eval_data.string() + " does not exist");
      }
    }
    task.metric = t["metric"].value_or(std::string("loss"));
    if (task.metric != "loss") {
      try {
        pipeline::parse_metric(task.metric);
      } catch (const Error& e) {
        throw Error(where_of(file, *t.get("metric")) + ": task " + task.name + ": " + e.what() + " (or loss)");
      }
    }
    task.enable_thinking = t["enable_thinking"].value<bool>();
    plan.tasks.push_back(std::move(task));
  }

  const auto& scores = get("scores");
  plan.scores = {{"n_sample_tokens", scores["n_sample_tokens"].value_or(int64_t{131072})},
                 {"seed", scores["seed"].value_or(int64_t{5934875})},
                 {"batch_size", scores["batch_size"].value_or(int64_t{1})},
                 {"seq_length", scores["seq_length"].value_or(int64_t{4096})}};
  const auto& merge = get("merge");
  plan.merge = {{"enabled", merge["enabled"].value_or(true)},
                {"max_shard_size", merge["max_shard_size"].value_or(std::string("5GB"))}};
  const auto& eval = get("eval");
  plan.eval = {{"max_new_tokens", eval["max_new_tokens"].value_or(int64_t{64})}, {"before", eval["before"].value_or(true)}};
  if (auto limit = eval["limit"].value<int64_t>()) plan.eval["limit"] = *limit;
  for (const auto& [section, values] : {std::pair<const char*, const nlohmann::json*>{"scores", &plan.scores}, {"eval", &plan.eval}}) {
    for (const auto& [key, v] : values->items()) {
      if (v.is_number_integer() && v.get<int64_t>() < (key == "seed" ? 0 : 1)) {
        throw Error(file.string() + ": " + section + "." + key + (key == "seed" ? " must not be negative" : " must be positive"));
      }
    }
  }

  const auto& compare = get("compare");
  if (root.contains("compare")) {
    CompareSpec c;
    const auto* methods = compare.get("methods");
    if (auto* list = methods->as_array()) {
      for (const auto& m : *list) c.methods.push_back(*m.value<std::string>());
    } else {
      c.methods.push_back(*methods->value<std::string>());
    }
    std::set<std::string> seen;
    for (const auto& m : c.methods) {
      if (std::find(kCompareMethods.begin(), kCompareMethods.end(), m) == kCompareMethods.end()) {
        throw Error(where_of(file, *methods) + ": compare.methods: " + unknown("method", m, kCompareMethods));
      }
      if (!seen.insert(m).second) throw Error(where_of(file, *methods) + ": compare.methods lists " + m + " twice");
    }
    if (auto g = compare["general_data"].value<std::string>()) {
      c.general_data = resolve(base, *g);
      if (!fs::is_regular_file(c.general_data)) {
        throw Error(where_of(file, *compare.get("general_data")) + ": compare.general_data " + c.general_data.string() + " does not exist");
      }
    }
    c.general_metric = compare["general_metric"].value_or(std::string("loss"));
    if (c.general_metric != "loss") {
      try {
        pipeline::parse_metric(c.general_metric);
      } catch (const Error& e) {
        throw Error(where_of(file, *compare.get("general_metric")) + ": compare.general_metric: " + e.what() + " (or loss)");
      }
    }
    if (get("select").contains("score_function") && (seen.count("esft-token") || seen.count("esft-gate"))) {
      throw Error(where_of(file, *get("select").get("score_function")) +
                  ": select.score_function is set by [compare] methods (esft-token, esft-gate); drop it");
    }
    plan.compare = std::move(c);
  }

  // The sweep grid over [select] and [train] lists.
  std::vector<Axis> axes;
  for (const char* section : {"select", "train"}) {
    for (const auto& [k, node] : get(section)) {
      if (auto* list = node.as_array()) {
        Axis a{section, std::string(k.str()), {}};
        for (const auto& v : *list) a.values.push_back(&v);
        axes.push_back(std::move(a));
      }
    }
  }
  std::vector<size_t> index(axes.size(), 0);
  while (true) {
    RunSpec run;
    std::map<std::pair<std::string, std::string>, const toml::node*> chosen;
    std::string train_point;  // the name of the point on the [train] axes alone
    for (size_t i = 0; i < axes.size(); ++i) {
      chosen[{axes[i].section, axes[i].key}] = axes[i].values[index[i]];
      const auto part = axes[i].key + "=" + value_text(*axes[i].values[index[i]]);
      run.name += (run.name.empty() ? "" : ",") + part;
      if (axes[i].section == "train") train_point += (train_point.empty() ? "" : ",") + part;
    }
    if (run.name.empty()) run.name = "default";
    auto value_of = [&](const char* section, const std::string& key, const toml::node& node) -> const toml::node& {
      auto it = chosen.find({section, key});
      return it != chosen.end() ? *it->second : node;
    };
    const auto& select = get("select");
    run.select = {{"score_function", "token"}, {"top_p", 0.2}, {"train_shared_experts", false},
                  {"train_non_expert_modules", false}};
    for (const auto& [k, node] : select) run.select[std::string(k.str())] = to_json(value_of("select", std::string(k.str()), node));
    toml::table train_table;
    for (const auto& [k, node] : get("train")) train_table.insert_or_assign(k.str(), value_of("train", std::string(k.str()), node));
    auto toml_of = [](const toml::table& t) {
      std::ostringstream text;
      for (const auto& [k, node] : t) text << k.str() << " = " << toml_text(node) << "\n";
      return text.str();
    };
    run.train_toml = toml_of(train_table);
    train::TrainOptions::parse_toml(run.train_toml, file.string() + " [train] (run " + run.name + ")", {});
    const double top_p = run.select["top_p"].get<double>();
    if (!(top_p > 0 && top_p <= 1)) throw Error(file.string() + ": select.top_p " + std::to_string(top_p) + " is outside (0, 1]");
    const auto function = run.select["score_function"].get<std::string>();
    if (function != "token" && function != "gate") {
      throw Error(file.string() + ": select.score_function must be \"token\" or \"gate\", not \"" + function + "\"");
    }
    if (!plan.compare) {
      plan.runs.push_back(std::move(run));
    } else {
      for (const auto& label : plan.compare->methods) {
        RunSpec r = run;
        r.label = label;
        r.method = label.rfind("esft-", 0) == 0 ? "esft" : label;
        // Full fine-tuning and LoRA select no experts: one run per [train] point, not one per [select] point.
        const auto& point = r.uses_selection() ? run.name : train_point;
        r.name = point.empty() || point == "default" ? label : label + "," + point;
        if (std::any_of(plan.runs.begin(), plan.runs.end(), [&](const RunSpec& x) { return x.name == r.name; })) continue;
        if (r.method == "esft") r.select["score_function"] = label.substr(5);
        toml::table t = train_table;
        if (const auto* own = compare[r.method].as_table()) {
          for (const auto& [k, node] : *own) t.insert_or_assign(k.str(), node);
        }
        r.train_toml = toml_of(t);
        train::TrainOptions::parse_toml(r.train_toml, file.string() + " [train] + [compare." + r.method + "] (run " + r.name + ")", {});
        plan.runs.push_back(std::move(r));
      }
    }
    size_t i = 0;
    for (; i < axes.size(); ++i) {
      if (++index[i] < axes[i].values.size()) break;
      index[i] = 0;
    }
    if (i == axes.size()) break;
  }
  return plan;
}

}  // namespace esft::host::run
