#include "esft/train/adamw.h"

#include <ATen/ATen.h>

#include <cmath>

#include "esft/error.h"

namespace esft::train {

AdamW::AdamW(std::vector<std::pair<std::string, at::Tensor>> params, AdamWSettings settings) : settings_(settings) {
  at::NoGradGuard no_grad;
  for (auto& [name, p] : params) {
    Slot s{name, p, {}, {}, {}, p.dim() >= 2};
    const auto f32 = p.options().dtype(at::kFloat);
    s.exp_avg = at::zeros(p.sizes(), f32);
    s.exp_avg_sq = at::zeros(p.sizes(), f32);
    if (p.scalar_type() != at::kFloat) s.master = p.detach().to(at::kFloat).clone();
    slots_.push_back(std::move(s));
  }
}

void AdamW::step(double lr) {
  at::NoGradGuard no_grad;
  ++steps_;
  const double b1 = settings_.beta1, b2 = settings_.beta2;
  const double bias_correction1 = 1 - std::pow(b1, static_cast<double>(steps_));
  const double bias_correction2_sqrt = std::sqrt(1 - std::pow(b2, static_cast<double>(steps_)));
  const double step_size = lr / bias_correction1;
  for (auto& s : slots_) {
    const auto& g = s.param.grad();
    if (!g.defined()) continue;
    auto grad = g.to(at::kFloat);
    auto& w = s.master.defined() ? s.master : s.param;
    if (s.decay && settings_.weight_decay != 0) w.mul_(1 - lr * settings_.weight_decay);
    s.exp_avg.lerp_(grad, 1 - b1);
    s.exp_avg_sq.mul_(b2).addcmul_(grad, grad, 1 - b2);
    auto denom = (s.exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(settings_.eps);
    w.addcdiv_(s.exp_avg, denom, -step_size);
    if (s.master.defined()) s.param.copy_(s.master);
  }
}

NamedTensors AdamW::state() const {
  NamedTensors out;
  for (const auto& s : slots_) {
    out.emplace_back("exp_avg." + s.name, cpu_copy(s.exp_avg));
    out.emplace_back("exp_avg_sq." + s.name, cpu_copy(s.exp_avg_sq));
    if (s.master.defined()) out.emplace_back("master." + s.name, cpu_copy(s.master));
  }
  return out;
}

void AdamW::load_state(const SafetensorsFile& file, int64_t steps) {
  at::NoGradGuard no_grad;
  auto restore = [&](at::Tensor& target, const std::string& name) {
    const auto* info = file.find(name);
    if (!info) throw Error(file.path().string() + ": optimizer state '" + name + "' is missing");
    auto value = file.view(name);
    if (value.sizes() != target.sizes()) throw Error(file.path().string() + ": optimizer state '" + name + "' has the wrong shape");
    target.copy_(value);
  };
  for (auto& s : slots_) {
    restore(s.exp_avg, "exp_avg." + s.name);
    restore(s.exp_avg_sq, "exp_avg_sq." + s.name);
    if (s.master.defined()) restore(s.master, "master." + s.name);
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

double clip_grad_norm(const std::vector<at::Tensor>& params, double max_norm) {
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> norms;
  for (const auto& p : params)
    if (p.grad().defined()) norms.push_back(p.grad().to(at::kFloat).norm());
  if (norms.empty()) return 0;
  const double total = at::stack(norms).norm().item<double>();
  if (max_norm > 0) {
    const double coef = max_norm / (total + 1e-6);
    if (coef < 1) {
      for (const auto& p : params)
        if (p.grad().defined()) p.mutable_grad().mul_(coef);
    }
  }
  return total;
}

}  // namespace esft::train
