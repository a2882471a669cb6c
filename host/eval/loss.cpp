#include <cmath>
#include <iomanip>
#include <iostream>

#include "esft/error.h"
#include "esft/train/trainer.h"
#include "eval_modes.h"

namespace esft::host::eval {

namespace fs = std::filesystem;

int run_loss(const po::variables_map& vm, LoadedModel& m, const data::SampleEncoder& encoder,
             const fs::path& data_path, int64_t batch_size, int64_t seq_length) {
  auto samples = data::read_samples(data_path, encoder);
  data::keep_last_tokens(samples, seq_length);
  data::check_token_ids(samples, m.config.vocab_size, encoder.pad_id());
  const auto rows = train::make_rows(samples, /*packing=*/false, seq_length, encoder.pad_id(), 0, 0);
  const auto [loss, label_tokens] = train::mean_loss(*m.model, rows, batch_size, encoder.pad_id(), m.device);
  if (label_tokens == 0) throw Error(data_path.string() + " has no labelled tokens");
  std::cout << "loss " << std::fixed << std::setprecision(4) << loss << "  perplexity " << std::exp(loss) << "  ("
            << samples.size() << " samples, " << label_tokens << " labelled tokens)\n";
  write_result(vm, {{"metric", "loss"}, {"value", loss}, {"perplexity", std::exp(loss)},
                    {"records", samples.size()}, {"label_tokens", label_tokens}});
  return 0;
}

}  // namespace esft::host::eval
