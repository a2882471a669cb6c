// ESFT against training every expert: the same model, the same data and the same trainer (AdamW, clipping), once
// with about a fifth of each layer's routed experts trainable (ESFT) and once with all of them (the expert part of
// full fine-tuning; attention, norms, embeddings and routers stay frozen in both). Reports tokens per second,
// peak resident memory, trainable parameters and optimizer state bytes. Each run is a child process, so its peak
// memory is its own.
//
//   esft-bench-train [--family qwen3_moe] [--batch 4] [--seq 256] [--steps 4] [--esft-experts 13]
//                    [--device cpu|cuda] [--dtype float32|bfloat16]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "bench_models.h"
#include "esft/compat.h"
#include "esft/error.h"
#include "esft/pipeline/trainable.h"
#include "esft/runtime.h"
#include "esft/train/trainer.h"
#include "plugin_loader.h"

namespace {

using namespace esft::bench;

struct Settings {
  std::string family = "qwen3_moe";
  int64_t batch = 4, seq = 256, steps = 4, esft_experts = 13;
  std::string device = "cpu", dtype = "float32";
};

struct Result {
  double tokens_per_s = 0, peak_rss_mib = 0;
  int64_t trainable = 0, experts = 0, total_experts = 0;
  uint64_t optimizer_bytes = 0;
};

// One training run (in the child): `experts_per_layer` trainable experts per MoE layer, spread over the bank.
Result train_once(const Settings& s, int64_t experts_per_layer) {
  const auto device = esft::parse_device(s.device);
  const auto dtype = esft::parse_dtype(s.dtype, device);
  esft::host::PluginLoader loader(std::optional<std::filesystem::path>{});
  const auto cases = family_cases();
  const auto fc = std::find_if(cases.begin(), cases.end(), [&](const FamilyCase& c) { return c.plugin == s.family; });
  if (fc == cases.end()) throw esft::Error("unknown --family " + s.family);
  at::manual_seed(0);
  auto family = loader.load(fc->plugin);
  auto config = esft::ModelConfig::from_json(fc->config, "bench:" + fc->plugin);
  auto model = family->create(config, device, dtype);
  randomize(*model);

  esft::pipeline::ExpertConfig expert_config;
  Result r;
  for (auto* layer : model->moe_layers()) {
    const int64_t E = layer->num_experts();
    auto& list = expert_config.experts[layer->layer_index()];
    for (int64_t i = 0; i < std::min(experts_per_layer, E); ++i) list.push_back(i * E / std::min(experts_per_layer, E));
    r.experts += static_cast<int64_t>(list.size());
    r.total_experts += E;
  }
  esft::pipeline::apply_expert_config(*model, family->naming(), expert_config);

  esft::data::Random random(1);
  std::vector<esft::data::Row> rows(static_cast<size_t>(s.batch * (s.steps + 1)));
  for (auto& row : rows) {
    for (int64_t t = 0; t < s.seq; ++t) {
      const auto id = static_cast<int32_t>(random.below(static_cast<uint64_t>(config.vocab_size)));
      row.ids.push_back(id);
      row.labels.push_back(id);
      row.attention_mask.push_back(1);
    }
  }
  esft::train::TrainOptions o;
  o.steps = s.steps + 1;  // the first step warms up
  o.batch_size = s.batch;
  o.gradient_accumulation_steps = 1;
  o.seq_length = s.seq;
  o.save_steps = o.eval_steps = 0;
  char dir_template[] = "/tmp/esft-bench-train.XXXXXX";
  const std::filesystem::path dir = mkdtemp(dir_template);
  std::vector<double> rates;
  {
    esft::train::Trainer trainer(*model, o, rows, {}, 0, device, dir, {});
    trainer.run(nullptr, [&](const esft::train::StepReport& step) {
      if (step.step > 1) rates.push_back(step.tokens_per_s);
    });
    r.trainable = trainer.trainable_numel();
    r.optimizer_bytes = trainer.optimizer().state_bytes();
  }
  std::filesystem::remove_all(dir);
  std::sort(rates.begin(), rates.end());
  r.tokens_per_s = rates[rates.size() / 2];
  return r;
}

// Runs train_once in a child process; its peak memory comes from wait4.
Result measure(const Settings& s, int64_t experts_per_layer) {
  int fds[2];
  if (pipe(fds) != 0) throw esft::Error("pipe failed");
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int code = 0;
    Result r;
    try {
      r = train_once(s, experts_per_layer);
    } catch (const std::exception& e) {
      std::cerr << "esft-bench-train: error: " << e.what() << "\n";
      code = 1;
    }
    if (write(fds[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) code = 1;
    _exit(code);
  }
  close(fds[1]);
  Result r;
  const auto got = read(fds[0], &r, sizeof r);
  close(fds[0]);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  if (got != static_cast<ssize_t>(sizeof r) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw esft::Error("the training child failed");
  }
  r.peak_rss_mib = static_cast<double>(usage.ru_maxrss) / 1024.0;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw esft::UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--family") s.family = value();
    else if (arg == "--batch") s.batch = std::stoll(value());
    else if (arg == "--seq") s.seq = std::stoll(value());
    else if (arg == "--steps") s.steps = std::stoll(value());
    else if (arg == "--esft-experts") s.esft_experts = std::stoll(value());
    else if (arg == "--device") s.device = value();
    else if (arg == "--dtype") s.dtype = value();
    else if (arg == "-h" || arg == "--help") {
      std::cout << "usage: esft-bench-train [--family F] [--batch N] [--seq N] [--steps N] [--esft-experts N] "
                   "[--device cpu|cuda] [--dtype float32|bfloat16]\n";
      return 0;
    } else {
      std::cerr << "esft-bench-train: error: unknown argument '" << arg << "'\n";
      return 2;
    }
  }
  try {
    // No ATen call here before the children fork: a forked OpenMP pool would hang.
    std::printf("esft-bench-train: %s, %ld cores; libtorch %s; %s %s on %s\n", cpu_model().c_str(),
                sysconf(_SC_NPROCESSORS_ONLN), ESFT_TORCH_VERSION_STRING, s.family.c_str(), s.dtype.c_str(),
                s.device.c_str());
    std::printf("sizes: %s\n", base_config().dump().c_str());
    std::printf("batch %lld x seq %lld tokens per step, AdamW + clipping, median of %lld steps after one warm-up\n\n",
                static_cast<long long>(s.batch), static_cast<long long>(s.seq), static_cast<long long>(s.steps));
    const Result esft_run = measure(s, s.esft_experts);
    const Result all_run = measure(s, 1 << 20);
    std::printf("| %-22s | %-14s | %12s | %10s | %15s | %14s |\n", "run", "experts", "trainable", "tokens/s",
                "optimizer state", "peak RSS");
    std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(24, '-').c_str(), std::string(16, '-').c_str(),
                std::string(14, '-').c_str(), std::string(12, '-').c_str(), std::string(17, '-').c_str(),
                std::string(16, '-').c_str());
    auto row = [](const char* name, const Result& r) {
      std::printf("| %-22s | %5lld of %-5lld | %11.2fM | %10.0f | %11.1f MiB | %10.0f MiB |\n", name,
                  static_cast<long long>(r.experts), static_cast<long long>(r.total_experts),
                  static_cast<double>(r.trainable) / 1e6, r.tokens_per_s,
                  static_cast<double>(r.optimizer_bytes) / 1048576.0, r.peak_rss_mib);
    };
    row("ESFT", esft_run);
    row("every expert trainable", all_run);
    std::printf("\nESFT / all experts: %.2fx tokens/s, %.2fx optimizer state, %.2fx peak RSS\n",
                esft_run.tokens_per_s / all_run.tokens_per_s,
                static_cast<double>(esft_run.optimizer_bytes) / static_cast<double>(all_run.optimizer_bytes),
                esft_run.peak_rss_mib / all_run.peak_rss_mib);
  } catch (const std::exception& e) {
    std::cerr << "esft-bench-train: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
