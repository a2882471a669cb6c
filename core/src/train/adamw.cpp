#include "esft/train/adamw.h"

#include <ATen/ATen.h>

#include <cmath>
#include <vector>

#include "esft/error.h"

namespace esft::train {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWSettings settings) : settings_(settings) {
  at::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    Slot s{name, p, {}, {}, {}, {}, p.dim() >= 2};
    const auto f32 = p.options().dtype(at::kFloat);
    s.step = at::zeros({}, f32);
    s.exp_avg = at::zeros(p.sizes(), f32);
    s.exp_avg_sq = at::zeros(p.sizes(), f32);
    if (p.scalar_type() != at::kFloat) s.master = p.detach().to(at::kFloat).clone();
    slots_.push_back(std::move(s));
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++steps_;
  // One pass over each tensor in LibTorch's fused kernel (the one transformers' Trainer picks by default,
  // adamw_torch_fused): the unfused formula reads and writes every tensor about ten times and allocates two
  // parameter-sized temporaries per step. Decayed and undecayed tensors are two calls; a bfloat16 parameter is
  // updated through its float32 master copy.
  for (const bool decay : {true, false}) {
    std::vector<at::Tensor> params, grads, exp_avgs, exp_avg_sqs, steps;
    for (auto& s : slots_) {
      const auto& g = s.param.grad();
      if (s.decay != decay || !g.defined()) continue;
      params.push_back(s.master.defined() ? s.master : s.param);
      grads.push_back(g.to(at::kFloat).contiguous());
      exp_avgs.push_back(s.exp_avg);
      exp_avg_sqs.push_back(s.exp_avg_sq);
      s.step.fill_(static_cast<double>(steps_));
      steps.push_back(s.step);
    }
    if (params.empty()) continue;
    at::_fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, /*max_exp_avg_sqs=*/{}, steps, lr, settings_.beta1,
                      settings_.beta2, decay ? settings_.weight_decay : 0.0, settings_.eps, /*amsgrad=*/false,
                      /*maximize=*/false);
  }
  for (auto& s : slots_)
    if (s.master.defined() && s.param.grad().defined()) s.param.copy_(s.master);
}

NamedTensors AdamW::state() const {
  NamedTensors out;
  for (const auto& s : slots_) {
    out.emplace_back("exp_avg." + s.name, s.exp_avg);
    out.emplace_back("exp_avg_sq." + s.name, s.exp_avg_sq);
    if (s.master.defined()) out.emplace_back("master." + s.name, s.master);
  }
  return out;
}

void AdamW::load_state(const SafetensorsFile& file, int64_t steps, const LocalPart& local_part) {
  at::NoGradGuard no_grad;
  auto restore = [&](at::Tensor& target, const std::string& name, const std::string& param) {
    const auto* info = file.find(name);
    if (!info) throw Error(file.path().string() + ": optimizer state '" + name + "' is missing");
    auto value = local_part ? local_part(param, file.view(name)) : file.view(name);
    if (value.sizes() != target.sizes()) throw Error(file.path().string() + ": optimizer state '" + name + "' has the wrong shape");
    target.copy_(value);
  };
  for (auto& s : slots_) {
    restore(s.exp_avg, "exp_avg." + s.name, s.name);
    restore(s.exp_avg_sq, "exp_avg_sq." + s.name, s.name);
    if (s.master.defined()) restore(s.master, "master." + s.name, s.name);
  }
  steps_ = steps;
}

uint64_t AdamW::state_bytes() const {
  uint64_t n = 0;
  for (const auto& s : slots_) {
    n += s.exp_avg.nbytes() + s.exp_avg_sq.nbytes();
    if (s.master.defined()) n += s.master.nbytes();
  }
  return n;
}

double grad_norm_squared(const std::vector<at::Tensor>& params) {
  at::NoGradGuard no_grad;
  double sum = 0;
  for (const auto& p : params)
    if (p.grad().defined()) sum += p.grad().to(at::kDouble).square().sum().item<double>();
  return sum;
}

void clip_grads_to(const std::vector<at::Tensor>& params, double max_norm, double norm) {
  if (max_norm <= 0) return;
  at::NoGradGuard no_grad;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1) return;
  for (const auto& p : params)
    if (p.grad().defined()) p.mutable_grad().mul_(coef);
}

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().to(at::kFloat).norm());
  if (norms.empty()) return 0;
  const double total = at::stack(norms).norm().item<double>();
  clip_grads_to(params, max_norm, total);
  return total;
}

}  // namespace esft::train
