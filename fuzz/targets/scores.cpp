// scores.json (routing statistics), then expert selection over it with both score functions.
#include "esft/pipeline/expert_selection.h"
#include "esft/pipeline/routing_stats.h"
#include "fuzz_target.h"

ESFT_FUZZ_TARGET(scores) {
  const auto path = esft::fuzz::write_scratch_file("scores.json", data);
  esft::fuzz::expect_only_clean_errors([&] {
    const auto stats = esft::pipeline::load_routing_stats(path);
    for (const auto function : {esft::pipeline::ScoreFunction::Token, esft::pipeline::ScoreFunction::Gate}) {
      esft::pipeline::select_experts(stats, function, 0.5).to_json().dump();
    }
  });
}
