// Pipeline files (`esft-host run FILE.toml`) and training settings (`train --config FILE.toml`): TOML syntax, known
// sections and keys, types, ranges, sweep lists.
#include "esft/train/train_options.h"
#include "fuzz_target.h"
#include "run/plan.h"

ESFT_FUZZ_TARGET(pipeline_toml) {
  const auto path = esft::fuzz::write_scratch_file("pipeline.toml", data);
  esft::fuzz::expect_only_clean_errors([&] { esft::host::run::load_plan(path, {}); });
  esft::fuzz::expect_only_clean_errors(
      [&] { esft::train::TrainOptions::parse_toml(std::string(data), path.string(), {}); });
}
