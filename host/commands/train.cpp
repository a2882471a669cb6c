// `esft-host train`: training with AdamW, checkpoints that resume exactly, metrics.jsonl and metrics.csv, for each
// training method (train_methods/): esft (expert-specialized fine-tuning, shared/spec/ESFT.md §4; leaves
// OUT/adapter/) and pretrain (training from scratch; leaves OUT/model/ and OUT/summary.json). SIGINT/SIGTERM end
// the run after the current step with a checkpoint saved.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "../cli.h"
#include "../train_methods/method.h"
#include "distributed/process_group.h"
#include "esft/data/batching.h"
#include "esft/data/samples.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/io/sha256.h"
#include "esft/nn/moe_layer.h"
#include "esft/runtime.h"
#include "esft/train/trainer.h"
#include "plot/loss_picture.h"

namespace esft::host {

namespace fs = std::filesystem;

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

// Installs the SIGINT/SIGTERM handlers for the training loop and restores the previous ones afterwards.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal.store(0);
    int_ = std::signal(SIGINT, on_stop_signal);
    term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, int_);
    std::signal(SIGTERM, term_);
  }

 private:
  void (*int_)(int);
  void (*term_)(int);
};

// Where the other ranks' messages for the user go: nowhere.
std::ostream& quiet_stream() {
  static std::ostream discard(nullptr);
  return discard;
}

std::string duration_text(double seconds) {
  const auto s = static_cast<int64_t>(seconds + 0.5);
  std::ostringstream out;
  if (s >= 3600) out << s / 3600 << "h" << std::setw(2) << std::setfill('0') << (s % 3600) / 60 << "m";
  else if (s >= 60) out << s / 60 << "m" << std::setw(2) << std::setfill('0') << s % 60 << "s";
  else out << s << "s";
  return out.str();
}

// One progress line per step: rewritten in place on a terminal, every log_steps steps otherwise.
class Progress {
 public:
  Progress(int64_t steps, int64_t log_steps, bool enabled)
      : steps_(steps), log_steps_(log_steps), tty_(isatty(2) != 0), enabled_(enabled) {}
  void step(const train::StepReport& r) {
    if (!enabled_) return;
    char line[256];
    std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f  lr %.2e  grad-norm %.3f  %.0f tok/s  ETA %s",
                  static_cast<long long>(r.step), static_cast<long long>(steps_), r.loss, r.lr, r.grad_norm,
                  r.tokens_per_s, duration_text(r.eta_s).c_str());
    if (tty_) {
      std::cerr << "\r" << line << "\033[K" << std::flush;
      open_ = true;
    } else if (r.step % log_steps_ == 0 || r.step == steps_ || r.step == 1) {
      std::cerr << line << "\n";
    }
  }
  void line(const std::string& text) {
    if (!enabled_) return;
    if (open_) std::cerr << "\n", open_ = false;
    std::cerr << text << "\n";
  }
  void finish() {
    if (open_) std::cerr << "\n", open_ = false;
  }

 private:
  int64_t steps_, log_steps_;
  bool tty_, enabled_, open_ = false;
};

// Checks --out before any work (it is created only once the model, the expert config and the data are good, so a
// refused run leaves nothing behind).
void check_out_dir(const fs::path& out, bool resume) {
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_directory(out, ec)) throw Error("--out " + out.string() + " is not a directory");
  if (resume && !fs::exists(out, ec)) throw Error("--resume: " + out.string() + " does not exist");
  if (!resume && !train::list_checkpoints(out).empty()) {
    throw Error("--out " + out.string() + " already holds a training run; pass --resume to continue it or choose another --out");
  }
  // Probe writability where the run folder is or will be.
  const auto dir = fs::exists(out, ec) ? out : fs::absolute(out).parent_path();
  if (!fs::is_directory(dir, ec)) throw Error("--out: directory " + dir.string() + " does not exist");
  const auto probe = dir / (".esft-write-test-" + std::to_string(::getpid()));
  std::FILE* f = std::fopen(probe.c_str(), "w");
  if (!f) throw Error("--out: " + dir.string() + " is not writable");
  std::fclose(f);
  fs::remove(probe, ec);
}

// The loss curve of this run in at most 10 points, each the mean loss of its stretch of steps.
void print_loss_curve(const std::vector<train::StepReport>& reports) {
  if (reports.empty()) return;
  const size_t points = std::min<size_t>(10, reports.size());
  std::cout << "loss curve";
  for (size_t p = 0; p < points; ++p) {
    const size_t begin = p * reports.size() / points, end = (p + 1) * reports.size() / points;
    double sum = 0;
    for (size_t i = begin; i < end; ++i) sum += reports[i].loss;
    std::cout << (p ? "  " : " ") << "[" << reports[begin].step << "-" << reports[end - 1].step << "] " << std::fixed
              << std::setprecision(3) << sum / static_cast<double>(end - begin);
  }
  std::cout << "\n";
}

