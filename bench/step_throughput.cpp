// esft next to Hugging Face transformers on the steps ESFT is made of, for each family at one larger random
// configuration (bench_models.h): the routing statistics pass, an ESFT training step (a few experts per layer
// trainable), a step with every routed expert trainable, a full fine-tuning step (every parameter), and LoRA steps
// (rank 8 on every linear layer; `lora-experts` adds the routers and one pair per routed expert; PEFT on the
// transformers side). The "ships" column is what the method's output holds: the trained tensors. esft runs
// its real code (the statistics pass that `scores` runs with its collector, the Trainer with AdamW and clipping);
// transformers runs what its users run (bench/hf_steps.py says exactly what). Each measurement is a process of its
// own, so its peak memory (resident set on the CPU, the CUDA allocator's peak on a GPU) is its own. All in one run,
// on the same batch, dtype, device and threads; --json FILE writes the figures as well.
//
//   esft-bench-steps [--families qwen3_moe,gpt_oss] [--modes stats,esft,experts,full,lora,lora-experts] [--batch 4] [--seq 256]
//                    [--repeat 3] [--esft-experts 13] [--device cpu|cuda] [--dtype float32|bfloat16]
//                    [--geometry bench|qwen3-30b-a3b] [--python PATH | --no-hf] [--json FILE]
// --geometry qwen3-30b-a3b measures qwen3_moe at Qwen3-30B-A3B's real sizes (4 layers; a GPU's work).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "bench_models.h"
#include "esft/compat.h"
#include "esft/error.h"
#include "esft/pipeline/lora_adapter.h"
#include "esft/pipeline/routing_collector.h"
#include "esft/pipeline/trainable.h"
#include "esft/runtime.h"
#include "esft/train/trainer.h"
#include "cli.h"
#include "plugin_loader.h"

