// expert_config.json (the ESFT reference's format: {"experts": {layer: [ids]}, "shared_experts", ...}), read and
// written back.
#include "esft/pipeline/expert_selection.h"
#include "fuzz_target.h"

ESFT_FUZZ_TARGET(expert_config) {
  const auto path = esft::fuzz::write_scratch_file("expert_config.json", data);
  esft::fuzz::expect_only_clean_errors([&] {
    const auto config = esft::pipeline::ExpertConfig::load(path);
    config.to_json().dump();
  });
}
