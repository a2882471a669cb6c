#include "esft/pipeline/routing_collector.h"

#include <ATen/ATen.h>

#include <cstdio>

#include "esft/error.h"

namespace esft::pipeline {

RoutingCollector::RoutingCollector(std::string model_type, int64_t num_experts, int64_t top_k, bool keep_legacy_lines)
    : keep_legacy_(keep_legacy_lines) {
  stats_.model_type = std::move(model_type);
  stats_.num_experts = num_experts;
  stats_.top_k = top_k;
}

void RoutingCollector::on_route(const RouterEvent& event) {
  if (event.topk_idx.size(1) != stats_.top_k) {
    throw Error("routing collector: layer " + std::to_string(event.layer) + " routes to " +
                std::to_string(event.topk_idx.size(1)) + " experts, expected " + std::to_string(stats_.top_k));
  }
  if (keep_legacy_) count_on_host(event);
  else count_on_device(event);
}

void RoutingCollector::count_on_device(const RouterEvent& event) {
  const auto& idx = event.topk_idx;
  const auto real = event.token_mask.defined() ? event.token_mask.to(idx.device(), at::kBool)
                                               : at::ones({idx.size(0)}, idx.options().dtype(at::kBool));
  // Each real token's k choices; a choice of a trash can (Select-MoE: ids from E on) is no expert's token.
  const auto on_expert = idx.reshape({-1}).lt(stats_.num_experts);
  const auto chosen = real.unsqueeze(1).expand_as(idx).reshape({-1}).logical_and(on_expert);
  const auto experts = idx.reshape({-1}).clamp_max(stats_.num_experts - 1);
  auto& d = pending_[event.layer];
  if (!d.counts.defined()) {
    d.tokens = at::zeros({}, idx.options().dtype(at::kLong));
    d.counts = at::zeros({stats_.num_experts}, idx.options().dtype(at::kLong));
    d.gates = at::zeros({stats_.num_experts}, idx.options().dtype(at::kDouble));
  }
  d.tokens.add_(real.sum());
  d.counts.index_add_(0, experts, chosen.to(at::kLong));
  // Detached: sums kept across batches must not grow an autograd graph when a caller routes with gradients on.
  d.gates.index_add_(0, experts, event.topk_weight.detach().reshape({-1}).to(at::kDouble) * chosen);
}

RoutingStats RoutingCollector::pending_part() const {
  RoutingStats part;
  part.model_type = stats_.model_type;
  part.num_experts = stats_.num_experts;
  part.top_k = stats_.top_k;
  const int64_t E = stats_.num_experts;
  for (auto& [layer, d] : pending_) {
    auto& r = part.layers[layer];
    r.tokens = d.tokens.item<int64_t>();
    const auto counts = d.counts.cpu(), gates = d.gates.cpu();
    r.token_count.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + E);
    r.gate_sum.assign(gates.data_ptr<double>(), gates.data_ptr<double>() + E);
  }
  pending_.clear();
  for (auto& [layer, r] : host_pending_) part.layers[layer] = std::move(r);
  host_pending_.clear();
  return part;
}

namespace {

void add_into(RoutingStats& totals, const RoutingStats& part) {
  const int64_t E = totals.num_experts;
  for (const auto& [layer, p] : part.layers) {
    auto& r = totals.layers[layer];
    if (r.token_count.empty()) r.token_count.assign(E, 0), r.gate_sum.assign(E, 0.0);
    r.tokens += p.tokens;
    for (int64_t e = 0; e < E; ++e) {
      r.token_count[e] += p.token_count[e];
      r.gate_sum[e] += p.gate_sum[e];
    }
  }
}

}  // namespace

void RoutingCollector::add_part(const RoutingStats& part) { add_into(stats_, part); }

RoutingStats RoutingCollector::take_part() { return pending_part(); }

void RoutingCollector::flush() const { add_into(stats_, pending_part()); }

void RoutingCollector::count_on_host(const RouterEvent& event) {
  // Every token's choice goes into a log line: one host copy per layer and forward.
  auto idx = event.topk_idx.to(at::kCPU).to(at::kLong).contiguous();
  auto weight = event.topk_weight.to(at::kCPU).to(at::kDouble).contiguous();
  at::Tensor mask = event.token_mask.defined() ? event.token_mask.to(at::kCPU).to(at::kBool).contiguous()
                                               : at::ones({idx.size(0)}, at::kBool);
  const int64_t N = idx.size(0), k = idx.size(1), E = stats_.num_experts;
  auto& r = host_pending_[event.layer];
  if (r.token_count.empty()) r.token_count.assign(E, 0), r.gate_sum.assign(E, 0.0);
  const auto* ids = idx.data_ptr<int64_t>();
  const auto* ws = weight.data_ptr<double>();
  const auto* real = mask.data_ptr<bool>();
  const int64_t per_row = tokens_per_row_ > 0 ? tokens_per_row_ : N;
  std::string id_text, weight_text;
  for (int64_t n = 0; n < N; ++n) {
    if (real[n]) {
      ++r.tokens;
      for (int64_t j = 0; j < k; ++j) {
        const int64_t e = ids[n * k + j];
        if (e >= E) continue;  // a trash can (Select-MoE), no expert
        r.token_count[e] += 1;
        r.gate_sum[e] += ws[n * k + j];
        if (keep_legacy_) {
          char w[32];
          std::snprintf(w, sizeof w, "%.4f", ws[n * k + j]);
          id_text += (id_text.empty() ? "" : "\t") + std::to_string(e);
          weight_text += (weight_text.empty() ? "" : "\t") + std::string(w);
        }
      }
    }
    if (keep_legacy_ && (n + 1) % per_row == 0 && !id_text.empty()) {
      legacy_[event.layer].push_back(id_text + "\t\t" + weight_text);
      id_text.clear(), weight_text.clear();
    }
  }
}

int64_t RoutingCollector::tokens() const {
  flush();
  return stats_.layers.empty() ? 0 : stats_.layers.begin()->second.tokens;
}

RoutingStats RoutingCollector::stats() const {
  flush();
  RoutingStats s = stats_;
  s.tokens = tokens();
  return s;
}

}  // namespace esft::pipeline
