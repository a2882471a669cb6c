// `esft-host scores`: routing statistics of a task (shared/spec/ESFT.md §1). Training samples, rendered and
// tokenized exactly as for training, are shuffled by seed and run through the model without gradients or logits
// until the token budget is reached; a RouterHook counts each expert's tokens and weights per MoE layer.
// Under torchrun, srun or `esft-host launch` the ranks share the batches and rank 0 writes the scores.json one
// process would have written.
#include <ATen/ATen.h>

#include <chrono>
#include <iostream>

#include "../cli.h"
#include "distributed/process_group.h"
#include "esft/data/batching.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/pipeline/routing_collector.h"
#include "plot/routing_pictures.h"

namespace esft::host {

namespace {

// The routing parts of one round of batches, a slot per rank (its batch of the round), as tensors that a sum over the
// ranks fills: each rank writes its own slot, the others' stay zero, so the sum is every rank's part, exactly.
class RoundSlots {
 public:
  RoundSlots(int world, std::vector<int> layers, int64_t experts)
      : layers_(std::move(layers)),
        experts_(experts),
        counts_(at::zeros({world, static_cast<int64_t>(layers_.size()), experts + 1}, at::kLong)),
        gates_(at::zeros({world, static_cast<int64_t>(layers_.size()), experts}, at::kDouble)) {}

  void put(int slot, const pipeline::RoutingStats& part) {
    for (size_t l = 0; l < layers_.size(); ++l) {
      const auto it = part.layers.find(layers_[l]);
      if (it == part.layers.end()) continue;
      const auto& r = it->second;
      auto* c = counts_[slot][static_cast<int64_t>(l)].data_ptr<int64_t>();
      std::copy(r.token_count.begin(), r.token_count.end(), c);
      c[experts_] = r.tokens;  // the layer's tokens after its expert counts
      std::copy(r.gate_sum.begin(), r.gate_sum.end(), gates_[slot][static_cast<int64_t>(l)].data_ptr<double>());
    }
  }

  // Sums the slots over the ranks (on the model's device, which NCCL needs); nothing to do for one process.
  void exchange(dist::Communicator& comm, const c10::Device& device) {
    if (comm.is_solo()) return;
    auto counts = counts_.to(device), gates = gates_.to(device);
    comm.all_reduce_sum(counts);
    comm.all_reduce_sum(gates);
    counts_ = counts.cpu(), gates_ = gates.cpu();
  }

  pipeline::RoutingStats get(int slot) const {
    pipeline::RoutingStats part;
    for (size_t l = 0; l < layers_.size(); ++l) {
      auto& r = part.layers[layers_[l]];
      const auto* c = counts_[slot][static_cast<int64_t>(l)].data_ptr<int64_t>();
      const auto* g = gates_[slot][static_cast<int64_t>(l)].data_ptr<double>();
      r.token_count.assign(c, c + experts_);
      r.tokens = c[experts_];
      r.gate_sum.assign(g, g + experts_);
    }
    return part;
  }

