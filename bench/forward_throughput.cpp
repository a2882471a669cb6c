// Forward, full fine-tuning (forward + backward, every parameter trainable) and ESFT step (forward + backward with
// only 6 of 64 experts per layer trainable, everything else frozen) throughput of every family on one larger random
// configuration, through the same plugins esft-host loads. Weights are random (no checkpoint needed); the
// configuration is printed with the table.
//
//   esft-bench-forward [--batch 4] [--seq 256] [--repeat 3] [--device cpu|cuda] [--dtype float32|bfloat16]
//                      [--families qwen3_moe,gpt_oss]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
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
#include "esft/losses.h"
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

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 4, seq = 256, repeat = 3;
  std::string device_name = "cpu", dtype_name = "float32", only;
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
    else if (arg == "-h" || arg == "--help") {
      std::cout << "usage: esft-bench-forward [--batch N] [--seq N] [--repeat N] [--device cpu|cuda] "
                   "[--dtype float32|bfloat16] [--families a,b]\n";
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

    std::printf("esft-bench-forward: %s, %d threads; libtorch %s; %s on %s\n", cpu_model().c_str(),
                at::get_num_threads(), ESFT_TORCH_VERSION_STRING, esft::dtype_label(dtype), device.str().c_str());
    std::printf("shared sizes: %s\n", base_config().dump().c_str());
    std::printf("batch %lld x seq %lld = %lld tokens per step; median of %lld after one warm-up\n\n",
                static_cast<long long>(batch), static_cast<long long>(seq), static_cast<long long>(batch * seq),
                static_cast<long long>(repeat));
    std::printf("| %-12s | %-52s | %8s | %13s | %13s | %13s |\n", "family", "configuration", "params",
                "forward tok/s", "full FT tok/s", "ESFT tok/s");
    std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(14, '-').c_str(), std::string(54, '-').c_str(),
                std::string(10, '-').c_str(), std::string(15, '-').c_str(), std::string(15, '-').c_str(),
                std::string(15, '-').c_str());

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
      std::printf("| %-12s | %-52s | %7.1fM | %13.0f | %13.0f | %13.0f |\n", fc.plugin.c_str(), fc.note.c_str(),
                  static_cast<double>(params) / 1e6, forward_rate, full_rate, esft_rate);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::cerr << "esft-bench-forward: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
