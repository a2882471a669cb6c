#include "esft/testing/parity.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "esft/error.h"
#include "esft/io/safetensors.h"
#include "esft/io/weights.h"
#include "esft/model/generate.h"
#include "esft/model/losses.h"
#include "esft/model/router_event.h"

namespace esft::testing {

namespace fs = std::filesystem;

namespace {

// max |a - b| in float64 on the CPU, over the rows [B*T] that `rows` selects (all rows when undefined).
double max_abs_diff(const at::Tensor& a, const at::Tensor& b, const at::Tensor& rows = {}) {
  if (a.sizes() != b.sizes()) return INFINITY;
  auto d = (a.to(at::kCPU, at::kDouble) - b.to(at::kCPU, at::kDouble)).abs();
  if (rows.defined()) d = d.reshape({rows.size(0), -1}).index({rows});
  return d.numel() ? d.max().item<double>() : 0.0;
}

double relative(double ours, double expected) { return std::abs(ours - expected) / std::abs(expected); }

class RoutingRecorder : public RouterHook {
 public:
  void on_route(const RouterEvent& e) override { events[e.layer] = e; }
  std::map<int, RouterEvent> events;
};

}  // namespace

bool ParityReport::passed() const {
  for (const auto& f : figures)
    if (!f.passed()) return false;
  return problems.empty();
}

std::string ParityReport::table() const {
  std::string out;
  char line[256];
  for (const auto& f : figures) {
    std::snprintf(line, sizeof line, "  %-34s %10.3e  (tolerance %.0e)  %s\n", f.what.c_str(), f.value, f.tolerance,
                  f.passed() ? "ok" : "FAIL");
    out += line;
  }
  for (const auto& p : problems) out += "  problem: " + p + "\n";
  return out;
}

void require_fixture(const fs::path& fixture_dir) {
  for (const char* part : {"model/config.json", "reference.safetensors", "grads.safetensors"}) {
    if (!fs::exists(fixture_dir / part)) {
      throw Error("fixture " + fixture_dir.string() + " has no " + part + " (make one with scripts/make-fixtures.py)");
    }
  }
}

ParityReport compare_with_fixture(const ModelFamily& family, const fs::path& fixture_dir, const c10::Device& device) {
  require_fixture(fixture_dir);
  ParityReport report;
  report.fixture = fixture_dir;
  report.family = family.name();
  auto figure = [&](std::string what, double value, double tolerance) {
    report.figures.push_back({std::move(what), value, tolerance});
  };

  const auto config = ModelConfig::load(fixture_dir / "model");
  auto model = load_model(family, config, device, at::kFloat);
  {
    const auto checkpoint = Checkpoint::open(fixture_dir / "model");
    const auto diff = compare_keys(model->checkpoint_bindings(), checkpoint,
                                   [&](const std::string& key) { return model->skips_checkpoint_key(key); });
    for (const auto& key : diff.missing) report.problems.push_back("bound but not in the checkpoint: " + key);
    for (const auto& key : diff.unexpected) report.problems.push_back("in the checkpoint but not bound: " + key);
  }

  const SafetensorsFile ref(fixture_dir / "reference.safetensors");
  const auto on_device = at::TensorOptions().device(device);
  const auto ids = ref.load("input_ids", on_device);
  const auto mask = ref.load("attention_mask", on_device);
  const auto real = ref.load("attention_mask").reshape({-1}).to(at::kBool);  // rows of non-padded positions

  // Forward: logits, hidden states, routing, losses.
  {
    at::NoGradGuard no_grad;
    RoutingRecorder recorder;
    ForwardOptions options;
    options.hidden_states = true;
    options.aux_loss = ref.find("aux_loss") != nullptr;
    options.hooks.push_back(&recorder);
    const auto out = model->forward(ids, mask, options);
    figure("logits max|diff|", max_abs_diff(out.logits, ref.load("logits"), real), kValueTol);

    // hidden_states.0 is the embedding output, .i the output of decoder layer i-1, the last the final norm's: the
    // first one off says where the model starts to differ.
    double hidden = 0;
    size_t n_hidden = 0;
    std::string first_off;
    for (; ref.find("hidden_states." + std::to_string(n_hidden)); ++n_hidden) {
      if (n_hidden >= out.hidden_states.size()) break;
      const double d = max_abs_diff(out.hidden_states[n_hidden], ref.load("hidden_states." + std::to_string(n_hidden)), real);
      if (d > kValueTol && first_off.empty()) {
        first_off = n_hidden == 0 ? "the embedding output" : "the output of decoder layer " + std::to_string(n_hidden - 1);
        if (!ref.find("hidden_states." + std::to_string(n_hidden + 1))) first_off = "the final norm's output";
      }
      hidden = std::max(hidden, d);
    }
    if (out.hidden_states.size() != n_hidden || ref.find("hidden_states." + std::to_string(n_hidden))) {
      report.problems.push_back(std::to_string(out.hidden_states.size()) + " hidden states, the fixture has more or fewer");
    }
    if (!first_off.empty()) report.problems.push_back("hidden states first differ at " + first_off);
    figure("hidden states max|diff|", hidden, kValueTol);

    std::set<int> reference_layers, our_layers;
    for (const auto& t : ref.tensors())
      if (t.name.rfind("router_logits.", 0) == 0) reference_layers.insert(std::stoi(t.name.substr(14)));
    for (const auto& entry : recorder.events) our_layers.insert(entry.first);
    if (our_layers != reference_layers) {
      report.problems.push_back("MoE layers differ: the model routes in " + std::to_string(our_layers.size()) +
                                " layers, the fixture in " + std::to_string(reference_layers.size()));
    } else if (!reference_layers.empty()) {
      double router = 0, weights = 0;
      int64_t other_experts = 0;
      for (int layer : reference_layers) {
        const auto& e = recorder.events.at(layer);
        const auto l = std::to_string(layer);
        router = std::max(router, max_abs_diff(e.router_logits, ref.load("router_logits." + l)));
        // Expert sets compare sorted (some families do not sort their top-k); weights follow their experts.
        const auto ours = e.topk_idx.cpu().sort(-1);
        const auto theirs = ref.load("topk_idx." + l).sort(-1);
        other_experts += (std::get<0>(ours) != std::get<0>(theirs)).any(-1).index({real}).sum().item<int64_t>();
        weights = std::max(weights, max_abs_diff(e.topk_weight.cpu().gather(-1, std::get<1>(ours)),
                                                 ref.load("topk_weight." + l).gather(-1, std::get<1>(theirs)), real));
      }
      figure("router logits max|diff|", router, kValueTol);
      figure("top-k weights max|diff|", weights, kValueTol);
      figure("tokens routed to other experts", static_cast<double>(other_experts), 0);
    }

    const double ce = causal_lm_loss(out.logits, labels_from_inputs(ids, mask)).item<double>();
    figure("ce loss relative diff", relative(ce, ref.load("ce_loss").item<double>()), kLossRelTol);
    if (ref.find("aux_loss")) {
      if (!out.aux_loss.defined()) report.problems.push_back("the fixture has a load-balancing loss, the model none");
      else figure("aux loss relative diff", relative(out.aux_loss.item<double>(), ref.load("aux_loss").item<double>()), kLossRelTol);
    }
  }

  // Gradients of the cross-entropy, per checkpoint tensor.
  {
    const SafetensorsFile grads(fixture_dir / "grads.safetensors");
    model->zero_grad();
    const auto out = model->forward(ids, mask, ForwardOptions{});
    causal_lm_loss(out.logits, labels_from_inputs(ids, mask)).backward();
    double worst = 0;
    std::string worst_key;
    std::set<std::string> ours;
    for (const auto& b : model->checkpoint_bindings()) {
      const auto g = b.grad();
      if (!g.defined()) continue;
      ours.insert(b.key());
      if (!grads.find(b.key())) {
        report.problems.push_back("no reference gradient for " + b.key());
        continue;
      }
      const auto expected = grads.load(b.key()).to(at::kDouble);
      if (expected.sizes() != g.sizes()) {
        report.problems.push_back("gradient of " + b.key() + " has another shape than the reference's");
        continue;
      }
      const double diff = (g.to(at::kCPU, at::kDouble) - expected).norm().item<double>();
      const double scale = expected.norm().item<double>();
      const double error = scale > 0 ? diff / scale : diff;  // an unreached expert: both zero
      if (error > worst || worst_key.empty()) worst = error, worst_key = b.key();
    }
    // Reference gradients we have none for must be zeros (buffers: transformers reports them as zeros).
    for (const auto& t : grads.tensors()) {
      if (!ours.count(t.name) && grads.load(t.name).abs().max().item<double>() != 0) {
        report.problems.push_back("no gradient for " + t.name);
      }
    }
    figure("worst gradient relative error", worst, kGradRelTol);
    if (worst > kGradRelTol) report.problems.push_back("the worst gradient is that of " + worst_key);
  }

  // Greedy generation with the KV cache: the very same tokens.
  {
    at::NoGradGuard no_grad;
    const auto prompt = ref.load("generate.prompt", on_device);
    const auto expected = ref.load("generate.output");
    const auto output = greedy_generate(*model, prompt, expected.size(1) - prompt.size(1), {}).cpu();
    if (output.sizes() != expected.sizes()) {
      report.problems.push_back("greedy generation stopped after " + std::to_string(output.size(1) - prompt.size(1)) +
                                " tokens, transformers' after " + std::to_string(expected.size(1) - prompt.size(1)));
    } else {
      figure("greedy tokens differing", static_cast<double>((output != expected).sum().item<int64_t>()), 0);
    }
  }
  return report;
}

}  // namespace esft::testing
