// Forward, full fine-tuning (forward + backward, every parameter trainable) and ESFT step (forward + backward with
// only 6 of 64 experts per layer trainable, everything else frozen) throughput of every family on one larger random
// configuration, through the same plugins esft-host loads. Weights are random (no checkpoint needed); the
// configuration is printed with the table. Next to each family, Hugging Face transformers on the same configuration,
// batch, dtype, device and threads (bench/hf_forward.py, run by --python: the project's .venv by default), and the
// ratios esft / transformers, all measured in this one run.
//
//   esft-bench-forward [--batch 4] [--seq 256] [--repeat 3] [--device cpu|cuda] [--dtype float32|bfloat16]
//                      [--families qwen3_moe,gpt_oss] [--python PATH | --no-hf]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench_models.h"
#include "esft/compat.h"
#include "esft/error.h"
#include "esft/model/losses.h"
#include "esft/runtime.h"
#include "plugin_loader.h"

namespace {

using namespace esft::bench;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double time_ms(const at::Device& device, F&& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  esft::synchronize(device);
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

struct HfRates {
  bool measured = false;
  double forward = 0, full = 0;
  std::string versions;        // "transformers 5.17.0, torch 2.11.0+cu130"
  std::string implementation;  // transformers' attention and experts implementations: "sdpa, grouped_mm"
};

// transformers on `config` through bench/hf_forward.py, in its own process.
HfRates measure_hf(const std::string& python, const json& config, int64_t batch, int64_t seq, int64_t repeat,
                   const std::string& device, const std::string& dtype) {
  char path[] = "/tmp/esft-bench-hf-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw esft::Error("cannot make a temporary file for the transformers configuration");
  const std::string text = config.dump();
  const bool written = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  HfRates r;
  if (written) {
    const std::string command = "'" + python + "' '" ESFT_SOURCE_DIR "/bench/hf_forward.py' --config " + path +
                                " --batch " + std::to_string(batch) + " --seq " + std::to_string(seq) +
                                " --repeat " + std::to_string(repeat) + " --device " + device + " --dtype " + dtype +
                                " --threads " + std::to_string(at::get_num_threads()) + " 2>/dev/null";
    if (FILE* pipe = ::popen(command.c_str(), "r")) {
      std::string out;
      char buf[4096];
      while (std::fgets(buf, sizeof buf, pipe)) out = buf;  // the last line is the result
      if (::pclose(pipe) == 0) {
        const auto j = json::parse(out, nullptr, /*allow_exceptions=*/false);
        if (j.is_object() && j.contains("forward_tok_s")) {
          r.measured = true;
          r.forward = j["forward_tok_s"].get<double>();
          r.full = j["full_tok_s"].get<double>();
          r.versions = "transformers " + j["transformers"].get<std::string>() + ", torch " + j["torch"].get<std::string>();
          auto name = [&](const char* key) { return j.value(key, json()).is_string() ? j[key].get<std::string>() : "?"; };
          r.implementation = name("attention") + ", " + name("experts");
        }
      }
    }
  }
  ::unlink(path);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 4, seq = 256, repeat = 3;
  std::string device_name = "cpu", dtype_name = "float32", only, python = ESFT_PYTHON;
  bool hf = true;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw esft::UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--batch") batch = std::stoll(value());
    else if (arg == "--seq") seq = std::stoll(value());
    else if (arg == "--repeat") repeat = std::stoll(value());
    else if (arg == "--device") device_name = value();
    else if (arg == "--dtype") dtype_name = value();
    else if (arg == "--families") only = "," + value() + ",";
    else if (arg == "--python") python = value();
    else if (arg == "--no-hf") hf = false;
    else if (arg == "-h" || arg == "--help") {
      std::cout << "usage: esft-bench-forward [--batch N] [--seq N] [--repeat N] [--device cpu|cuda] "
                   "[--dtype float32|bfloat16] [--families a,b] [--python PATH | --no-hf]\n";
      return 0;
    } else {
      std::cerr << "esft-bench-forward: error: unknown argument '" << arg << "'\n";
      return 2;
    }
  }
  try {
    const auto device = esft::parse_device(device_name);
    const auto dtype = esft::parse_dtype(dtype_name, device);
    esft::host::PluginLoader loader(std::optional<std::filesystem::path>{});

    std::printf("esft-bench-forward: %s, %d threads; libtorch %s; %s on %s\n%s\n", cpu_model().c_str(),
                at::get_num_threads(), ESFT_TORCH_VERSION_STRING, esft::dtype_label(dtype), device.str().c_str(),
                esft::describe_accelerators(esft::accelerators()).c_str());
    if (hf && std::system(("'" + python + "' -c 'import transformers' >/dev/null 2>&1").c_str()) != 0) {
      std::printf("transformers: not importable by %s, so no side-by-side columns\n", python.c_str());
      hf = false;
    }
    std::printf("shared sizes: %s\n", base_config().dump().c_str());
    std::printf("batch %lld x seq %lld = %lld tokens per step; median of %lld after one warm-up\n\n",
                static_cast<long long>(batch), static_cast<long long>(seq), static_cast<long long>(batch * seq),
                static_cast<long long>(repeat));
    std::printf("| %-12s | %-52s | %8s | %13s | %13s | %13s | %10s | %10s | %7s | %7s | %-18s |\n", "family",
                "configuration", "params", "forward tok/s", "full FT tok/s", "ESFT tok/s", "HF fwd", "HF FT",
                "fwd x", "FT x", "HF attn, experts");
    std::printf("|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n", std::string(14, '-').c_str(), std::string(54, '-').c_str(),
                std::string(10, '-').c_str(), std::string(15, '-').c_str(), std::string(15, '-').c_str(),
                std::string(15, '-').c_str(), std::string(12, '-').c_str(), std::string(12, '-').c_str(),
                std::string(9, '-').c_str(), std::string(9, '-').c_str(), std::string(20, '-').c_str());
    std::string hf_versions;

    for (const auto& fc : family_cases()) {
      if (!only.empty() && only.find("," + fc.plugin + ",") == std::string::npos) continue;
      at::manual_seed(0);
      auto family = loader.load(fc.plugin);
      auto config = esft::ModelConfig::from_json(fc.config, "bench:" + fc.plugin);
      auto model = family->create(config, device, dtype);
      randomize(*model);
      int64_t params = 0;
      for (const auto& b : model->checkpoint_bindings()) params += b.numel();

      auto ids = at::randint(config.vocab_size, {batch, seq}, at::TensorOptions().dtype(at::kLong).device(device));
      auto mask = at::ones({batch, seq}, at::TensorOptions().dtype(at::kLong).device(device));
      auto labels = esft::labels_from_inputs(ids, mask);
      auto forward = [&] {
        at::NoGradGuard no_grad;
        model->forward(ids, mask, {});
      };
      auto train_step = [&] {
        model->zero_grad(/*set_to_none=*/false);  // reuse gradient buffers, as a trainer does
        esft::causal_lm_loss(model->forward(ids, mask, {}).logits, labels).backward();
      };
      auto measure = [&](const std::function<void()>& step) {
        std::vector<double> ms;
        for (int64_t r = 0; r <= repeat; ++r) {
          const double t = time_ms(device, step);
          if (r > 0) ms.push_back(t);  // run 0 warms up
        }
        return static_cast<double>(batch * seq) / (median(ms) / 1e3);
      };
      const double forward_rate = measure(forward);
      const double full_rate = measure(train_step);
      // ESFT: only experts 0..5 of each MoE layer train; attention, norms, embeddings, routers are frozen.
      for (auto& p : model->named_parameters())
        if (p.key().find(".experts.") == std::string::npos) p.value().set_requires_grad(false);
      for (auto* layer : model->moe_layers()) layer->set_trainable_experts({0, 1, 2, 3, 4, 5});
      const double esft_rate = measure(train_step);
      model.reset();  // free the device before transformers' process uses it
      HfRates hf_rates;
      if (hf) {
        hf_rates = measure_hf(python, fc.config, batch, seq, repeat, device.str(), esft::dtype_label(dtype));
        if (hf_rates.measured) hf_versions = hf_rates.versions;
      }
      auto cell = [&](double v, const char* format) {
        char buf[32];
        if (!hf_rates.measured) return std::string("n/a");
        std::snprintf(buf, sizeof buf, format, v);
        return std::string(buf);
      };
      std::printf("| %-12s | %-52s | %7.1fM | %13.0f | %13.0f | %13.0f | %10s | %10s | %7s | %7s | %-18s |\n",
                  fc.plugin.c_str(), fc.note.c_str(), static_cast<double>(params) / 1e6, forward_rate, full_rate,
                  esft_rate, cell(hf_rates.forward, "%.0f").c_str(), cell(hf_rates.full, "%.0f").c_str(),
                  cell(forward_rate / hf_rates.forward, "%.2f").c_str(), cell(full_rate / hf_rates.full, "%.2f").c_str(),
                  hf_rates.measured ? hf_rates.implementation.c_str() : "n/a");
      std::fflush(stdout);
    }
    if (!hf_versions.empty()) std::printf("\nHF: %s (bench/hf_forward.py)\n", hf_versions.c_str());
  } catch (const std::exception& e) {
    std::cerr << "esft-bench-forward: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