namespace {

using namespace esft::bench;

struct Settings {
  std::vector<std::string> families, modes = {"stats", "esft", "experts", "full", "lora", "lora-experts"};
  int64_t batch = 4, seq = 256, repeat = 3, esft_experts = 13;
  std::string device = "cpu", dtype = "float32", geometry = "bench", python = ESFT_PYTHON, json_path;
  bool hf = true;
};

// One measurement, esft's or transformers'. Plain data: the child process writes it into a pipe.
struct Figures {
  bool measured = false;
  double tokens_per_s = 0, peak_mib = 0;
  int64_t trainable = 0;
  uint64_t optimizer_bytes = 0;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// The routing statistics pass as `esft-host scores` runs it: no gradients, the routing collector as the only hook,
// stopping once the last MoE layer has routed.
Figures stats_pass(esft::MoECausalLM& model, const esft::ModelConfig& config, const Settings& s,
                   const at::Device& device) {
  const auto moe = model.moe_layers();
  esft::pipeline::RoutingCollector collector(config.model_type, moe.front()->num_experts(), moe.front()->top_k(),
                                             /*legacy_logs=*/false);
  esft::ForwardOptions options;
  options.logits = esft::LogitsMode::None;
  options.routing_only = true;
  options.hooks.push_back(&collector);
  auto ids = at::randint(config.vocab_size, {s.batch, s.seq}, at::TensorOptions().dtype(at::kLong).device(device));
  auto mask = at::ones({s.batch, s.seq}, at::TensorOptions().dtype(at::kLong).device(device));
  at::NoGradGuard no_grad;
  std::vector<double> seconds;
  for (int64_t r = 0; r <= s.repeat; ++r) {
    collector.set_batch_shape(s.batch, s.seq);
    const auto start = std::chrono::steady_clock::now();
    model.forward(ids, mask, options);
    esft::synchronize(device);
    if (r > 0) seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  Figures f;
  f.tokens_per_s = static_cast<double>(s.batch * s.seq) / median(seconds);
  return f;
}

// Training steps with the real Trainer (AdamW, clipping); `mode` decides what trains.
Figures train_steps(esft::MoECausalLM& model, const esft::ModelFamily& family, const esft::ModelConfig& config,
                    const std::string& mode, const Settings& s, const at::Device& device) {
  if (mode == "lora" || mode == "lora-experts") {
    esft::pipeline::LoraConfig lora;  // rank 8, alpha 16
    if (mode == "lora-experts") lora.targets = {"all-linear", "gate", "router", "experts"};
    lora.targets.erase(std::remove_if(lora.targets.begin(), lora.targets.end(),
                                      [&](const std::string& t) { return t == (family.name() == "gpt_oss" ? "gate" : "router"); }),
                       lora.targets.end());
    esft::pipeline::attach_lora(model, lora);
  } else {
    esft::pipeline::ExpertConfig experts;
    for (auto* layer : model.moe_layers()) {
      const int64_t E = layer->num_experts(), n = mode == "esft" ? std::min(s.esft_experts, E) : E;
      auto& list = experts.experts[layer->layer_index()];
      for (int64_t i = 0; i < n; ++i) list.push_back(i * E / n);  // spread over the bank
    }
    experts.shared_experts = experts.non_expert_modules = mode == "full";
    esft::pipeline::apply_expert_config(model, family.naming(), experts);
  }

  esft::data::Random random(1);
  std::vector<esft::data::Row> rows(static_cast<size_t>(s.batch * (s.repeat + 1)));
  for (auto& row : rows) {
    for (int64_t t = 0; t < s.seq; ++t) {
      const auto id = static_cast<int32_t>(random.below(static_cast<uint64_t>(config.vocab_size)));
      row.ids.push_back(id);
      row.labels.push_back(id);
      row.attention_mask.push_back(1);
    }
  }
  esft::train::TrainOptions o;
  o.steps = s.repeat + 1;  // the first step warms up
  o.batch_size = s.batch;
  o.gradient_accumulation_steps = 1;
  o.seq_length = s.seq;
  o.save_steps = o.eval_steps = 0;
  char dir_template[] = "/tmp/esft-bench-steps.XXXXXX";
  const std::filesystem::path dir = mkdtemp(dir_template);
  std::vector<double> rates;
  Figures f;
  {
    esft::train::Trainer trainer(model, o, rows, {}, 0, device, dir, {});
    trainer.run(nullptr, [&](const esft::train::StepReport& step) {
      if (step.step > 1) rates.push_back(step.tokens_per_s);
    });
    f.trainable = trainer.trainable_numel();
    f.optimizer_bytes = trainer.optimizer().state_bytes();
  }
  std::filesystem::remove_all(dir);
  f.tokens_per_s = median(rates);
  return f;
}

// One esft measurement (in the child process).
Figures esft_once(const FamilyCase& fc, const std::string& mode, const Settings& s) {
  const auto device = esft::parse_device(s.device);
  const auto dtype = esft::parse_dtype(s.dtype, device);
  esft::host::PluginLoader loader(std::optional<std::filesystem::path>{});
  at::manual_seed(0);
  auto family = loader.load(fc.plugin);
  auto config = esft::ModelConfig::from_json(fc.config, "bench:" + fc.plugin);
  auto model = family->create(config, device, dtype);
  randomize(*model);
  auto f = mode == "stats" ? stats_pass(*model, config, s, device) : train_steps(*model, *family, config, mode, s, device);
  f.peak_mib = esft::peak_memory_mib(device);
  return f;
}

// Runs `work` in a forked child and returns the bytes it returns, or nullopt when it failed. A process of its own
// gives each measurement its own peak memory, and keeps CUDA out of the parent: a parent that initialised CUDA could
// not fork children that use it ("CUDA error: initialization error").
std::optional<std::string> in_child(const std::function<std::string()>& work) {
  int fds[2];
  if (pipe(fds) != 0) throw esft::Error("pipe failed");
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    int code = 0;
    try {
      const std::string bytes = work();
      if (write(fds[1], bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) code = 1;
    } catch (const std::exception& e) {
      std::cerr << "esft-bench-steps: error: " << e.what() << "\n";
      code = 1;
    }
    _exit(code);
  }
  close(fds[1]);
  std::string bytes;
  char buffer[4096];
  for (ssize_t n; (n = read(fds[0], buffer, sizeof buffer)) > 0;) bytes.append(buffer, static_cast<size_t>(n));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return bytes;
}

// esft_once in a child process (in_child).
Figures measure_esft(const FamilyCase& fc, const std::string& mode, const Settings& s) {
  const auto bytes = in_child([&] {
    Figures f;
    try {
      f = esft_once(fc, mode, s);
    } catch (const std::exception& e) {
      throw esft::Error(fc.plugin + " " + mode + ": " + e.what());
    }
    f.measured = true;
    return std::string(reinterpret_cast<const char*>(&f), sizeof f);
  });
  Figures f;
  if (!bytes || bytes->size() != sizeof f) return Figures{};
  std::memcpy(&f, bytes->data(), sizeof f);
  return f;
}

// The accelerators line of the header, asked in a child process (in_child).
std::string accelerators_line() {
  const auto line = in_child([] { return esft::describe_accelerators(esft::accelerators()); });
  return line && !line->empty() ? *line : "accelerators: unknown (the query failed)";
}

struct HfRun {
  Figures figures;
  std::string versions, implementation;  // "transformers 5.17.0, torch 2.11.0"; "sdpa, grouped_mm"
};

// transformers through bench/hf_steps.py, in its own process.
HfRun measure_hf(const FamilyCase& fc, const std::string& mode, const Settings& s) {
  char path[] = "/tmp/esft-bench-hf-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw esft::Error("cannot make a temporary file for the transformers configuration");
  const std::string text = fc.config.dump();
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  HfRun run;
  if (written) {
    const std::string command = "'" + s.python + "' '" ESFT_SOURCE_DIR "/bench/hf_steps.py' --config " + path +
                                " --mode " + mode + " --batch " + std::to_string(s.batch) + " --seq " +
                                std::to_string(s.seq) + " --repeat " + std::to_string(s.repeat) + " --device " +
                                s.device + " --dtype " + s.dtype + " --threads " +
                                std::to_string(at::get_num_threads()) + " --esft-experts " +
                                std::to_string(s.esft_experts) + " 2>/dev/null";
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
      std::string out;
      char buf[4096];
      while (std::fgets(buf, sizeof buf, pipe)) out = buf;  // the last line is the result
      if (::pclose(pipe) == 0) {
        const auto j = json::parse(out, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.contains("tokens_per_s")) {
          auto& f = run.figures;
          f.measured = true;
          f.tokens_per_s = j["tokens_per_s"].get<double>();
          f.peak_mib = j["peak_mib"].get<double>();
          f.trainable = j["trainable"].get<int64_t>();
          f.optimizer_bytes = j["optimizer_bytes"].get<uint64_t>();
          run.versions = "transformers " + j["transformers"].get<std::string>() + ", torch " + j["torch"].get<std::string>();
          auto name = [&](const char* key) { return j.value(key, json()).is_string() ? j[key].get<std::string>() : "?"; };
          run.implementation = name("attention") + ", " + name("experts");
        }
      }
    }
  }
  ::unlink(path);
  return run;
}

std::string cell(bool measured, const char* format, double v) {
  if (!measured) return "n/a";
  char buf[32];
  std::snprintf(buf, sizeof buf, format, v);
  return buf;
}

const char* mode_label(const std::string& mode) {
  if (mode == "stats") return "statistics pass";
  if (mode == "esft") return "ESFT step";
  if (mode == "experts") return "every-expert step";
  if (mode == "lora") return "LoRA step";
  if (mode == "lora-experts") return "LoRA+experts step";
  return "full FT step";
}

json figures_json(const Figures& f) {
  if (!f.measured) return nullptr;
  return {{"tokens_per_s", f.tokens_per_s}, {"peak_mib", f.peak_mib}, {"trainable", f.trainable},
          {"optimizer_bytes", f.optimizer_bytes}};
}

void usage() {
  std::cout << "usage: esft-bench-steps [--families a,b] [--modes stats,esft,experts,full,lora,lora-experts] [--batch N] [--seq N] "
               "[--repeat N] [--esft-experts N] [--device cpu|cuda] [--dtype float32|bfloat16] "
               "[--geometry bench|qwen3-30b-a3b] [--python PATH | --no-hf] [--json FILE]\n";
}

Settings parse_arguments(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw esft::UsageError(arg + " needs a value");
      return argv[++i];
    };
    auto positive = [&]() {
      const auto v = value();
      if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos || std::stoll(v) <= 0)
        throw esft::UsageError(arg + " needs a positive integer, not '" + v + "'");
      return static_cast<int64_t>(std::stoll(v));
    };
    if (arg == "--families") s.families = esft::host::split_commas(value());
    else if (arg == "--modes") s.modes = esft::host::split_commas(value());
    else if (arg == "--batch") s.batch = positive();
    else if (arg == "--seq") s.seq = positive();
    else if (arg == "--repeat") s.repeat = positive();
    else if (arg == "--esft-experts") s.esft_experts = positive();
    else if (arg == "--device") s.device = value();
    else if (arg == "--dtype") s.dtype = value();
    else if (arg == "--geometry") s.geometry = value();
    else if (arg == "--python") s.python = value();
    else if (arg == "--no-hf") s.hf = false;
    else if (arg == "--json") s.json_path = value();
    else throw esft::UsageError("unknown argument '" + arg + "'");
  }
  for (const auto& m : s.modes)
    if (m != "stats" && m != "esft" && m != "experts" && m != "full" && m != "lora" && m != "lora-experts")
      throw esft::UsageError("unknown mode '" + m + "' (expected stats, esft, experts, full, lora or lora-experts)");
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  esft::keep_freed_memory();
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "-h" || std::string(argv[i]) == "--help") return usage(), 0;
  }
  try {
    Settings s = parse_arguments(argc, argv);
    if (s.geometry != "bench" && s.geometry != "qwen3-30b-a3b")
      throw esft::UsageError("--geometry must be bench or qwen3-30b-a3b, not '" + s.geometry + "'");
    const bool real_sizes = s.geometry == "qwen3-30b-a3b";
    std::vector<FamilyCase> cases;
    for (const auto& fc : real_sizes ? std::vector<FamilyCase>{qwen3_30b_a3b_case()} : family_cases())
      if (s.families.empty() || std::find(s.families.begin(), s.families.end(), fc.plugin) != s.families.end())
        cases.push_back(fc);
    for (const auto& name : s.families)
      if (std::none_of(cases.begin(), cases.end(), [&](const FamilyCase& c) { return c.plugin == name; }))
        throw esft::UsageError("unknown family '" + name + "' in --families" +
                               (real_sizes ? " (--geometry qwen3-30b-a3b measures qwen3_moe only)" : ""));
    if (s.device != "cpu" && s.device.rfind("cuda", 0) != 0) throw esft::UsageError("--device must be cpu or cuda[:N]");
    if (s.dtype != "float32" && s.dtype != "bfloat16") throw esft::UsageError("--dtype must be float32 or bfloat16");
    const bool cuda = s.device != "cpu";

    const std::string machine = cpu_model() + ", " + std::to_string(at::get_num_threads()) + " threads";
    const auto accelerators = accelerators_line();
    std::printf("esft-bench-steps: %s; libtorch %s; %s on %s\n%s\n", machine.c_str(), ESFT_TORCH_VERSION_STRING,
                s.dtype.c_str(), s.device.c_str(), accelerators.c_str());
    if (s.hf && std::system(("'" + s.python + "' -c 'import transformers' >/dev/null 2>&1").c_str()) != 0) {
      std::printf("transformers: not importable by %s, so no side-by-side columns\n", s.python.c_str());
      s.hf = false;
    }
    const json sizes = real_sizes ? cases.front().config : base_config();
    std::printf("%s: %s\n", real_sizes ? "sizes" : "shared sizes", sizes.dump().c_str());
    std::printf("batch %lld x seq %lld = %lld tokens per step; median of %lld steps after one warm-up; ESFT trains "
                "%lld experts per layer; memory: %s\n\n",
                static_cast<long long>(s.batch), static_cast<long long>(s.seq), static_cast<long long>(s.batch * s.seq),
                static_cast<long long>(s.repeat), static_cast<long long>(s.esft_experts),
                cuda ? "the CUDA allocator's peak" : "peak resident set of the process");
    std::printf("| %-12s | %-17s | %10s | %10s | %6s | %9s | %9s | %6s | %10s | %10s | %10s | %10s |\n", "family", "step",
                "esft tok/s", "HF tok/s", "x", "esft MiB", "HF MiB", "mem x", "esft train", "HF train", "esft opt",
                "ships");
    std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(14, '-').c_str(), std::string(19, '-').c_str(),
                std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(8, '-').c_str(),
                std::string(11, '-').c_str(), std::string(11, '-').c_str(), std::string(8, '-').c_str(),
                std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(12, '-').c_str(),
                std::string(12, '-').c_str());

    json results = json::array();
    std::string hf_versions;
    bool failed = false;
    for (const auto& fc : cases) {
      for (const auto& mode : s.modes) {
        if (mode == "lora-experts" && fc.plugin == "gpt_oss") {  // its interleaved experts take no LoRA yet
          std::printf("| %-12s | %-17s | %s |\n", fc.plugin.c_str(), mode_label(mode), "not built: LoRA on gpt-oss' routed experts");
          continue;
        }
        const auto ours = measure_esft(fc, mode, s);
        HfRun hf;
        if (s.hf) hf = measure_hf(fc, mode, s);
        const auto& theirs = hf.figures;
        if (theirs.measured) hf_versions = hf.versions;
        failed = failed || !ours.measured;
        const bool both = ours.measured && theirs.measured;
        const bool train = mode != "stats";
        auto millions = [&](bool m, int64_t n) { return train ? cell(m, "%.2fM", static_cast<double>(n) / 1e6) : "-"; };
        const double ships = static_cast<double>(ours.trainable) * (s.dtype == "bfloat16" ? 2.0 : 4.0) / 1048576.0;
        std::printf("| %-12s | %-17s | %10s | %10s | %6s | %9s | %9s | %6s | %10s | %10s | %10s | %10s |\n",
                    fc.plugin.c_str(), mode_label(mode), cell(ours.measured, "%.0f", ours.tokens_per_s).c_str(),
                    cell(theirs.measured, "%.0f", theirs.tokens_per_s).c_str(),
                    cell(both, "%.2f", ours.tokens_per_s / theirs.tokens_per_s).c_str(),
                    cell(ours.measured, "%.0f", ours.peak_mib).c_str(), cell(theirs.measured, "%.0f", theirs.peak_mib).c_str(),
                    cell(both, "%.2f", ours.peak_mib / theirs.peak_mib).c_str(), millions(ours.measured, ours.trainable).c_str(),
                    millions(theirs.measured, theirs.trainable).c_str(),
                    train ? cell(ours.measured, "%.0f MiB", static_cast<double>(ours.optimizer_bytes) / 1048576.0).c_str() : "-",
                    train ? cell(ours.measured, "%.1f MiB", ships).c_str() : "-");
        std::fflush(stdout);
        results.push_back({{"family", fc.plugin}, {"mode", mode}, {"esft", figures_json(ours)},
                           {"transformers", figures_json(theirs)}, {"transformers_implementation", hf.implementation}});
      }
    }
    if (!hf_versions.empty()) std::printf("\nHF: %s (bench/hf_steps.py)\n", hf_versions.c_str());
    if (!s.json_path.empty()) {
      const json doc = {{"program", "esft-bench-steps"}, {"machine", machine}, {"accelerators", accelerators},
                        {"libtorch", ESFT_TORCH_VERSION_STRING}, {"transformers", hf_versions}, {"device", s.device},
                        {"dtype", s.dtype}, {"batch", s.batch}, {"seq", s.seq}, {"repeat", s.repeat},
                        {"esft_experts", s.esft_experts}, {"geometry", s.geometry}, {"config", sizes},
                        {"results", results}};
      std::ofstream(s.json_path) << doc.dump(2) << "\n";
    }
    if (failed) {
      std::cerr << "esft-bench-steps: error: some esft measurements failed (see above)\n";
      return 1;
    }
  } catch (const esft::UsageError& e) {
    std::cerr << "esft-bench-steps: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "esft-bench-steps: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
