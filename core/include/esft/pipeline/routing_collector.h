#pragma once
// The RouterHook that gathers ESFT routing statistics during forward passes: per MoE layer and expert, how many
// real (non-padding) tokens chose it and the sum of the weights it was applied with. Optionally it also keeps the
// reference's legacy log lines (one per sequence).
//
// Without legacy lines the sums stay on the model's device until they are read (tokens(), stats()), so a forward
// pass on a GPU never waits for the host inside its layer loop; legacy lines need every token's choice on the host.
#include <ATen/core/Tensor.h>

#include <map>
#include <string>
#include <vector>

#include "esft/model/router_event.h"
#include "esft/pipeline/routing_stats.h"

namespace esft::pipeline {

class RoutingCollector : public RouterHook {
 public:
  RoutingCollector(std::string model_type, int64_t num_experts, int64_t top_k, bool keep_legacy_lines = false);

  // The batch shape of the next forward ([rows, tokens per row]), for legacy lines split per sequence.
  void set_batch_shape(int64_t rows, int64_t tokens_per_row) { rows_ = rows, tokens_per_row_ = tokens_per_row; }
  void on_route(const RouterEvent& event) override;

  // Tokens counted so far: those of the first MoE layer seen. Reading waits for the device.
  int64_t tokens() const;
  RoutingStats stats() const;
  // layer -> lines of expert_weights_{layer}.txt
  const std::map<int, std::vector<std::string>>& legacy_lines() const { return legacy_; }

 private:
  // One layer's sums on the device, not yet added into stats_.
  struct DeviceSums {
    at::Tensor tokens;  // 0-d int64
    at::Tensor counts;  // [E] int64
    at::Tensor gates;   // [E] float64
  };
  void count_on_device(const RouterEvent& event);
  void count_on_host(const RouterEvent& event);
  void flush() const;  // adds the device sums into stats_ (one copy to the host per layer)

  mutable RoutingStats stats_;
  mutable std::map<int, DeviceSums> pending_;
  bool keep_legacy_;
  int64_t rows_ = 1, tokens_per_row_ = 0;
  std::map<int, std::vector<std::string>> legacy_;
};

}  // namespace esft::pipeline
