// `esft-host generate`: greedy decoding with the KV cache from token ids, a text prompt or a conversation.
#include <ATen/ATen.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <optional>

#include <nlohmann/json.hpp>

#include "../cli.h"
#include "esft/pipeline/any_adapter.h"
#include "esft/error.h"
#include "esft/model/chat_format.h"
#include "esft/model/generate.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::host {

namespace {

// The prompt's ids: --ids as given, or --prompt / --messages through the model's tokenizer (and chat format).
std::vector<int64_t> prompt_ids(const po::variables_map& vm, const LoadedModel& m, const tok::Tokenizer* tokenizer) {
  if (vm.count("ids")) return parse_token_ids(vm["ids"].as<std::string>(), "--ids", m.config.vocab_size);
  std::string text;
  if (vm.count("prompt")) {
    text = vm["prompt"].as<std::string>();
  } else {
    const std::string path = vm["messages"].as<std::string>();
    ChatOptions options;
    options.add_generation_prompt = true;
    options.enable_thinking = optional_true_false(vm, "enable-thinking");
    const auto messages = load_chat_messages(path);
    text = join_segments(m.family->chat_format().render(messages, options));
  }
  std::vector<int64_t> ids;
  for (int32_t id : tokenizer->encode(text)) {
    if (id >= m.config.vocab_size) {
      throw Error("the tokenizer gives id " + std::to_string(id) + ", outside the model's vocabulary of " +
                  std::to_string(m.config.vocab_size));
    }
    ids.push_back(id);
  }
  if (ids.empty()) throw UsageError("the prompt is empty");
  return ids;
}

}  // namespace

Command generate_command() {
  Command c;
  c.name = "generate";
  c.summary = "greedy decoding with the KV cache; from ids (prints ids) or text and chats (prints text)";
  c.usage = "generate --model DIR (--ids 1,2,3 | --prompt TEXT | --messages FILE.json) [--max-new-tokens N]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory")
        ("adapter", po::value<std::string>(),
         "adapter folder applied to the model: OUT/adapter of train (esft, router or lora), an ESFT reference adapter "
         "(expert_cfg.json + *.safetensors) or a PEFT LoRA adapter (adapter_config.json)")
        ("ids", po::value<std::string>(), "prompt token ids, comma-separated: prints prompt and generated ids")
        ("prompt", po::value<std::string>(), "prompt text (tokenizer.json of the model): prints the generated text")
        ("messages", po::value<std::string>(),
         "JSON conversation, rendered with the family's chat format and a generation prompt: prints the reply")
        ("enable-thinking", po::value<std::string>(), "with --messages: true | false (Qwen3's thinking switch)")
        ("max-new-tokens", po::value<int64_t>()->default_value(32), "tokens to generate at most");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const int64_t max_new = vm["max-new-tokens"].as<int64_t>();
    if (max_new < 0) throw UsageError("--max-new-tokens must be >= 0");
    if (vm.count("ids") + vm.count("prompt") + vm.count("messages") != 1) {
      throw UsageError("give exactly one of --ids, --prompt and --messages");
    }
    if (vm.count("enable-thinking") && !vm.count("messages")) throw UsageError("--enable-thinking applies to --messages");
    const std::filesystem::path model_dir = vm["model"].as<std::string>();
    const bool text_mode = !vm.count("ids");
    std::optional<tok::Tokenizer> tokenizer;
    if (text_mode) tokenizer = tok::Tokenizer::load(model_dir);  // before the weights: fail fast without one
    std::optional<pipeline::AnyAdapter> adapter;  // opened and checked before the expensive load
    if (vm.count("adapter")) {
      adapter = pipeline::AnyAdapter::open(vm["adapter"].as<std::string>());
      adapter->check_base(model_dir);
    }
    auto m = open_model(global, model_dir);
    if (adapter) {
      std::cerr << adapter->apply(*m.model, model_dir) << "\n";
    }
    const auto ids_in = prompt_ids(vm, m, tokenizer ? &*tokenizer : nullptr);
    auto prompt = at::tensor(ids_in, at::kLong).unsqueeze(0).to(m.device);

    const auto start = std::chrono::steady_clock::now();
    int64_t produced = 0;
    auto output = greedy_generate(*m.model, prompt, max_new, generation_stop_ids(m.config), [&](int64_t) { ++produced; });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    output = output.cpu();
    const auto* ids = output.data_ptr<int64_t>();
    if (text_mode) {
      const std::vector<int32_t> generated(ids + prompt.size(1), ids + output.size(1));
      std::cout << tokenizer->decode(generated, /*skip_special_tokens=*/true) << "\n";
    } else {
      for (int64_t i = 0; i < output.size(1); ++i) std::cout << (i ? "," : "") << ids[i];
      std::cout << "\n";
    }
    std::cerr << produced << " new tokens in " << seconds << " s (" << (seconds > 0 ? produced / seconds : 0.0)
              << " tokens/s)\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