// OUT/train_summary.json: what every method's run costs, in one format, for comparisons (`run` with [compare]).
void write_train_summary(const fs::path& path, const std::string& method, const LoadedModel& m,
                         const train::Trainer& trainer, const TrainingRunInfo& run, const TrainingOutput& output,
                         int64_t total_params) {
  const train::StepReport last = run.steps.empty() ? train::StepReport{} : run.steps.back();
  double tokens = 0, seconds = 0;
  for (const auto& s : run.steps) {
    tokens += static_cast<double>(s.tokens);
    if (s.tokens_per_s > 0) seconds += static_cast<double>(s.tokens) / s.tokens_per_s;
  }
  const nlohmann::json summary = {
      {"method", method},
      {"family", m.family->name()},
      {"device", m.device.str()},
      {"dtype", dtype_label(m.dtype)},
      {"steps", trainer.step()},
      {"trainable_parameters", trainer.trainable_numel()},
      {"parameters", total_params},
      {"optimizer_state_bytes", trainer.optimizer().state_bytes()},
      {"train_seconds", last.elapsed_s},  // across resumes
      {"tokens_per_s", seconds > 0 ? tokens / seconds : 0.0},  // this invocation's steps
      {"peak_memory_mib", last.peak_memory_mib},
      {"final_loss", run.steps.empty() ? nlohmann::json(nullptr) : nlohmann::json(last.loss)},
      {"output", {{"kind", output.kind}, {"path", output.path.string()}, {"bytes", output.bytes}}}};
  write_text_atomically(path, summary.dump(2) + "\n");
  std::cout << "cost       " << trainer.trainable_numel() << " trainable parameters, optimizer state "
            << mib_text(trainer.optimizer().state_bytes()) << ", peak memory " << std::fixed << std::setprecision(0)
            << last.peak_memory_mib << " MiB, " << std::setprecision(1) << last.elapsed_s << " s of training; output "
            << mib_text(output.bytes) << " (" << path.string() << ")\n";
}

// The model's parameters and buffers; experts spread over the ranks count on every rank (each holds as many).
int64_t model_numel(MoECausalLM& model) {
  int64_t n = 0;
  for (const auto& p : model.parameters()) n += p.numel();
  for (const auto& b : model.buffers()) n += b.numel();
  for (auto* layer : model.moe_layers()) {
    auto& bank = layer->experts();
    if (!bank.expert_group()) continue;
    int64_t held = 0;
    for (const auto& p : bank.parameters()) held += p.numel();
    for (const auto& b : bank.buffers()) held += b.numel();
    n += held * (bank.expert_group()->world_size() - 1);
  }
  return n;
}

}  // namespace

