#pragma once
// One parity harness for every family (the llama.cpp test-llama-archs habit): load the family's plugin and the
// tiny fixture model made with transformers, then compare logits, hidden states, routing, losses, gradients (with
// and without ESFT freezing) and greedy generation against shared/fixtures/hf/<family>, copied to tests/data/hf.
// Tolerances are those of the fixtures' README. Measured errors are printed, so `ctest -V` shows the figures.
// The model runs on test_support::test_device() (ESFT_TEST_DEVICE: the CPU, or a GPU in float32, where ctest's
// "parity_tests (cuda)" runs the same cases); references stay on the CPU, and results are compared there.
#include <ATen/ATen.h>
#include "doctest_torch.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "esft/io/safetensors.h"
#include "esft/io/weights.h"
#include "esft/model/generate.h"
#include "esft/model/losses.h"
#include "esft/nn/attention.h"
#include "esft/nn/expert_bank.h"
#include "esft/testing/parity.h"
#include "plugin_loader.h"
#include "test_support.h"

namespace parity {

using test_support::max_diff;

// The float32 tolerances of the fixtures' README, shared with `esft-host parity` (esft/testing/parity.h).
using esft::testing::kGradRelTol;
using esft::testing::kLossRelTol;
using esft::testing::kValueTol;
// The model in bfloat16 against the float32 reference: ||a-b|| / ||b|| over all real logits, the loss, and over all
// gradients at once (single tensors reached by a flipped near-tie route can be far off, in transformers too). About
// 1.5x what transformers 5.17 itself reaches in bfloat16 on these fixtures (worst of the five families: 3.2e-2,
// 8.5e-4, 8.5e-2; ours are within a few percent of its figures).
constexpr double kBf16RelTol = 5e-2;      // logits (and one expert kernel's gradients against the other's)
constexpr double kBf16LossRelTol = 5e-3;  // loss
constexpr double kBf16GradRelTol = 1.5e-1;  // all gradients together

struct Family {
  std::string plugin;
  std::filesystem::path dir;  // tests/data/hf/<fixture>
  std::shared_ptr<esft::ModelFamily> family;
  esft::ModelConfig config;
  std::shared_ptr<esft::MoECausalLM> model;
};

inline Family load(const std::string& plugin, const std::string& fixture) {
  Family f;
  f.plugin = plugin;
  f.dir = std::filesystem::path(ESFT_TEST_DATA_DIR) / "hf" / fixture;
  esft::host::PluginLoader loader(std::vector<std::filesystem::path>{ESFT_BIN_DIR});
  f.family = loader.load(plugin);
  f.config = esft::ModelConfig::load(f.dir / "model");
  f.model = esft::load_model(*f.family, f.config, test_support::test_device(), c10::kFloat);
  return f;
}

inline std::string kernel_label() {
  return std::string(esft::nn::attention_kernel() == esft::nn::AttentionKernel::Fused ? "sdpa" : "eager") +
         " attention, " + (esft::nn::expert_kernel() == esft::nn::ExpertKernel::Grouped ? "grouped" : "loop") +
         " experts";
}

inline void report(const Family& f, const std::string& what, double value) {
  std::printf("parity %s (%s): %-28s %.3e\n", f.plugin.c_str(), kernel_label().c_str(), what.c_str(), value);
}

// Runs `check` with each kernel: LibTorch's fused attention (the default) and transformers' eager formula, with the
// per-expert loop; then the fused attention with the grouped expert GEMM.
template <typename Check>
void with_each_kernel(Check&& check) {
  using esft::nn::AttentionKernel;
  using esft::nn::ExpertKernel;
  const std::pair<AttentionKernel, ExpertKernel> kernels[] = {{AttentionKernel::Fused, ExpertKernel::Loop},
                                                              {AttentionKernel::Eager, ExpertKernel::Loop},
                                                              {AttentionKernel::Fused, ExpertKernel::Grouped}};
  for (const auto& [attention, experts] : kernels) {
    esft::nn::set_attention_kernel(attention);
    esft::nn::set_expert_kernel(experts);
    INFO("kernels: ", kernel_label());
    check();
  }
  esft::nn::set_attention_kernel(AttentionKernel::Fused);
  esft::nn::set_expert_kernel(ExpertKernel::Auto);
}

class RoutingRecorder : public esft::RouterHook {
 public:
  void on_route(const esft::RouterEvent& e) override { events[e.layer] = e; }
  std::map<int, esft::RouterEvent> events;
};

inline void check_key_sets(Family& f) {
  auto checkpoint = esft::Checkpoint::open(f.dir / "model");
  auto skip = [&f](const std::string& key) { return f.model->skips_checkpoint_key(key); };
  auto diff = esft::compare_keys(f.model->checkpoint_bindings(), checkpoint, skip);
  CHECK_MESSAGE(diff.missing.empty(), "bound but not in checkpoint: ", diff.missing.size());
  CHECK_MESSAGE(diff.unexpected.empty(), "in checkpoint but not bound: ", diff.unexpected.size());
}

inline void check_forward_with_current_kernel(Family& f) {
  const esft::SafetensorsFile ref(f.dir / "reference.safetensors");
  const auto on_device = at::TensorOptions().device(test_support::test_device());
  auto ids = ref.load("input_ids", on_device);
  auto mask = ref.load("attention_mask", on_device);
  auto real = ref.load("attention_mask").reshape({-1}).to(at::kBool);

  at::NoGradGuard no_grad;
  RoutingRecorder recorder;
  esft::ForwardOptions options;
  options.hidden_states = true;
  options.aux_loss = true;
  options.final_hidden = true;
  options.hooks.push_back(&recorder);
  auto out = f.model->forward(ids, mask, options);

  const double logits = max_diff(out.logits, ref.load("logits"), real);
  report(f, "logits max|diff|", logits);
  CHECK(logits <= kValueTol);

  double hidden = 0;
  size_t n_hidden = 0;
  for (; ref.find("hidden_states." + std::to_string(n_hidden)); ++n_hidden) {
    hidden = std::max(hidden, max_diff(out.hidden_states.at(n_hidden), ref.load("hidden_states." + std::to_string(n_hidden)), real));
  }
  CHECK(out.hidden_states.size() == n_hidden);
  report(f, "hidden states max|diff|", hidden);
  CHECK(hidden <= kValueTol);

  std::set<int> reference_layers;
  for (const auto& t : ref.tensors())
    if (t.name.rfind("router_logits.", 0) == 0) reference_layers.insert(std::stoi(t.name.substr(14)));
  std::set<int> our_layers;
  for (const auto& [layer, _] : recorder.events) our_layers.insert(layer);
  CHECK(our_layers == reference_layers);

  double router = 0, weights = 0;
  int64_t set_mismatches = 0;
  for (int layer : reference_layers) {
    const auto& e = recorder.events.at(layer);
    const auto l = std::to_string(layer);
    router = std::max(router, max_diff(e.router_logits, ref.load("router_logits." + l)));  // padded rows included
    // Indices compare as sets (glm4 does not sort); weights compare in expert order.
    const auto topk_idx = e.topk_idx.cpu();
    auto ours_idx = std::get<0>(topk_idx.sort(-1));
    auto ours_order = std::get<1>(topk_idx.sort(-1));
    auto ref_idx_raw = ref.load("topk_idx." + l);
    auto ref_idx = std::get<0>(ref_idx_raw.sort(-1));
    auto ref_order = std::get<1>(ref_idx_raw.sort(-1));
    set_mismatches += (ours_idx != ref_idx).any(-1).index({real}).sum().item<int64_t>();
    weights = std::max(weights, max_diff(e.topk_weight.cpu().gather(-1, ours_order),
                                         ref.load("topk_weight." + l).gather(-1, ref_order), real));
  }
  // The statistics pass (routing only) routes every MoE layer exactly as the full forward does.
  RoutingRecorder routing_only;
  esft::ForwardOptions statistics;
  statistics.routing_only = true;
  statistics.hooks.push_back(&routing_only);
  CHECK_FALSE(f.model->forward(ids, mask, statistics).logits.defined());
  REQUIRE(routing_only.events.size() == recorder.events.size());
  for (const auto& [layer, e] : recorder.events) {
    const auto& s = routing_only.events.at(layer);
    CHECK(at::equal(s.router_logits, e.router_logits));
    CHECK(at::equal(s.topk_idx, e.topk_idx));
    CHECK(at::equal(s.topk_weight, e.topk_weight));
  }

  report(f, "router logits max|diff|", router);
  report(f, "top-k weights max|diff|", weights);
  report(f, "top-k sets differing", static_cast<double>(set_mismatches));
  CHECK(router <= kValueTol);
  CHECK(weights <= kValueTol);
  CHECK(set_mismatches == 0);

  auto ce = esft::causal_lm_loss(out.logits, esft::labels_from_inputs(ids, mask)).item<double>();
  const double ce_ref = ref.load("ce_loss").item<double>();
  report(f, "ce loss rel diff", std::abs(ce - ce_ref) / std::abs(ce_ref));
  CHECK(std::abs(ce - ce_ref) <= kLossRelTol * std::abs(ce_ref));
  // The trainer's loss: from the final hidden states, a few positions at a time.
  const double chunked = esft::chunked_causal_lm_loss(out.final_hidden, f.model->output_embedding(),
                                                      esft::labels_from_inputs(ids, mask), 5).item<double>();
  report(f, "chunked ce loss rel diff", std::abs(chunked - ce_ref) / std::abs(ce_ref));
  CHECK(std::abs(chunked - ce_ref) <= kLossRelTol * std::abs(ce_ref));

  if (ref.find("aux_loss")) {
    REQUIRE(out.aux_loss.defined());
    const double aux = out.aux_loss.item<double>(), aux_ref = ref.load("aux_loss").item<double>();
    report(f, "aux loss rel diff", std::abs(aux - aux_ref) / std::abs(aux_ref));
    CHECK(std::abs(aux - aux_ref) <= kLossRelTol * std::abs(aux_ref));
  }
}

// A binding part's name in reports: "key", or "key[i]" for slice i of a stacked (fused) binding.
inline std::string part_name(const esft::CheckpointBinding& b, size_t i) {
  return b.is_stacked() ? b.key() + "[" + std::to_string(i) + "]" : b.key();
}

// Backward of the CE loss; every bound tensor part with a gradient is compared with grads.safetensors (a stacked
// binding's parts are the slices of the fused tensor along dim 0). Returns the parts that had a gradient, as
// "key" or "key[i]".
inline std::set<std::string> check_gradients(Family& f, const std::string& label) {
  const esft::SafetensorsFile ref(f.dir / "reference.safetensors");
  const esft::SafetensorsFile grads(f.dir / "grads.safetensors");
  const auto on_device = at::TensorOptions().device(test_support::test_device());
  auto ids = ref.load("input_ids", on_device);
  auto mask = ref.load("attention_mask", on_device);
  f.model->zero_grad();
  esft::ForwardOptions options;
  auto out = f.model->forward(ids, mask, options);
  esft::causal_lm_loss(out.logits, esft::labels_from_inputs(ids, mask)).backward();

  std::set<std::string> with_grad;
  double worst = 0;
  std::string worst_key;
  for (const auto& b : f.model->checkpoint_bindings()) {
    auto g = b.grad();
    if (!g.defined()) continue;
    g = g.cpu();
    REQUIRE_MESSAGE(grads.find(b.key()), "no reference gradient for ", b.key());
    auto expected_all = grads.load(b.key()).to(at::kDouble);
    const auto& parts = b.parts();
    for (size_t i = 0; i < parts.size(); ++i) {
      if (!parts[i].tensor.grad().defined()) continue;
      const auto name = part_name(b, i);
      with_grad.insert(name);
      auto ours = b.is_stacked() ? g[static_cast<int64_t>(i)] : g;
      auto expected = b.is_stacked() ? expected_all[static_cast<int64_t>(i)] : expected_all;
      // An expert no token reached has a zero reference gradient: then ours must be zero too.
      const double diff = (ours.to(at::kDouble) - expected).norm().item<double>();
      const double scale = expected.norm().item<double>();
      const double rel = scale > 0 ? diff / scale : diff;
      if (rel > worst) worst = rel, worst_key = name;
      CHECK_MESSAGE(rel <= kGradRelTol, name, " relative error ", rel);
    }
  }
  report(f, label + " worst grad rel err", worst);
  return with_grad;
}

inline void check_all_gradients_with_current_kernel(Family& f) {
  const esft::SafetensorsFile grads(f.dir / "grads.safetensors");
  std::set<std::string> keys_with_grad;
  for (const auto& name : check_gradients(f, "all trainable:")) keys_with_grad.insert(name.substr(0, name.find('[')));
  // Every reference gradient is ours, except those of buffers (glm4's e_score_correction_bias), which transformers
  // reports as zeros and we do not compute at all.
  for (const auto& t : grads.tensors()) {
    if (keys_with_grad.count(t.name)) continue;
    CHECK_MESSAGE(grads.load(t.name).abs().max().item<double>() == 0, "no gradient for ", t.name);
  }
  for (const auto& key : keys_with_grad) CHECK_MESSAGE(grads.find(key), "gradient for ", key, " has no reference");
}

inline void check_forward(Family& f) {
  with_each_kernel([&] { check_forward_with_current_kernel(f); });
}

inline void check_all_gradients(Family& f) {
  with_each_kernel([&] { check_all_gradients_with_current_kernel(f); });
}

// ESFT freezing: only experts {l % E, (l + 3) % E} of each MoE layer train. Their gradients must equal the
// fixture's, frozen experts get none, and they are not parameters at all (no optimizer state possible).
inline void check_frozen_gradients(Family& f) {
  std::set<std::string> trainable_parts;
  size_t parts_per_expert = 0;
  for (auto* layer : f.model->moe_layers()) {
    const int64_t E = layer->num_experts();
    layer->set_trainable_experts({layer->layer_index() % E, (layer->layer_index() + 3) % E});
    size_t parts = 0;
    for (const auto& b : layer->experts().bindings()) {
      for (size_t i = 0; i < b.parts().size(); ++i, ++parts) {
        if (b.parts()[i].trainable()) trainable_parts.insert(part_name(b, i));
      }
    }
    parts_per_expert = parts / static_cast<size_t>(E);
  }
  std::set<std::string> with_grad;
  with_each_kernel([&] { with_grad = check_gradients(f, "esft-frozen:"); });
  size_t expert_grads = 0, frozen_grads = 0;
  for (auto* layer : f.model->moe_layers()) {
    for (const auto& b : layer->experts().bindings()) {
      for (size_t i = 0; i < b.parts().size(); ++i) {
        const auto name = part_name(b, i);
        const bool has = with_grad.count(name) != 0;
        expert_grads += has;
        frozen_grads += has && !trainable_parts.count(name);
      }
    }
  }
  CHECK(frozen_grads == 0);
  CHECK(expert_grads == parts_per_expert * 2 * f.model->moe_layers().size());  // every tensor of 2 experts per layer
  int64_t bank_rows = 0, bank_tensors = 0;
  for (const auto& p : f.model->named_parameters()) {
    if (p.key().find(".experts.") != std::string::npos) bank_rows += p.value().size(0), ++bank_tensors;
  }
  CHECK(bank_rows == 2 * bank_tensors);  // each bank parameter holds the rows of the 2 trainable experts only
}

// The model in bfloat16 (weights, activations and gradients), the way GPU runs train, against the float32
// reference, with each expert kernel. bfloat16 keeps 8 significant bits, so the comparison is by relative error
// over whole tensors, with the tolerances above; routing may flip near-ties, which the tolerances absorb.
inline void check_bfloat16(Family& f) {
  const esft::SafetensorsFile ref(f.dir / "reference.safetensors");
  const esft::SafetensorsFile grads(f.dir / "grads.safetensors");
  const auto on_device = at::TensorOptions().device(test_support::test_device());
  auto ids = ref.load("input_ids", on_device);
  auto mask = ref.load("attention_mask", on_device);
  auto real = ref.load("attention_mask").reshape({-1}).to(at::kBool);
  const auto relative = [](const at::Tensor& ours, const at::Tensor& expected) {
    const auto e = expected.to(at::kDouble);
    const double scale = e.norm().item<double>();
    const double diff = (ours.cpu().to(at::kDouble) - e).norm().item<double>();
    return scale > 0 ? diff / scale : diff;
  };
  auto model = esft::load_model(*f.family, f.config, test_support::test_device(), at::kBFloat16);
  std::map<std::string, at::Tensor> loop_grads;
  for (const auto experts : {esft::nn::ExpertKernel::Loop, esft::nn::ExpertKernel::Grouped}) {
    esft::nn::set_expert_kernel(experts);
    INFO("kernels: ", kernel_label());
    model->zero_grad();
    auto out = model->forward(ids, mask, {});
    const auto logits = out.logits.reshape({-1, out.logits.size(-1)}).cpu().index({real});
    const auto expected = ref.load("logits").reshape({-1, out.logits.size(-1)}).index({real});
    const double logits_err = relative(logits, expected);
    auto loss = esft::causal_lm_loss(out.logits, esft::labels_from_inputs(ids, mask));
    const double ce = loss.item<double>(), ce_ref = ref.load("ce_loss").item<double>();
    loss.backward();
    double worst = 0, diff_sq = 0, norm_sq = 0;
    std::string worst_key;
    for (const auto& b : model->checkpoint_bindings()) {
      const auto g = b.grad();
      if (!g.defined()) continue;
      const auto expected = grads.load(b.key()).to(at::kDouble);
      const double err = relative(g, expected);
      if (err > worst) worst = err, worst_key = b.key();
      diff_sq += (g.cpu().to(at::kDouble) - expected).pow(2).sum().item<double>();
      norm_sq += expected.pow(2).sum().item<double>();
      if (experts == esft::nn::ExpertKernel::Loop) loop_grads[b.key()] = g.cpu();
      else CHECK_MESSAGE(relative(g, loop_grads.at(b.key())) <= kBf16RelTol, b.key(), ": the kernels disagree");
    }
    report(f, "bf16 logits rel err", logits_err);
    report(f, "bf16 ce loss rel diff", std::abs(ce - ce_ref) / std::abs(ce_ref));
    const double grad_err = std::sqrt(diff_sq / norm_sq);
    report(f, "bf16 grads rel err (all)", grad_err);
    report(f, "bf16 worst grad rel err (" + worst_key + ")", worst);
    CHECK(logits_err <= kBf16RelTol);
    CHECK(std::abs(ce - ce_ref) <= kBf16LossRelTol * std::abs(ce_ref));
    CHECK(grad_err <= kBf16GradRelTol);
  }
  esft::nn::set_expert_kernel(esft::nn::ExpertKernel::Auto);
}

inline void check_generation(Family& f) {
  const esft::SafetensorsFile ref(f.dir / "reference.safetensors");
  auto prompt = ref.load("generate.prompt", at::TensorOptions().device(test_support::test_device()));
  auto expected = ref.load("generate.output");
  auto output = esft::greedy_generate(*f.model, prompt, expected.size(1) - prompt.size(1), {}).cpu();
  CHECK(output.sizes() == expected.sizes());
  if (output.sizes() == expected.sizes()) CHECK(output.equal(expected));
}

}  // namespace parity
