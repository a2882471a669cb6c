// `esft-host init --plugin NAME --config MODEL.toml --tokenizer DIR --out DIR [--seed S]`: a new model directory
// with random weights, for training from scratch (tinymoe). The TOML file holds config.json's keys at its top
// level; model_type defaults to the plugin's and vocab_size to the tokenizer's.
//
// Initialisation, for every family (GPT-2's): norm weights 1, biases 0, every other tensor N(0, 0.02), and the
// projections that write into the residual stream (attention output, FFN and expert down projections) N(0, 0.02 /
// sqrt(2 * layers)), so that the residual stream's variance does not grow with depth.
#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <iostream>

#include "../cli.h"
#include "../model_writer.h"
#include "../plugin_loader.h"
#include "../toml_json.h"
#include "esft/error.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::host {

namespace {

namespace fs = std::filesystem;

nlohmann::json read_model_toml(const fs::path& path) {
  toml::table table;
  try {
    table = toml::parse_file(path.string());
  } catch (const toml::parse_error& e) {
    throw Error(path.string() + ": " + std::string(e.description()));
  }
  return to_json(table);
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

bool is_bias(const std::string& key, Role role) {
  return role == Role::EXPERT_GATE_UP_BIAS || role == Role::EXPERT_DOWN_BIAS || role == Role::ROUTER_BIAS ||
         ends_with(key, "bias");
}

// The standard deviation a tensor starts from (0 = constant: 1 for norm weights, 0 for biases).
double init_std(const std::string& key, Role role, int64_t dims, int64_t layers) {
  const bool norm = role == Role::NORM || role == Role::FINAL_NORM;
  if (norm || dims == 1 || is_bias(key, role)) return 0;
  const bool residual_out = role == Role::EXPERT_DOWN || ends_with(key, "o_proj.weight") ||
                            ends_with(key, "fc2.weight") || ends_with(key, "down_proj.weight");
  return residual_out ? 0.02 / std::sqrt(2.0 * static_cast<double>(layers)) : 0.02;
}

}  // namespace

Command init_command() {
  Command c;
  c.name = "init";
  c.summary = "write a new model directory with random weights (training from scratch)";
  c.usage = "init --plugin NAME --config MODEL.toml --tokenizer DIR --out DIR [--seed S]";
  c.add_options = [](po::options_description& d) {
    d.add_options()("config", po::value<std::string>()->required(), "model configuration (config.json's keys, TOML)")
        ("tokenizer", po::value<std::string>()->required(), "directory (or file) of the tokenizer.json to ship")
        ("out", po::value<std::string>()->required(), "new model directory: must not exist or be empty")
        ("seed", po::value<int64_t>()->default_value(0), "random seed of the initialisation");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    if (!global.plugin) throw UsageError("init needs --plugin (the family of the new model)");
    fs::path out = fs::absolute(vm["out"].as<std::string>()).lexically_normal();
    if (!out.has_filename()) out = out.parent_path();  // "dir/"
    std::error_code ec;
    if (fs::exists(out, ec) && (!fs::is_directory(out, ec) || !fs::is_empty(out, ec)))
      throw Error("output directory " + out.string() + " exists and is not empty");
    if (!fs::is_directory(out.parent_path(), ec))
      throw Error("output directory's parent " + out.parent_path().string() + " does not exist");

    fs::path tokenizer_file = vm["tokenizer"].as<std::string>();
    if (fs::is_directory(tokenizer_file, ec)) tokenizer_file /= "tokenizer.json";
    const auto tokenizer = tok::Tokenizer::load(tokenizer_file);
    auto json = read_model_toml(vm["config"].as<std::string>());
    if (!json.is_object()) throw Error(vm["config"].as<std::string>() + ": not a table of config keys");
    if (!json.contains("vocab_size")) json["vocab_size"] = static_cast<int64_t>(tokenizer.vocab_size());
    // model_type: the plugin's first when the file leaves it out.
    if (!json.contains("model_type")) json["model_type"] = PluginLoader(global.plugin_dir).load(*global.plugin)->model_types().front();
    const auto config = ModelConfig::from_json(json, vm["config"].as<std::string>());
    if (static_cast<size_t>(config.vocab_size) < tokenizer.vocab_size())
      throw Error("vocab_size " + std::to_string(config.vocab_size) + " is smaller than the tokenizer's " +
                  std::to_string(tokenizer.vocab_size()) + " tokens");
    const auto family = resolve_family(global, config);
    auto model = family->create(config, c10::Device(c10::kCPU), c10::kFloat);

    at::manual_seed(static_cast<uint64_t>(vm["seed"].as<int64_t>()));
    {
      at::NoGradGuard no_grad;
      for (const auto& b : model->checkpoint_bindings()) {
        const auto match = family->naming().match(b.key());
        const Role role = match ? match->role : Role::ATTENTION;
        const double std = init_std(b.key(), role, static_cast<int64_t>(b.shape().size()), config.num_hidden_layers);
        const bool norm_weight = (role == Role::NORM || role == Role::FINAL_NORM) && !is_bias(b.key(), role);
        b.assign(std > 0 ? at::randn(b.shape()) * std : (norm_weight ? at::ones(b.shape()) : at::zeros(b.shape())));
      }
    }
    // Special tokens (eos, pad, bos) live in tokenizer_config.json: ship it too where there is one.
    std::vector<ShippedFile> files = {{tokenizer_file, "tokenizer.json"}};
    const auto tokenizer_config = tokenizer_file.parent_path() / "tokenizer_config.json";
    if (fs::exists(tokenizer_config, ec)) files.push_back({tokenizer_config, "tokenizer_config.json"});
    const int64_t parameters = write_model_directory(*model, json, files, out, "esft-host init");
    std::cout << "initialised " << config.model_type << " (" << family->name() << "): " << parameters
              << " parameters, seed " << vm["seed"].as<int64_t>() << ", in " << out.string() << "\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
