#include "esft/model/generate.h"

#include <ATen/ATen.h>

#include <algorithm>

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

}  // namespace esft
