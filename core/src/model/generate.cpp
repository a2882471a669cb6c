#include "esft/model/generate.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>

#include "esft/error.h"

namespace esft {

at::Tensor greedy_generate(MoECausalLM& model, const at::Tensor& prompt, int64_t max_new_tokens,
                           const std::vector<int64_t>& stop_ids, const std::function<void(int64_t)>& on_token) {
  at::NoGradGuard no_grad;
  auto cache = model.make_cache();
  ForwardOptions options;
  options.logits = LogitsMode::Last;
  options.cache = cache.get();
  std::vector<at::Tensor> pieces{prompt};
  auto next_input = prompt;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    auto out = model.forward(next_input, {}, options);
    auto next = out.logits.select(1, 0).argmax(-1, /*keepdim=*/true);  // [1, 1]
    pieces.push_back(next);
    const int64_t token = next.item<int64_t>();
    if (on_token) on_token(token);
    if (std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end()) break;
    next_input = next;
  }
  return at::cat(pieces, 1);
}

std::vector<GenerationResult> generate_batch(MoECausalLM& model, const std::vector<GenerationRequest>& requests,
                                             int64_t pad_id, const std::function<bool(size_t, int64_t)>& on_token) {
  const size_t B = requests.size();
  std::vector<GenerationResult> results(B);
  if (B == 0) return results;
  int64_t longest = 0;
  bool padded = false;
  for (size_t i = 0; i < B; ++i) {
    const auto& r = requests[i];
    if (r.prompt.empty()) throw Error("request " + std::to_string(i) + " has an empty prompt");
    if (r.max_new_tokens < 0) throw Error("request " + std::to_string(i) + ": max_new_tokens must be >= 0");
    r.sampling.validate();
    padded = padded || (i > 0 && static_cast<int64_t>(r.prompt.size()) != longest);
    longest = std::max<int64_t>(longest, static_cast<int64_t>(r.prompt.size()));
  }
  at::NoGradGuard no_grad;
  const auto device = model.output_embedding().device();
  const auto long_options = at::TensorOptions().dtype(at::kLong);
  // Left padding: every row's last prompt token is in the last column, so one step feeds one new column.
  std::vector<int64_t> ids(B * static_cast<size_t>(longest), pad_id), mask(B * static_cast<size_t>(longest), 0);
  std::vector<int64_t> next_position(B);
  for (size_t i = 0; i < B; ++i) {
    const auto& p = requests[i].prompt;
    const size_t offset = i * static_cast<size_t>(longest) + static_cast<size_t>(longest) - p.size();
    std::copy(p.begin(), p.end(), ids.begin() + static_cast<std::ptrdiff_t>(offset));
    std::fill_n(mask.begin() + static_cast<std::ptrdiff_t>(offset), p.size(), 1);
    next_position[i] = static_cast<int64_t>(p.size());
  }
  auto input = at::tensor(ids, long_options).view({static_cast<int64_t>(B), longest}).to(device);
  at::Tensor attention_mask, positions;
  if (padded) {  // without padding, exactly greedy_generate's forward (no mask, positions from the cache)
    attention_mask = at::tensor(mask, long_options).view({static_cast<int64_t>(B), longest}).to(device);
    positions = (attention_mask.cumsum(1) - 1).clamp_min(0);
  }

  auto cache = model.make_cache();
  ForwardOptions options;
  options.logits = LogitsMode::Last;
  options.cache = cache.get();
  std::vector<at::Generator> generators;
  std::vector<std::vector<int64_t>> seen;
  std::vector<bool> running(B);
  for (size_t i = 0; i < B; ++i) {
    generators.push_back(make_sampling_generator(requests[i].sampling.seed));
    seen.push_back(requests[i].prompt);
    running[i] = requests[i].max_new_tokens > 0;
  }
  while (std::find(running.begin(), running.end(), true) != running.end()) {
    options.position_ids = positions;
    const auto logits = model.forward(input, attention_mask, options).logits.select(1, 0);  // [B, V]
    std::vector<int64_t> next(B, pad_id);
    for (size_t i = 0; i < B; ++i) {
      if (!running[i]) continue;
      const auto& r = requests[i];
      const int64_t token = choose_token(logits[static_cast<int64_t>(i)], r.sampling, seen[i], generators[i]);
      next[i] = token;
      seen[i].push_back(token);
      auto& out = results[i];
      out.tokens.push_back(token);
      const bool go_on = on_token ? on_token(i, token) : true;
      out.stopped = std::find(r.stop_ids.begin(), r.stop_ids.end(), token) != r.stop_ids.end();
      if (out.stopped || !go_on || static_cast<int64_t>(out.tokens.size()) >= r.max_new_tokens) running[i] = false;
    }
    if (std::find(running.begin(), running.end(), true) == running.end()) break;
    input = at::tensor(next, long_options).view({static_cast<int64_t>(B), 1}).to(device);
    if (padded) {
      attention_mask = at::cat({attention_mask, at::ones({static_cast<int64_t>(B), 1}, attention_mask.options())}, 1);
      positions = at::tensor(next_position, long_options).view({static_cast<int64_t>(B), 1}).to(device);
      for (auto& p : next_position) ++p;
    }
  }
  return results;
}

}  // namespace esft
