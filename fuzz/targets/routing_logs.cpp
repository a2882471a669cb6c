// The ESFT reference's routing logs: `expert_weights_{layer}.txt`, a line per sequence with expert ids, a literal
// "\t\t", then weights. The input is layer 1's log (top-2 of 8 experts), then selection over what was read.
#include "esft/pipeline/expert_selection.h"
#include "esft/pipeline/routing_stats.h"
#include "fuzz_target.h"

ESFT_FUZZ_TARGET(routing_logs) {
  const auto path = esft::fuzz::write_scratch_file("logs/expert_weights_1.txt", data);
  esft::fuzz::expect_only_clean_errors([&] {
    const auto stats = esft::pipeline::read_legacy_logs(path.parent_path(), 2, 8);
    esft::pipeline::select_experts(stats, esft::pipeline::ScoreFunction::Gate, 0.5);
  });
}
