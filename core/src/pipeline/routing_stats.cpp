#include "esft/pipeline/routing_stats.h"

#include <limits>
#include <sstream>

#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/tokenizer/tokenizer.h"  // read_maybe_gzipped

namespace esft::pipeline {

namespace fs = std::filesystem;

nlohmann::json RoutingStats::to_json() const {
  nlohmann::json layers_json = nlohmann::json::object();
  for (const auto& [layer, r] : layers) {
    layers_json[std::to_string(layer)] = {{"token_count", r.token_count}, {"gate_sum", r.gate_sum}, {"tokens", r.tokens}};
  }
  return {{"format", "esft-scores"}, {"version", 1},          {"model_type", model_type}, {"num_experts", num_experts},
          {"top_k", top_k},          {"tokens", tokens},      {"layers", layers_json}};
}

RoutingStats RoutingStats::from_json(const nlohmann::json& j, const std::string& where) {
  if (!j.is_object() || j.find("format") == j.end() || j["format"] != "esft-scores") throw Error(where + ": not an esft-scores file");
  if (j.find("version") == j.end() || json_get<int64_t>(j["version"]) != 1)
    throw Error(where + ": esft-scores version " + json_excerpt(j.value("version", nlohmann::json())) + " is not supported");
  RoutingStats s;
  // Every number is read exactly (json_get): a count of 2.5 or 1e40 is a damaged file, not a count.
  auto integer = [&](const nlohmann::json& object, const char* key, const std::string& in) {
    const auto it = object.find(key);
    const auto v = it == object.end() ? std::nullopt : json_get<int64_t>(*it);
    if (!v || *v < 0) throw Error(where + ": " + in + "\"" + key + "\" must be a non-negative integer");
    return *v;
  };
  try {
    s.model_type = j.value("model_type", std::string());
    s.num_experts = integer(j, "num_experts", "");
    s.top_k = integer(j, "top_k", "");
    s.tokens = integer(j, "tokens", "");
    for (const auto& item : j.at("layers").items()) {
      const std::string layer = "layer " + item.key() + ": ";
      const auto index = parse_index(item.key());
      if (!index || *index > std::numeric_limits<int>::max()) throw Error(where + ": layer key '" + item.key() + "' is not a layer index");
      const auto& value = item.value();
      LayerRouting r;
      auto counts = json_get<std::vector<int64_t>>(value.at("token_count"));
      auto sums = json_get<std::vector<double>>(value.at("gate_sum"));
      if (!counts || !sums) throw Error(where + ": " + layer + "token_count and gate_sum must be lists of numbers");
      r.token_count = std::move(*counts);
      r.gate_sum = std::move(*sums);
      r.tokens = value.contains("tokens") ? integer(value, "tokens", layer) : s.tokens;
      if (static_cast<int64_t>(r.token_count.size()) != s.num_experts || static_cast<int64_t>(r.gate_sum.size()) != s.num_experts) {
        throw Error(where + ": layer " + item.key() + " does not have num_experts entries");
      }
      s.layers[static_cast<int>(*index)] = std::move(r);
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error(where + ": malformed esft-scores file (" + e.what() + ")");
  }
  if (s.num_experts <= 0 || s.top_k <= 0 || s.top_k > s.num_experts) throw Error(where + ": bad num_experts or top_k");
  return s;
}

namespace {

// Adds one log file (layer `layer`) to `stats`.
void add_log(const fs::path& file, int layer, RoutingStats& stats) {
  const std::string text = tok::read_maybe_gzipped(file);
  auto& r = stats.layers[layer];
  if (r.token_count.empty()) r.token_count.assign(stats.num_experts, 0), r.gate_sum.assign(stats.num_experts, 0.0);
  int64_t slots = 0;
  std::istringstream lines(text);
  std::string line;
  for (int64_t number = 1; std::getline(lines, line); ++number) {
    if (line.empty()) continue;
    const std::string where = file.string() + ":" + std::to_string(number);
    const auto split = line.find("\t\t");
    if (split == std::string::npos) throw Error(where + ": no tab-tab separator between expert ids and weights");
    std::istringstream ids(line.substr(0, split)), weights(line.substr(split + 2));
    int64_t id;
    double w;
    std::vector<int64_t> id_list;
    while (ids >> id) id_list.push_back(id);
    size_t n = 0;
    for (; weights >> w; ++n) {
      if (n >= id_list.size()) break;
      const int64_t e = id_list[n];
      if (e < 0 || e >= stats.num_experts) {
        throw Error(where + ": expert id " + std::to_string(e) + " outside [0, " + std::to_string(stats.num_experts) + ")");
      }
      r.token_count[e] += 1;
      r.gate_sum[e] += w;
    }
    if (n != id_list.size() || !weights.eof()) throw Error(where + ": the numbers of expert ids and weights differ");
    slots += static_cast<int64_t>(id_list.size());
  }
  if (slots % stats.top_k != 0) {
    throw Error(file.string() + ": " + std::to_string(slots) + " routed slots is not a multiple of top_k " + std::to_string(stats.top_k));
  }
  r.tokens += slots / stats.top_k;
}

// Every `expert_weights_{layer}.txt[.gz]` in `dir`.
void add_log_dir(const fs::path& dir, RoutingStats& stats) {
  bool any = false;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const auto name = entry.path().filename().string();
    const std::string head = "expert_weights_";
    if (name.rfind(head, 0) != 0) continue;
    auto rest = name.substr(head.size());
    for (const char* tail : {".txt.gz", ".txt"}) {
      const std::string t = tail;
      if (rest.size() > t.size() && rest.compare(rest.size() - t.size(), t.size(), t) == 0) {
        const auto layer = parse_index(rest.substr(0, rest.size() - t.size()));
        if (!layer || *layer > std::numeric_limits<int>::max()) break;
        add_log(entry.path(), static_cast<int>(*layer), stats);
        any = true;
        break;
      }
    }
  }
  if (!any) throw Error(dir.string() + ": no expert_weights_{layer}.txt logs");
}

}  // namespace

RoutingStats read_legacy_logs(const fs::path& path, int64_t top_k, int64_t num_experts) {
  if (top_k <= 0 || num_experts <= 0 || top_k > num_experts) {
    throw Error(path.string() + ": reading legacy logs needs the model's top_k and num_experts");
  }
  if (!fs::is_directory(path)) throw Error(path.string() + ": not a directory of routing logs");
  RoutingStats s;
  s.model_type = "unknown (legacy logs)";
  s.top_k = top_k;
  s.num_experts = num_experts;
  std::vector<fs::path> ranks;
  for (const auto& entry : fs::directory_iterator(path))
    if (entry.is_directory() && entry.path().filename().string().rfind("rank_", 0) == 0) ranks.push_back(entry.path());
  if (ranks.empty()) {
    add_log_dir(path, s);
  } else {
    for (const auto& r : ranks) add_log_dir(r, s);
  }
  for (const auto& [layer, r] : s.layers) s.tokens = std::max(s.tokens, r.tokens);
  return s;
}

RoutingStats load_routing_stats(const fs::path& path, int64_t top_k, int64_t num_experts) {
  fs::path file = fs::is_directory(path) ? path / "scores.json" : path;
  if (fs::exists(file) && !fs::is_directory(file)) return RoutingStats::from_json(read_json_file(file), file.string());
  if (!fs::exists(path)) throw Error(path.string() + ": no such scores file or log directory");
  return read_legacy_logs(path, top_k, num_experts);
}

}  // namespace esft::pipeline
