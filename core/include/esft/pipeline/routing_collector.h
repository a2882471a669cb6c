#pragma once
// The RouterHook that gathers ESFT routing statistics during forward passes: per MoE layer and expert, how many
// real (non-padding) tokens chose it and the sum of the weights it was applied with. Optionally it also keeps the
// reference's legacy log lines (one per sequence).
//
// Without legacy lines the sums stay on the model's device until they are read (tokens(), stats()), so a forward
// pass on a GPU never waits for the host inside its layer loop; legacy lines need every token's choice on the host.
//
// The totals are the sums of each reading's part (the forwards since the previous reading), added in order. A run
// over several processes takes each forward's part (take_part) and adds every rank's parts in the order one process
// would have made them (add_part): the same totals, bit for bit.
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
  // The sums of the forwards since the last reading, removed from what tokens() and stats() will add.
  RoutingStats take_part();
  // Adds a part (of this or another process) into the totals.
  void add_part(const RoutingStats& part);
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
  RoutingStats pending_part() const;  // the pending sums on the host (one copy per layer), cleared
  void flush() const;                 // adds the pending sums into stats_

  mutable RoutingStats stats_;
  mutable std::map<int, DeviceSums> pending_;
  mutable std::map<int, LayerRouting> host_pending_;  // legacy lines: the host's sums since the last reading
  bool keep_legacy_;
  int64_t rows_ = 1, tokens_per_row_ = 0;
  std::map<int, std::vector<std::string>> legacy_;
};

}  // namespace esft::pipeline
