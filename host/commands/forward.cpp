// `esft-host forward`: one forward pass over given token ids, writing everything needed to compare a family with
// transformers, under the names of shared/fixtures/hf/*/reference.safetensors; for capacity routers (tinymoe) also
// dropped.{l} and the Boids terms boids_{cohesion,separation,alignment}.{l}; for models with trash cans
// (Select-MoE) constraint_loss.
#include <ATen/ATen.h>


#include <iostream>
#include <map>
#include <optional>

#include "../cli.h"
#include "esft/error.h"
#include "esft/io/safetensors.h"
#include "esft/model/boids_losses.h"
#include "esft/model/trash_constraint.h"
#include "esft/model/losses.h"
#include "esft/pipeline/any_adapter.h"

namespace esft::host {

namespace {

// Records every MoE layer's routing in this forward.
class RoutingRecorder : public RouterHook {
 public:
  void on_route(const RouterEvent& e) override { events.push_back(e); }
  std::vector<RouterEvent> events;
};

at::Tensor read_ids(const SafetensorsFile& file, const std::string& name, bool required) {
  if (!file.find(name)) {
    if (!required) return {};
    throw Error("no tensor '" + name + "' in " + file.path().string());
  }
  auto t = file.load(name);
  if (t.dim() != 2) throw Error("'" + name + "' must be 2-D [batch, tokens] in " + file.path().string());
  if (!at::isIntegralType(t.scalar_type(), /*includeBool=*/true)) {
    throw Error("'" + name + "' must hold integers in " + file.path().string());
  }
  return t.to(at::kLong);
}

}  // namespace

Command forward_command() {
  Command c;
  c.name = "forward";
  c.summary = "run one forward pass; write logits, hidden states and per-layer routing (safetensors)";
  c.usage = "forward --model DIR [--adapter DIR] --inputs IN.safetensors --out OUT.safetensors";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory")
        ("adapter", po::value<std::string>(), "adapter applied first: ESFT (either format) or PEFT LoRA")
        ("inputs", po::value<std::string>()->required(), "safetensors with input_ids [B,T] and optional attention_mask")
        ("out", po::value<std::string>()->required(), "output safetensors file");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const std::filesystem::path out_path = vm["out"].as<std::string>();
    check_output_path(out_path, "--out");
    const SafetensorsFile inputs(vm["inputs"].as<std::string>());
    auto input_ids = read_ids(inputs, "input_ids", true);
    auto attention_mask = read_ids(inputs, "attention_mask", false);
    if (attention_mask.defined() && attention_mask.sizes() != input_ids.sizes()) {
      throw Error("attention_mask and input_ids have different shapes in " + inputs.path().string());
    }

    std::optional<pipeline::AnyAdapter> adapter;  // opened and checked before the expensive load
    if (vm.count("adapter")) {
      adapter = pipeline::AnyAdapter::open(vm["adapter"].as<std::string>());
      adapter->check_base(vm["model"].as<std::string>());
    }
    auto m = open_model(global, vm["model"].as<std::string>());
    if (adapter) std::cerr << adapter->apply(*m.model, vm["model"].as<std::string>()) << "\n";
    const int64_t vocab = m.config.vocab_size;
    if (input_ids.numel() > 0 && (input_ids.min().item<int64_t>() < 0 || input_ids.max().item<int64_t>() >= vocab)) {
      throw Error("input_ids outside the vocabulary [0, " + std::to_string(vocab) + ") in " + inputs.path().string());
    }
    input_ids = input_ids.to(m.device);
    if (attention_mask.defined()) attention_mask = attention_mask.to(m.device);

    at::NoGradGuard no_grad;
    RoutingRecorder recorder;
    ForwardOptions options;
    options.hidden_states = true;
    options.aux_loss = true;
    options.hooks.push_back(&recorder);
    auto out = m.model->forward(input_ids, attention_mask, options);

    NamedTensors tensors;
    auto add = [&](const std::string& name, const at::Tensor& t) { tensors.emplace_back(name, t.detach().cpu()); };
    add("logits", out.logits.to(at::kFloat));
    for (size_t i = 0; i < out.hidden_states.size(); ++i)
      add("hidden_states." + std::to_string(i), out.hidden_states[i].to(at::kFloat));
    for (const auto& e : recorder.events) {
      const auto l = std::to_string(e.layer);
      add("router_logits." + l, e.router_logits.to(at::kFloat));
      add("topk_idx." + l, e.topk_idx);
      add("topk_weight." + l, e.topk_weight.to(at::kFloat));
      // Capacity routers (tinymoe): 1 where the token lost its expert, [N] for top-1, else [N, k].
      if (e.dropped.defined())
        add("dropped." + l, (e.dropped.size(1) == 1 ? e.dropped.select(1, 0) : e.dropped).to(at::kByte));
    }
    // Boids terms (unweighted; shared/spec/VARIANTS.md §3) of every layer of a capacity router (tinymoe's Switch
    // routers, the ones Boids regularises), over the real tokens, against the final hidden states; k_nn is 8, or one
    // less than the tokens when there are fewer.
    const auto& final_hidden = out.hidden_states.back();
    const auto real = attention_mask.defined() ? attention_mask.reshape({-1}).to(at::kBool) : at::Tensor();
    auto z = final_hidden.reshape({-1, final_hidden.size(-1)}).to(at::kFloat);
    if (real.defined()) z = z.index({real});
    const BoidsSettings boids;
    for (const auto& e : recorder.events) {
      if (!e.probs.defined() || !e.dropped.defined() || z.size(0) < 2) continue;
      auto gates = boids_gates(e.probs, e.topk_idx);
      if (real.defined()) gates = gates.index({real});
      const auto l = std::to_string(e.layer);
      add("boids_cohesion." + l, boids_cohesion(gates, z, std::min<int64_t>(boids.k_nn, z.size(0) - 1)).reshape({1}));
      add("boids_separation." + l, boids_separation(gates, boids.tau).reshape({1}));
      add("boids_alignment." + l, boids_alignment(gates).reshape({1}));
    }
    add("ce_loss", causal_lm_loss(out.logits, labels_from_inputs(input_ids, attention_mask)).reshape({1}));
    if (out.aux_loss.defined()) add("aux_loss", out.aux_loss.to(at::kFloat).reshape({1}));
    // Trash cans (Select-MoE): the constraint on their mass (unweighted), with the config's settings.
    if (const auto trash = trash_constraint_of(*m.model)) {
      TrashConstraintHook constraint(*trash);
      for (const auto& e : recorder.events) constraint.on_route(e);
      if (const auto loss = constraint.take_loss(); loss.defined()) add("constraint_loss", loss.reshape({1}));
    }
    save_safetensors(out_path, tensors, {{"producer", "esft-host forward"}, {"model_type", m.config.model_type}});
    std::cerr << "wrote " << tensors.size() << " tensors to " << out_path.string() << "\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
