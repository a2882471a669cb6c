// `esft-host data`: training data as the trainer will see it. Reads JSON lines (messages, prompt/completion or
// text), renders and tokenizes them with the model's chat format and tokenizer, splits off the held-out part,
// shuffles, packs (or pads), and reports counts; --out writes the rows for inspection.
#include <iostream>

#include <nlohmann/json.hpp>

#include "../cli.h"
#include "esft/data/batching.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/train/batch_stream.h"

namespace esft::host {

Command data_command() {
  Command c;
  c.name = "data";
  c.summary = "tokenize, label, split and pack a JSON-lines training file; report counts, optionally write the rows";
  c.usage = "data --model DIR --input TRAIN.jsonl [--seq-length N] [--no-packing] [--eval-fraction F] [--seed S] "
            "[--out ROWS.jsonl]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory (config.json, tokenizer.json, tokenizer_config.json)")
        ("input", po::value<std::string>()->required(), "JSON lines: {\"messages\"}, {\"prompt\",\"completion\"} or {\"text\"}")
        ("seq-length", po::value<int64_t>()->default_value(4096), "tokens per row")
        ("no-packing", po::bool_switch(), "one sample per row (a longer sample is an error) instead of packed windows")
        ("eval-fraction", po::value<double>()->default_value(0.02), "share of samples held out for evaluation")
        ("seed", po::value<uint64_t>()->default_value(5934875), "seed of the split, the shuffle and packing")
        ("out", po::value<std::string>(), "write the training rows as JSON lines: ids, labels, attention_mask");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const int64_t seq_length = vm["seq-length"].as<int64_t>();
    if (seq_length <= 0) throw UsageError("--seq-length must be positive");
    const double eval_fraction = vm["eval-fraction"].as<double>();
    if (!(eval_fraction >= 0 && eval_fraction < 1)) throw UsageError("--eval-fraction must be in [0, 1)");
    if (vm.count("out")) check_output_path(vm["out"].as<std::string>(), "--out");
    const uint64_t seed = vm["seed"].as<uint64_t>();

    const std::filesystem::path model_dir = vm["model"].as<std::string>();
    const auto config = ModelConfig::load(model_dir);
    const auto family = resolve_family(global, config);
    const auto tokenizer = tok::Tokenizer::load(model_dir);
    const auto special = data::TokenizerConfig::load(model_dir);
    const data::SampleEncoder encoder(tokenizer, special, family->chat_format());

    data::ReadReport report;
    auto samples = data::read_samples(vm["input"].as<std::string>(), encoder, &report);
    auto split = data::split_holdout(std::move(samples), eval_fraction, seed);
    data::shuffle_samples(split.train, seed);

    const bool packing = !vm["no-packing"].as<bool>();
    if (!packing) data::check_fits(split.eval, seq_length);
    const auto rows = train::make_rows(split.train, packing, seq_length, encoder.pad_id(), 0, seed);
    int64_t labelled = 0;
    for (const auto& r : rows)
      for (int32_t l : r.labels) labelled += l != data::kIgnoreIndex;

    std::cout << "samples          " << report.samples << " (" << split.train.size() << " train, " << split.eval.size()
              << " held out)\n"
              << "tokens           " << report.tokens << " (" << report.trainable_tokens << " with labels)\n"
              << "rows             " << rows.size() << " of " << (vm["no-packing"].as<bool>() ? "up to " : "")
              << seq_length << " tokens (" << (vm["no-packing"].as<bool>() ? "one sample each" : "packed") << "), "
              << labelled << " labelled tokens\n";
    if (vm.count("out")) {
      AtomicFile out(vm["out"].as<std::string>());
      for (const auto& r : rows) {
        out.stream() << nlohmann::json{{"ids", r.ids}, {"labels", r.labels}, {"attention_mask", r.attention_mask}}.dump()
                     << "\n";
      }
      out.commit();
    }
    return 0;
  };
  return c;
}

}  // namespace esft::host
