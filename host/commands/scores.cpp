// `esft-host scores`: routing statistics of a task (shared/spec/ESFT.md §1). Training samples, rendered and
// tokenized exactly as for training, are shuffled by seed and run through the model without gradients or logits
// until the token budget is reached; a RouterHook counts each expert's tokens and weights per MoE layer.
#include <ATen/ATen.h>

#include <chrono>
#include <iostream>

#include "../cli.h"
#include "esft/data/batching.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/pipeline/routing_collector.h"

namespace esft::host {

Command scores_command() {
  Command c;
  c.name = "scores";
  c.summary = "routing statistics of a task's data (scores.json) for expert selection";
  c.usage = "scores --model DIR --data FILE.jsonl --out DIR [--n-sample-tokens N] [--seed S] [--batch-size B] "
            "[--seq-length T] [--legacy-logs]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory (weights, tokenizer.json, tokenizer_config.json)")
        ("data", po::value<std::string>()->required(), "training data, JSON lines as for train")
        ("out", po::value<std::string>()->required(), "output folder (created if missing): scores.json")
        ("n-sample-tokens", po::value<int64_t>()->default_value(131072), "token budget; whole samples, so it may overshoot")
        ("seed", po::value<uint64_t>()->default_value(5934875), "shuffle seed")
        ("batch-size", po::value<int64_t>()->default_value(1), "samples per forward pass")
        ("seq-length", po::value<int64_t>()->default_value(4096), "longer samples keep their last seq-length tokens")
        ("legacy-logs", po::bool_switch(), "also write the reference's expert_weights_{layer}.txt logs");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const int64_t budget = vm["n-sample-tokens"].as<int64_t>(), batch_size = vm["batch-size"].as<int64_t>();
    const int64_t seq_length = vm["seq-length"].as<int64_t>();
    if (budget <= 0 || batch_size <= 0 || seq_length <= 0) {
      throw UsageError("--n-sample-tokens, --batch-size and --seq-length must be positive");
    }
    const std::filesystem::path out_dir = vm["out"].as<std::string>();
    if (!std::filesystem::is_directory(out_dir)) {
      const auto parent = std::filesystem::absolute(out_dir).parent_path();
      if (!std::filesystem::is_directory(parent)) throw Error("--out: " + parent.string() + " does not exist");
      std::filesystem::create_directory(out_dir);
    }
    const std::filesystem::path model_dir = vm["model"].as<std::string>();
    const auto tokenizer = tok::Tokenizer::load(model_dir);
    const auto special = data::TokenizerConfig::load(model_dir);
    auto m = open_model(global, model_dir);
    const data::SampleEncoder encoder(tokenizer, special, m.family->chat_format());
    auto samples = data::read_samples(vm["data"].as<std::string>(), encoder);
    data::shuffle_samples(samples, vm["seed"].as<uint64_t>());
    data::keep_last_tokens(samples, seq_length);
    data::check_token_ids(samples, m.config.vocab_size, encoder.pad_id());

    const auto moe = m.model->moe_layers();
    if (moe.empty()) throw Error("the model has no MoE layers");
    pipeline::RoutingCollector collector(m.config.model_type, moe.front()->num_experts(), moe.front()->top_k(),
                                         vm["legacy-logs"].as<bool>());
    ForwardOptions options;
    options.logits = LogitsMode::None;
    options.routing_only = true;
    options.hooks.push_back(&collector);
    at::NoGradGuard no_grad;
    const auto start = std::chrono::steady_clock::now();
    size_t next = 0, used = 0;
    while (next < samples.size() && collector.tokens() < budget) {
      std::vector<const data::Sample*> batch;
      for (; next < samples.size() && static_cast<int64_t>(batch.size()) < batch_size; ++next) batch.push_back(&samples[next]);
      const auto rows = data::pad_batch(batch, encoder.pad_id());
      const int64_t B = static_cast<int64_t>(rows.size()), T = static_cast<int64_t>(rows.front().ids.size());
      std::vector<int64_t> flat_ids, flat_mask;
      for (const auto& r : rows) {
        flat_ids.insert(flat_ids.end(), r.ids.begin(), r.ids.end());
        flat_mask.insert(flat_mask.end(), r.attention_mask.begin(), r.attention_mask.end());
      }
      auto ids = at::tensor(flat_ids, at::kLong).view({B, T}), mask = at::tensor(flat_mask, at::kLong).view({B, T});
      collector.set_batch_shape(B, T);
      m.model->forward(ids.to(m.device), mask.to(m.device), options);
      used += batch.size();
      std::cerr << "\rscores: " << used << " samples, " << collector.tokens() << " tokens" << std::flush;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << " (" << (seconds > 0 ? static_cast<double>(collector.tokens()) / seconds : 0.0) << " tokens/s)\n";
    if (collector.tokens() < budget) {
      std::cerr << "scores: the data holds only " << collector.tokens() << " tokens, fewer than --n-sample-tokens "
                << budget << "\n";
    }

    write_text_atomically(out_dir / "scores.json", collector.stats().to_json().dump() + "\n");
    if (vm["legacy-logs"].as<bool>()) {
      for (const auto& [layer, lines] : collector.legacy_lines()) {
        std::string text;
        for (const auto& l : lines) text += l + "\n";
        write_text_atomically(out_dir / ("expert_weights_" + std::to_string(layer) + ".txt"), text);
      }
    }
    std::cout << "wrote " << (out_dir / "scores.json").string() << ": " << moe.size() << " MoE layers, "
              << collector.tokens() << " tokens from " << used << " samples\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
