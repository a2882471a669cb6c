// `esft-host info --model DIR`: what a checkpoint is, without loading its weights (the model is built on the
// meta device, so even a 30B model costs no memory here). A folder with config.json alone works too: the counts
// come from the model the config describes.
#include <iostream>
#include <optional>
#include <sstream>

#include "../cli.h"
#include "esft/io/safetensors.h"
#include "esft/runtime.h"

namespace esft::host {

namespace {

std::string grouped(uint64_t n) {
  auto digits = std::to_string(n);
  for (int i = static_cast<int>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<size_t>(i), ",");
  return digits;
}

std::string percent(double part, double whole) {
  std::ostringstream s;
  s.precision(1);
  s << std::fixed << (whole > 0 ? 100.0 * part / whole : 0.0) << "%";
  return s.str();
}

}  // namespace

Command info_command() {
  Command c;
  c.name = "info";
  c.summary = "show a model's configuration, parameter counts, MoE layers and checkpoint size";
  c.usage = "info --model DIR   (DIR may hold config.json alone: counts without a checkpoint)";
  c.add_options = [](po::options_description& d) {
    d.add_options()("model", po::value<std::string>()->required(), "model directory (config.json + safetensors)");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    parse_dtype(global.dtype, parse_device(global.device));  // not used here, but a wrong value is still an error
    const std::filesystem::path dir = vm["model"].as<std::string>();
    const auto config = ModelConfig::load(dir);
    const std::optional<Checkpoint> checkpoint =
        Checkpoint::exists(dir) ? std::optional<Checkpoint>(Checkpoint::open(dir)) : std::nullopt;
    const auto family = resolve_family(global, config);
    auto model = family->create(config, c10::Device(c10::kMeta), c10::kFloat);

    uint64_t total = 0;
    for (const auto& b : model->checkpoint_bindings()) total += static_cast<uint64_t>(b.numel());
    uint64_t shared = 0;
    uint64_t routed = 0;
    double active_routed = 0;
    std::string moe_list;
    const auto moe_layers = model->moe_layers();
    for (auto* layer : moe_layers) {
      uint64_t in_layer = 0;
      for (const auto& b : layer->experts().bindings()) in_layer += static_cast<uint64_t>(b.numel());
      routed += in_layer;
      active_routed += static_cast<double>(in_layer) * layer->top_k() / layer->num_experts();
      moe_list += (moe_list.empty() ? "" : ",") + std::to_string(layer->layer_index());
      if (auto* s = layer->shared_experts()) {
        for (const auto& p : s->parameters()) shared += static_cast<uint64_t>(p.numel());
      }
    }
    const double active = static_cast<double>(total - routed) + active_routed;
    // From the model, not config keys: families name the expert size differently (gpt-oss: intermediate_size).
    const int64_t expert_intermediate = moe_layers.empty() ? 0 : moe_layers.front()->experts().spec().intermediate;

    std::cout << "model            " << dir.string() << "\n"
              << "model_type       " << config.model_type << " (plugin " << family->name() << ")\n"
              << "layers           " << config.num_hidden_layers << " decoder layers, " << moe_layers.size()
              << " MoE: " << (moe_list.empty() ? "none" : moe_list) << "\n"
              << "attention        hidden " << config.hidden_size << ", heads " << config.num_attention_heads
              << " (kv " << config.num_key_value_heads << "), head_dim " << config.head_dim << "\n"
              << "experts          " << (moe_layers.empty() ? 0 : moe_layers.front()->num_experts())
              << " routed per MoE layer"
              << (!moe_layers.empty() && moe_layers.front()->trash_experts() > 0
                      ? " + " + std::to_string(moe_layers.front()->trash_experts()) + " trash cans (Select-MoE)"
                      : std::string())
              << ", top-" << (moe_layers.empty() ? 0 : moe_layers.front()->top_k())
              << ", expert intermediate " << expert_intermediate << "\n"
              << "vocabulary       " << config.vocab_size << "\n"
              << "parameters       total " << grouped(total) << "; active per token " << grouped(static_cast<uint64_t>(active))
              << " (" << percent(active, static_cast<double>(total)) << "); routed experts " << grouped(routed) << " ("
              << percent(static_cast<double>(routed), static_cast<double>(total)) << ")\n"
              << (shared > 0 ? "                 shared experts " + grouped(shared) + " (" +
                                   percent(static_cast<double>(shared), static_cast<double>(total)) + ")\n"
                             : std::string());
    if (checkpoint) {
      std::cout << "checkpoint       " << checkpoint->keys().size() << " tensors in " << checkpoint->files().size()
                << (checkpoint->files().size() == 1 ? " file" : " files") << ", "
                << grouped(checkpoint->total_bytes()) << " bytes\n";
    } else {
      std::cout << "checkpoint       none in " << dir.string() << " (counts from config.json)\n";
    }
    return 0;
  };
  return c;
}

}  // namespace esft::host