Command train_command() {
  Command c;
  c.name = "train";
  c.summary = "train a model: esft (only the selected experts), lora, full fine-tuning, or pretrain (from scratch)";
  c.usage = "train --model DIR --data FILE.jsonl --out DIR [--method esft|lora|full|pretrain|router] [--expert-config FILE] "
            "[--adapter-format esft|reference] [--config FILE.toml] [--eval-data FILE.jsonl] [--steps N] [--resume] "
            "[--expert-parallel]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory (weights, tokenizer files)")
        ("expert-config", po::value<std::string>(), "expert_config.json (from select); --method esft only")
        ("adapter-format", po::value<std::string>()->default_value("esft"),
         "--method esft: esft (esft_adapter.json, model.safetensors, expert_config.json) or reference (the ESFT "
         "reference's expert_cfg.json + model.safetensors, for its own tools)")
        ("data", po::value<std::string>()->required(), "training data, JSON lines (messages | prompt/completion | text)")
        ("out", po::value<std::string>()->required(), "run folder: adapter/ or model/, checkpoints/, metrics.jsonl, metrics.csv")
        ("config", po::value<std::string>(), "TOML training settings (see README; defaults: the method's reference)")
        ("eval-data", po::value<std::string>(), "held-out data for the eval loss (default: eval_fraction of --data)")
        ("steps", po::value<int64_t>(), "optimizer steps (overrides the config)")
        ("method", po::value<std::string>()->default_value("esft"),
         "esft: train the experts of --expert-config, write an adapter; lora: train LoRA pairs (lora_* settings), "
         "write a PEFT adapter; full: train every parameter, write a model; pretrain: the same from scratch; "
         "router: train a Select-MoE model's routers with the trash constraint, write an adapter")
        ("resume", po::bool_switch(), "continue from the newest checkpoint in --out")
        ("expert-parallel", po::bool_switch(),
         "spread each MoE layer's routed experts over the processes in contiguous blocks (Megatron's placement; "
         "each rank loads only its experts) and send tokens to their experts with all-to-all: for models that do "
         "not fit one device; --method esft, per-expert checkpoints");
  };
  c.multi_process = true;
  c.run = [](const GlobalOptions& options_in, const po::variables_map& vm) {
    GlobalOptions global = options_in;
    dist::Communicator& comm = join_process_group(global);
    // Rank 0 speaks for a run of several processes; the others print only their errors.
    std::ostream& say = comm.is_root() ? std::cout : quiet_stream();
    auto method = make_training_method(vm["method"].as<std::string>(), vm);
    const bool expert_parallel = vm["expert-parallel"].as<bool>();
    if (expert_parallel && method->name() != "esft") {
      throw UsageError("--expert-parallel is built for --method esft (not " + method->name() + ")");
    }
    dist::Communicator* experts = expert_group(comm, expert_parallel);
    train::TrainOptions options = method->defaults();
    if (vm.count("config")) options = train::TrainOptions::load_toml(vm["config"].as<std::string>(), options);
    if (vm.count("steps")) {
      options.steps = vm["steps"].as<int64_t>();
      if (options.steps <= 0) throw UsageError("--steps must be positive");
    }
    const fs::path model_dir = vm["model"].as<std::string>(), data_path = vm["data"].as<std::string>();
    const fs::path out = vm["out"].as<std::string>();
    const bool resume = vm["resume"].as<bool>();
    for (const auto& p : {data_path, vm.count("eval-data") ? fs::path(vm["eval-data"].as<std::string>()) : data_path}) {
      if (!fs::is_regular_file(p)) throw Error("data file " + p.string() + " does not exist");
    }
    check_out_dir(out, resume);

    // What a resumed run must share with the one it continues (the method adds what it trains).
    nlohmann::json fingerprint = {
        {"base_config_sha256", sha256_file_hex(model_dir / "config.json")},
        {"data_sha256", sha256_file_hex(data_path)},
        {"eval_data_sha256", vm.count("eval-data") ? sha256_file_hex(vm["eval-data"].as<std::string>()) : ""},
        {"seed", options.seed},
        {"seq_length", options.seq_length},
        {"packing", options.packing},
        {"packing_style", options.stream_packing ? "stream" : "esft"},
        {"random_concat_ratio", options.random_concat_ratio},
        {"eval_fraction", options.eval_fraction},
        {"batch_size", options.batch_size},
        {"gradient_accumulation_steps", options.gradient_accumulation_steps}};

    // Model, what trains, data.
    const auto tokenizer = tok::Tokenizer::load(model_dir);
    const auto special = data::TokenizerConfig::load(model_dir);
    auto m = open_model_on(global, model_dir, experts);
    method->make_trainable(m, options, fingerprint);
    const data::SampleEncoder encoder(tokenizer, special, m.family->chat_format());
    data::Split split;
    if (vm.count("eval-data")) {
      split.train = data::read_samples(data_path, encoder);
      split.eval = data::read_samples(vm["eval-data"].as<std::string>(), encoder);
    } else {
      split = data::split_holdout(data::read_samples(data_path, encoder), options.eval_fraction, options.seed);
    }
    // Training needs labels: a file of prompts alone (or of masked messages) would train on nothing.
    const bool any_label = std::any_of(split.train.begin(), split.train.end(), [](const data::Sample& smp) {
      return std::any_of(smp.labels.begin() + (smp.labels.empty() ? 0 : 1), smp.labels.end(),
                         [](int32_t l) { return l != data::kIgnoreIndex; });
    });
    if (!any_label) {
      throw Error(data_path.string() + ": no training sample has a labelled token (assistant messages, a completion "
                  "or text are what trains)");
    }
    data::check_token_ids(split.train, m.config.vocab_size, encoder.pad_id());
    data::check_token_ids(split.eval, m.config.vocab_size, encoder.pad_id());
    data::shuffle_samples(split.train, options.seed);
    auto make = [&](const std::vector<data::Sample>& s) {
      if (options.packing && options.stream_packing) return data::stream_samples(s, options.seq_length, encoder.pad_id());
      return train::make_rows(s, options.packing, options.seq_length, encoder.pad_id(), options.random_concat_ratio,
                              options.seed);
    };
    auto train_rows = make(split.train);
    if (options.epochs > 0 && !vm.count("steps")) {  // --steps wins over epochs
      const double per_step = static_cast<double>(options.batch_size * options.gradient_accumulation_steps);
      options.steps = std::max<int64_t>(
          1, static_cast<int64_t>(std::ceil(options.epochs * static_cast<double>(train_rows.size()) / per_step)));
    }
    auto eval_rows = split.eval.empty() ? std::vector<data::Row>{} : make(split.eval);

    fs::create_directories(out);
    train::Trainer trainer(*m.model, options, std::move(train_rows), std::move(eval_rows), encoder.pad_id(), m.device,
                           out, fingerprint, comm);

    const int64_t total_params = model_numel(*m.model);
    say << "model      " << model_dir.string() << " (" << m.family->name() << ", " << dtype_label(m.dtype)
              << ", " << m.device.str() << ")\n";
    say << "trainable  " << trainer.trainable_numel() << " of " << total_params << " parameters ("
              << std::fixed << std::setprecision(2) << 100.0 * static_cast<double>(trainer.trainable_numel()) /
                     static_cast<double>(total_params)
              << "%): " << method->trainable_summary(m) << "\n";
    say << "optimizer  AdamW, state " << mib_text(trainer.optimizer().state_bytes()) << "\n";
    say << "data       " << split.train.size() << " train samples -> " << trainer.train_rows() << " rows; "
              << split.eval.size() << " eval samples -> " << trainer.eval_rows() << " rows\n";
    say << "schedule   " << options.steps << " steps x " << options.gradient_accumulation_steps << " x "
              << options.batch_size << " rows of " << options.seq_length << " tokens, lr "
              << std::scientific << std::setprecision(2) << options.learning_rate << std::defaultfloat << " ("
              << train::schedule_name(options.lr_scheduler) << ", " << options.warmup_steps << " warmup)";
    if (!m.model->moe_layers().empty()) say << ", routers " << train::router_mode_name(options.router_mode);
    if (!comm.is_solo()) {
      say << "\nprocesses  " << comm.world_size() << " (" << comm.backend() << "), each "
          << dist::share_of(options.batch_size, 0, comm.world_size()).size() << " or fewer rows of every micro-batch; ";
      if (expert_parallel && !m.model->moe_layers().empty()) {
        say << "each holds " << m.model->moe_layers().front()->experts().held_experts() << " experts of every MoE "
            << "layer and trains its own; the other trainable tensors' gradients are summed over them every step";
      } else {
        say << "the trainable tensors' gradients are summed over them every step";
      }
    }
    say << "\n" << std::flush;

    if (resume) say << "resumed    at step " << trainer.resume() << "\n" << std::flush;
    Progress progress(options.steps, options.log_steps, comm.is_root());
    TrainingRunInfo run{model_dir, out, options, fingerprint, {}, train::Trainer::Outcome::Finished, &comm,
                        expert_parallel};
    {
      StopSignals signals;
      run.outcome = trainer.run(
          &g_stop_signal,
          [&](const train::StepReport& r) {
            progress.step(r);
            run.steps.push_back(r);
            // At every checkpoint, the loss picture of the run so far.
            if (comm.is_root() && options.save_steps > 0 && r.step % options.save_steps == 0) write_loss_picture(out);
          },
          [&](const train::EvalReport& e) {
            char line[160];
            std::snprintf(line, sizeof line, "eval at step %lld: loss %.4f  ppl %.3f%s", static_cast<long long>(e.step),
                          e.loss, e.ppl(), e.best ? "  (best)" : "");
            progress.line(line);
          });
    }
    progress.finish();
    if (run.outcome == train::Trainer::Outcome::Interrupted) {
      // A rank stopped by another's signal ends as that one does.
      const int sig = g_stop_signal.load() ? g_stop_signal.load() : SIGTERM;
      if (comm.is_root()) std::cerr << "esft-host: interrupted at step " << trainer.step() << "; checkpoint saved in "
                << (out / "checkpoints").string() << "; continue with --resume\n";
      return 128 + sig;
    }
    // Rank 0 writes what the run leaves; under expert parallelism the others hand it their experts first.
    if (!comm.is_root() && !expert_parallel) return 0;
    if (run.outcome == train::Trainer::Outcome::EarlyStopped) {
      say << "early stop at step " << trainer.step() << ": " << options.early_stop_patience
          << " evaluations without an improvement of more than " << options.early_stop_min_delta << "\n";
    }
    if (comm.is_root()) {
      print_loss_curve(run.steps);
      write_loss_picture(out);
      say << "loss       " << (out / "loss.{png,svg}").string() << " (and loss.csv)\n";
    }
    const auto output = method->finish(m, trainer, run);
    if (!comm.is_root()) return 0;
    write_train_summary(out / "train_summary.json", method->name(), m, trainer, run, output, total_params);
    return 0;
  };
  return c;
}

}  // namespace esft::host
