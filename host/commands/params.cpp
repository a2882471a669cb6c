// `esft-host params`: the checkpoint names an expert config trains (shared/spec/ESFT.md §3), for frameworks that
// freeze by name. Reads only config.json and the checkpoint's key list.
#include <iostream>

#include "../cli.h"
#include "esft/error.h"
#include "esft/io/mxfp4.h"
#include "esft/pipeline/trainable_names.h"

namespace esft::host {

namespace {

void print_list(const std::vector<std::string>& names) {
  for (const auto& n : names) std::cout << n << "\n";
}

// Per-layer expert lists written as expert_config.json writes them.
nlohmann::json experts_json(const std::map<int, std::vector<int64_t>>& experts) {
  pipeline::ExpertConfig config;
  config.experts = experts;
  return config.to_json()["experts"];
}

}  // namespace

Command params_command() {
  Command c;
  c.name = "params";
  c.summary = "the checkpoint tensor names an expert config trains (list, regex, json; Megatron ranks)";
  c.usage = "params --model DIR --expert-config FILE [--format list|regex|json] [--megatron] [--ep-size P] "
            "[--pattern auto|PATTERN]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory (config.json and safetensors)")
        ("expert-config", po::value<std::string>()->required(), "expert_config.json (from select)")
        ("format", po::value<std::string>()->default_value("list"),
         "list (one name per line) | regex (one anchored regex) | json")
        ("megatron", po::bool_switch(), "Megatron-Core names (decoder.layers..., experts.local_experts.N)")
        ("ep-size", po::value<int>()->default_value(1), "with --megatron: expert-parallel ranks; names per rank")
        ("pattern", po::value<std::string>(),
         "how expert tensors are named: auto (found from the keys) or a pattern like "
         "model.layers.{layer}.mlp.experts.{expert}. (default: the family's naming table)");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const auto format = vm["format"].as<std::string>();
    if (format != "list" && format != "regex" && format != "json") {
      throw UsageError("--format must be list, regex or json");
    }
    const bool megatron = vm["megatron"].as<bool>();
    const int ep_size = vm["ep-size"].as<int>();
    if (ep_size < 1) throw UsageError("--ep-size must be >= 1");
    if (ep_size > 1 && !megatron) throw UsageError("--ep-size needs --megatron");

    const std::filesystem::path model_dir = vm["model"].as<std::string>();
    const auto config = ModelConfig::load(model_dir);
    const auto family = resolve_family(global, config);
    const auto expert_config = pipeline::ExpertConfig::load(vm["expert-config"].as<std::string>());
    const auto checkpoint = Checkpoint::open(model_dir);
    std::vector<pipeline::NamedKey> keys;
    std::vector<std::string> key_names;
    for (const auto& t : checkpoint_tensors(checkpoint)) {
      keys.push_back({t.key, t.shape});
      key_names.push_back(t.key);
    }
    std::string prefix = pipeline::expert_prefix_pattern(family->naming());
    if (vm.count("pattern")) {
      const auto p = vm["pattern"].as<std::string>();
      prefix = p == "auto" ? pipeline::detect_expert_prefix_pattern(key_names) : p;
    }
    const auto names = pipeline::trainable_names(keys, family->naming(), prefix, expert_config);

    if (megatron) {
      const auto ranks = pipeline::megatron_ranks(names, expert_config, ep_size);
      nlohmann::json j = nlohmann::json::array();
      for (const auto& r : ranks) {
        if (format == "json") {
          j.push_back({{"rank", r.rank}, {"experts", experts_json(r.local_experts)}, {"prefixes", r.prefixes},
                       {"regex", r.regex}});
          continue;
        }
        if (ep_size > 1) std::cout << "# rank " << r.rank << "\n";
        if (format == "list") print_list(r.prefixes);
        else std::cout << r.regex << "\n";
      }
      if (format == "json") std::cout << nlohmann::json{{"megatron", true}, {"ep_size", ep_size}, {"ranks", j}}.dump(2) << "\n";
      return 0;
    }

    if (format == "list") {
      print_list(names.expert_keys);
      print_list(names.other_keys);
      return 0;
    }
    // Slices of fused tensors have no name of their own in a checkpoint: a regex cannot select them.
    std::vector<std::string> whole;
    std::string slice;
    for (const auto& k : names.other_keys) (k.find('#') == std::string::npos ? whole.push_back(k) : void(slice = k));
    const auto regex = pipeline::anchored_regex(prefix, names.experts, whole);
    if (format == "regex") {
      std::cout << regex << "\n";
      if (!slice.empty()) {
        std::cerr << "esft-host: note: fused tensors train in slices (" << slice
                  << ", ...), which a name regex cannot select; the regex leaves them out\n";
      }
      return 0;
    }
    nlohmann::json tensors = names.expert_keys;
    for (const auto& k : names.other_keys) tensors.push_back(k);
    std::cout << nlohmann::json{{"expert_pattern", prefix},
                                {"experts", experts_json(names.experts)},
                                {"shared_experts", expert_config.shared_experts},
                                {"non_expert_modules", expert_config.non_expert_modules},
                                {"tensors", tensors},
                                {"regex", regex}}
                     .dump(2)
              << "\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
