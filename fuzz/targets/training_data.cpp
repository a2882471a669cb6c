// A training file in JSON lines ({"messages"}, {"prompt","completion"}, {"text"}), encoded as the trainer encodes it:
// the bundled tiny tokenizer and Qwen3's chat format, labels and all.
#include "esft/data/samples.h"
#include "esft/model/chat_format.h"
#include "esft/tokenizer/tokenizer.h"
#include "fuzz_target.h"
#include "plugin_loader.h"

ESFT_FUZZ_TARGET(training_data) {
  static const auto family =
      esft::host::PluginLoader(std::vector<std::filesystem::path>{ESFT_BIN_DIR}).load("qwen3_moe");
  static const auto tokenizer_dir = esft::fuzz::source_dir() / "examples" / "tiny-tokenizer";
  static const auto tokenizer = esft::tok::Tokenizer::load(tokenizer_dir);
  static const auto special = esft::data::TokenizerConfig::load(tokenizer_dir);
  esft::ChatOptions options;
  options.training = true;
  static const esft::data::SampleEncoder encoder(tokenizer, special, family->chat_format(), options);

  const auto path = esft::fuzz::write_scratch_file("train.jsonl", data);
  esft::fuzz::expect_only_clean_errors([&] { esft::data::read_samples(path, encoder); });
}
