// `esft-host generate`: greedy decoding with the KV cache from a prompt of token ids.
#include <ATen/ATen.h>

#include <chrono>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "../cli.h"
#include "esft/error.h"
#include "esft/generate.h"

namespace esft::host {

namespace {

// Stop tokens: generation_config.json's eos_token_id when present (it is what transformers' generate uses),
// else config.json's.
std::vector<int64_t> stop_ids(const ModelConfig& config) {
  std::ifstream in(config.model_dir / "generation_config.json");
  if (in) {
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception& e) {
      throw Error("malformed JSON in " + (config.model_dir / "generation_config.json").string() + ": " + e.what());
    }
    auto it = j.find("eos_token_id");
    if (it != j.end() && !it->is_null()) {
      std::vector<int64_t> ids;
      if (it->is_number_integer()) ids.push_back(it->get<int64_t>());
      if (it->is_array())
        for (const auto& e : *it) ids.push_back(e.get<int64_t>());
      return ids;
    }
  }
  return config.eos_token_ids;
}

}  // namespace

Command generate_command() {
  Command c;
  c.name = "generate";
  c.summary = "greedy decoding with the KV cache from token ids; prints prompt and generated ids";
  c.usage = "generate --model DIR --ids 1,2,3 [--max-new-tokens N]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory")
        ("ids", po::value<std::string>()->required(), "prompt token ids, comma-separated")
        ("max-new-tokens", po::value<int64_t>()->default_value(32), "tokens to generate at most");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const int64_t max_new = vm["max-new-tokens"].as<int64_t>();
    if (max_new < 0) throw UsageError("--max-new-tokens must be >= 0");
    auto m = open_model(global, vm["model"].as<std::string>());
    const auto prompt_ids = parse_token_ids(vm["ids"].as<std::string>(), "--ids", m.config.vocab_size);
    auto prompt = at::tensor(prompt_ids, at::kLong).unsqueeze(0).to(m.device);

    const auto start = std::chrono::steady_clock::now();
    int64_t produced = 0;
    auto output = greedy_generate(*m.model, prompt, max_new, stop_ids(m.config), [&](int64_t) { ++produced; });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    output = output.cpu();
    const auto* ids = output.data_ptr<int64_t>();
    for (int64_t i = 0; i < output.size(1); ++i) std::cout << (i ? "," : "") << ids[i];
    std::cout << "\n";
    std::cerr << produced << " new tokens in " << seconds << " s (" << (seconds > 0 ? produced / seconds : 0.0)
              << " tokens/s)\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
