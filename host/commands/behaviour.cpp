// `esft-host behaviour`: Plan-B's stability, efficiency and quality figures of a model on held-out text
// (pipeline/behaviour.h; shared/spec/VARIANTS.md §3): self-consistency, embedding variance, expert utilisation,
// overuse, drops, and the repetition of its greedy continuations. Prints them and writes them as one JSON object.
#include <iomanip>
#include <iostream>

#include "../cli.h"
#include "esft/data/batching.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/pipeline/behaviour.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::host {

namespace fs = std::filesystem;

Command behaviour_command() {
  Command c;
  c.name = "behaviour";
  c.summary = "stability, routing and repetition figures of a model on held-out text (Plan-B's metrics)";
  c.usage = "behaviour --model DIR --data FILE.jsonl [--rows N] [--passes 5] [--prompts 16] [--result FILE.json]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory (weights, tokenizer files)")
        ("data", po::value<std::string>()->required(), "held-out training-shaped records, e.g. {\"text\": ...} lines")
        ("seq-length", po::value<int64_t>()->default_value(128), "tokens per row (the text is streamed into rows)")
        ("rows", po::value<int64_t>()->default_value(64), "rows measured (the first N)")
        ("batch-size", po::value<int64_t>()->default_value(8), "rows per forward pass")
        ("passes", po::value<int>()->default_value(5), "self-consistency: forward passes with dropout and jitter on")
        ("prompts", po::value<int64_t>()->default_value(16), "repetition: continuations, one per record")
        ("prompt-tokens", po::value<int64_t>()->default_value(16), "repetition: each record's first tokens")
        ("new-tokens", po::value<int64_t>()->default_value(48), "repetition: tokens generated per continuation")
        ("overuse-threshold", po::value<double>()->default_value(2.0), "overused: share above THRESHOLD / E")
        ("seed", po::value<uint64_t>()->default_value(0), "the training-mode passes' randomness")
        ("result", po::value<std::string>(), "write the figures as one JSON object");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    pipeline::BehaviourOptions o;
    o.passes = vm["passes"].as<int>();
    o.batch_size = vm["batch-size"].as<int64_t>();
    o.prompts = vm["prompts"].as<int64_t>();
    o.prompt_tokens = vm["prompt-tokens"].as<int64_t>();
    o.new_tokens = vm["new-tokens"].as<int64_t>();
    o.overuse_threshold = vm["overuse-threshold"].as<double>();
    o.seed = vm["seed"].as<uint64_t>();
    const int64_t seq_length = vm["seq-length"].as<int64_t>(), max_rows = vm["rows"].as<int64_t>();
    if (o.passes < 2) throw UsageError("--passes must be at least 2 (the first pass is what the others agree with)");
    if (seq_length < 2 || max_rows < 1 || o.batch_size < 1 || o.prompts < 0 || o.prompt_tokens < 1 ||
        o.new_tokens < 1) {
      throw UsageError("--seq-length, --rows, --batch-size, --prompt-tokens and --new-tokens must be positive");
    }
    if (!(o.overuse_threshold > 0)) throw UsageError("--overuse-threshold must be > 0");
    if (vm.count("result")) check_output_path(vm["result"].as<std::string>(), "--result");
    const fs::path model_dir = vm["model"].as<std::string>(), data_path = vm["data"].as<std::string>();
    if (!fs::is_regular_file(data_path)) throw Error("data file " + data_path.string() + " does not exist");

    const auto tokenizer = tok::Tokenizer::load(model_dir);
    const auto special = data::TokenizerConfig::load(model_dir);
    auto m = open_model(global, model_dir);
    const data::SampleEncoder encoder(tokenizer, special, m.family->chat_format());
    const auto samples = data::read_samples(data_path, encoder);
    data::check_token_ids(samples, m.config.vocab_size, encoder.pad_id());
    auto rows = data::stream_samples(samples, seq_length, encoder.pad_id());
    if (static_cast<int64_t>(rows.size()) > max_rows) rows.resize(static_cast<size_t>(max_rows));

    auto stop = generation_stop_ids(m.config);
    if (special.eos_token) stop.push_back(tokenizer.token_to_id(*special.eos_token));
    const auto report = pipeline::measure_behaviour(*m.model, rows, samples, stop, encoder.pad_id(), m.device, o,
                                                    [](const std::string& s) { std::cerr << "behaviour: " << s << "\n"; });
    const auto j = report.to_json();
    std::cout << std::fixed << std::setprecision(4);
    for (const char* key : {"self_consistency", "embedding_variance", "utilisation_entropy", "utilisation_entropy_norm",
                            "overuse_rate", "drop_fraction", "repetition_2", "repetition_3", "repetition_4",
                            "repetition"}) {
      std::cout << std::left << std::setw(26) << key;
      if (j[key].is_number()) std::cout << j[key].get<double>() << "\n";
      else std::cout << "n/a\n";
    }
    std::cout << "(" << report.tokens << " tokens in " << rows.size() << " rows, " << report.continuations
              << " continuations)\n";
    if (vm.count("result")) {
      auto out = j;
      out["model"] = model_dir.string();
      out["data"] = data_path.string();
      write_text_atomically(vm["result"].as<std::string>(), out.dump(2) + "\n");
    }
    return 0;
  };
  return c;
}

}  // namespace esft::host