 private:
  std::vector<int> layers_;  // the MoE layers' indices, in slot order
  int64_t experts_;
  at::Tensor counts_;        // [world, layers, experts + 1] int64
  at::Tensor gates_;         // [world, layers, experts] float64
};

}  // namespace

Command scores_command() {
  Command c;
  c.name = "scores";
  c.several_devices = true;
  c.summary = "routing statistics of a task's data (scores.json) for expert selection";
  c.usage = "scores --model DIR --data FILE.jsonl --out DIR [--n-sample-tokens N] [--seed S] [--batch-size B] "
            "[--seq-length T] [--legacy-logs] [--expert-parallel]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory (weights, tokenizer.json, tokenizer_config.json)")
        ("data", po::value<std::string>()->required(), "training data, JSON lines as for train")
        ("out", po::value<std::string>()->required(), "output folder (created if missing): scores.json")
        ("n-sample-tokens", po::value<int64_t>()->default_value(131072), "token budget; whole samples, so it may overshoot")
        ("seed", po::value<uint64_t>()->default_value(5934875), "shuffle seed")
        ("batch-size", po::value<int64_t>()->default_value(1), "samples per forward pass")
        ("seq-length", po::value<int64_t>()->default_value(4096), "longer samples keep their last seq-length tokens")
        ("legacy-logs", po::bool_switch(), "also write the reference's expert_weights_{layer}.txt logs")
        ("expert-order", po::value<std::string>()->default_value("id"),
         "columns of routing.png: id (expert ids) or sorted (each layer's experts from the largest share down)")
        ("expert-parallel", po::bool_switch(),
         "spread each MoE layer's routed experts over the processes (each rank loads only its block; tokens travel "
         "to their experts with all-to-all): for models that do not fit one device");
  };
  c.multi_process = true;
  c.run = [](const GlobalOptions& options_in, const po::variables_map& vm) {
    GlobalOptions global = options_in;
    const auto expert_order = parse_expert_order(vm["expert-order"].as<std::string>());  // before any work
    dist::Communicator& comm = join_process_group(global);
    dist::Communicator* experts = expert_group(comm, vm["expert-parallel"].as<bool>());
    const int64_t budget = vm["n-sample-tokens"].as<int64_t>(), batch_size = vm["batch-size"].as<int64_t>();
    const int64_t seq_length = vm["seq-length"].as<int64_t>();
    if (budget <= 0 || batch_size <= 0 || seq_length <= 0) {
      throw UsageError("--n-sample-tokens, --batch-size and --seq-length must be positive");
    }
    const std::filesystem::path out_dir = vm["out"].as<std::string>();
    if (!std::filesystem::is_directory(out_dir)) {
      const auto parent = std::filesystem::absolute(out_dir).parent_path();
      if (!std::filesystem::is_directory(parent)) throw Error("--out: " + parent.string() + " does not exist");
      std::filesystem::create_directories(out_dir);  // every rank may, at once
    }
    const std::filesystem::path model_dir = vm["model"].as<std::string>();
    const auto tokenizer = tok::Tokenizer::load(model_dir);
    const auto special = data::TokenizerConfig::load(model_dir);
    auto m = open_model_on(global, model_dir, experts);
    const data::SampleEncoder encoder(tokenizer, special, m.family->chat_format());
    auto samples = data::read_samples(vm["data"].as<std::string>(), encoder);
    data::shuffle_samples(samples, vm["seed"].as<uint64_t>());
    data::keep_last_tokens(samples, seq_length);
    data::check_token_ids(samples, m.config.vocab_size, encoder.pad_id());

    const auto moe = m.model->moe_layers();
    if (moe.empty()) throw Error("the model has no MoE layers");
    const int64_t E = moe.front()->num_experts();
    pipeline::RoutingCollector collector(m.config.model_type, E, moe.front()->top_k(), vm["legacy-logs"].as<bool>());
    ForwardOptions options;
    options.logits = LogitsMode::None;
    options.routing_only = true;
    options.hooks.push_back(&collector);
    at::NoGradGuard no_grad;

    // The batches one process runs: whole batches in sample order until the budget of real tokens is reached.
    std::vector<std::pair<size_t, size_t>> plan;  // [begin, end) of samples
    int64_t planned_tokens = 0;
    for (size_t begin = 0; begin < samples.size() && planned_tokens < budget;) {
      const size_t end = std::min(samples.size(), begin + static_cast<size_t>(batch_size));
      for (size_t i = begin; i < end; ++i) planned_tokens += static_cast<int64_t>(samples[i].ids.size());
      plan.emplace_back(begin, end);
      begin = end;
    }
    // Several processes take the batches in turns (a round is one batch per rank). Each round's parts are summed
    // over the ranks in slots, one per batch, and added in batch order: the totals of one process, bit for bit.
    const int world = comm.world_size();
    std::vector<int> layers;
    for (const auto* layer : moe) layers.push_back(layer->layer_index());
    const auto start = std::chrono::steady_clock::now();
    size_t used = 0;
    for (size_t round = 0; round < plan.size(); round += static_cast<size_t>(world)) {
      RoundSlots slots(world, layers, E);
      if (const size_t mine = round + static_cast<size_t>(comm.rank()); mine < plan.size()) {
        std::vector<const data::Sample*> batch;
        for (size_t i = plan[mine].first; i < plan[mine].second; ++i) batch.push_back(&samples[i]);
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
        slots.put(comm.rank(), collector.take_part());
      } else if (experts) {
        // A rank without a batch in the last round still takes part in the others' exchanges: one padding token,
        // which no hook sees.
        ForwardOptions idle = options;
        idle.hooks.clear();
        const auto one = at::ones({1, 1}, at::kLong).to(m.device);
        m.model->forward(one * encoder.pad_id(), one, idle);
      }
      slots.exchange(comm, m.device);
      for (int slot = 0; slot < world && round + static_cast<size_t>(slot) < plan.size(); ++slot) {
        collector.add_part(slots.get(slot));
        used = plan[round + static_cast<size_t>(slot)].second;
      }
      if (comm.is_root()) {
        std::cerr << "\rscores: " << used << " samples, " << collector.tokens() << " tokens" << std::flush;
      }
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (comm.is_root()) {
      std::cerr << " (" << (seconds > 0 ? static_cast<double>(collector.tokens()) / seconds : 0.0) << " tokens/s"
                << (world > 1 ? " over " + std::to_string(world) + " processes" : "") << ")\n";
    }
    if (collector.tokens() != planned_tokens) {
      throw Error("scores: the routers saw " + std::to_string(collector.tokens()) + " real tokens where the batches "
                  "hold " + std::to_string(planned_tokens) + " (a family that routes padding?)");
    }
    if (collector.tokens() < budget && comm.is_root()) {
      std::cerr << "scores: the data holds only " << collector.tokens() << " tokens, fewer than --n-sample-tokens "
                << budget << "\n";
    }
    // Legacy logs hold each rank's own sequences, under rank_R/ as the reference writes them; scores.json is rank
    // 0's alone.
    if (vm["legacy-logs"].as<bool>()) {
      const auto dir = world > 1 ? out_dir / ("rank_" + std::to_string(comm.rank())) : out_dir;
      std::filesystem::create_directories(dir);
      for (const auto& [layer, lines] : collector.legacy_lines()) {
        std::string text;
        for (const auto& l : lines) text += l + "\n";
        write_text_atomically(dir / ("expert_weights_" + std::to_string(layer) + ".txt"), text);
      }
    }
    if (!comm.is_root()) return 0;
    write_text_atomically(out_dir / "scores.json", collector.stats().to_json().dump() + "\n");
    std::cout << "wrote " << (out_dir / "scores.json").string() << ": " << moe.size() << " MoE layers, "
              << collector.tokens() << " tokens from " << used << " samples"
              << (world > 1 ? " (" + std::to_string(world) + " processes)" : "") << "\n";
    write_routing_pictures(collector.stats(), out_dir, expert_order);
    std::cout << "wrote " << (out_dir / "routing.{png,svg}").string() << " and routing.csv\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
