// `esft-host generate`: decoding with the KV cache from token ids, a text prompt or a conversation: greedy by
// default, or sampled (temperature, top-p, top-k, repetition penalty, seed), one sequence or several in one batch,
// ending at the model's stop tokens, --stop strings or --max-new-tokens.
#include <ATen/ATen.h>

#include <chrono>
#include <fstream>
#include <iostream>
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

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
  c.several_devices = true;
  c.summary = "greedy or sampled decoding with the KV cache; from ids (prints ids) or text and chats (prints text)";
  c.usage = "generate --model DIR (--ids 1,2,3 | --prompt TEXT | --messages FILE.json) [--max-new-tokens N] "
            "[--temperature T --top-p P --top-k K --repetition-penalty R --seed S] [--stop TEXT]... [--num-sequences N]";
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
        ("max-new-tokens", po::value<int64_t>()->default_value(32), "tokens to generate at most")
        ("temperature", po::value<double>()->default_value(0), "0: greedy (argmax); above 0: sample")
        ("top-p", po::value<double>()->default_value(1), "sample from the most likely tokens covering this probability")
        ("top-k", po::value<int64_t>()->default_value(0), "sample from the k most likely tokens (0: all)")
        ("repetition-penalty", po::value<double>()->default_value(1), "CTRL's penalty on tokens already seen (1: none)")
        ("seed", po::value<uint64_t>()->default_value(0), "seed of the draws (sequence i uses seed + i)")
        ("stop", po::value<std::vector<std::string>>(), "text that ends the answer (not printed); repeatable; text modes")
        ("num-sequences", po::value<int64_t>()->default_value(1), "answers to the same prompt, decoded in one batch");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const int64_t max_new = vm["max-new-tokens"].as<int64_t>();
    if (max_new < 0) throw UsageError("--max-new-tokens must be >= 0");
    if (vm.count("ids") + vm.count("prompt") + vm.count("messages") != 1) {
      throw UsageError("give exactly one of --ids, --prompt and --messages");
    }
    if (vm.count("enable-thinking") && !vm.count("messages")) throw UsageError("--enable-thinking applies to --messages");
    SamplingSettings sampling;
    sampling.temperature = vm["temperature"].as<double>();
    sampling.top_p = vm["top-p"].as<double>();
    sampling.top_k = vm["top-k"].as<int64_t>();
    sampling.repetition_penalty = vm["repetition-penalty"].as<double>();
    sampling.seed = vm["seed"].as<uint64_t>();
    try {
      sampling.validate();
    } catch (const Error& e) {  // "top_p must be ..." names the setting as the OpenAI API does; here it is --top-p
      std::string message = e.what();
      std::replace(message.begin(), message.begin() + static_cast<std::ptrdiff_t>(message.find(' ')), '_', '-');
      throw UsageError("--" + message);
    }
    const int64_t sequences = vm["num-sequences"].as<int64_t>();
    if (sequences < 1 || sequences > 256) throw UsageError("--num-sequences must be in [1, 256]");
    const auto stops = vm.count("stop") ? vm["stop"].as<std::vector<std::string>>() : std::vector<std::string>{};
    for (const auto& stop : stops)
      if (stop.empty()) throw UsageError("--stop needs a non-empty text");
    if (!stops.empty() && vm.count("ids")) throw UsageError("--stop applies to --prompt and --messages (text)");
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

    std::vector<GenerationRequest> requests(static_cast<size_t>(sequences));
    for (size_t i = 0; i < requests.size(); ++i) {
      auto& r = requests[i];
      r.prompt = ids_in;
      r.max_new_tokens = max_new;
      r.sampling = sampling;
      r.sampling.seed = sampling.seed + i;
      r.stop_ids = generation_stop_ids(m.config);
    }
    // Stop strings are found in the decoded text as it grows; the sequence ends at the first.
    std::vector<std::vector<int32_t>> generated(requests.size());
    auto text_of = [&](size_t i) { return tokenizer->decode(generated[i], /*skip_special_tokens=*/true); };
    auto stop_at = [&](const std::string& text) {
      size_t cut = std::string::npos;
      for (const auto& stop : stops) cut = std::min(cut, text.find(stop));
      return cut;
    };
    const auto start = std::chrono::steady_clock::now();
    int64_t produced = 0;
    const auto results = generate_batch(*m.model, requests, 0, [&](size_t i, int64_t token) {
      ++produced;
      generated[i].push_back(static_cast<int32_t>(token));
      return stops.empty() || stop_at(text_of(i)) == std::string::npos;
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

    for (size_t i = 0; i < results.size(); ++i) {
      if (results.size() > 1) std::cout << "[" << i << "] ";
      if (text_mode) {
        auto text = text_of(i);
        if (const auto cut = stop_at(text); cut != std::string::npos) text.resize(cut);
        std::cout << text << "\n";
      } else {
        std::vector<int64_t> all(ids_in);
        all.insert(all.end(), results[i].tokens.begin(), results[i].tokens.end());
        for (size_t k = 0; k < all.size(); ++k) std::cout << (k ? "," : "") << all[k];
        std::cout << "\n";
      }
    }
    std::cerr << produced << " new tokens in " << seconds << " s (" << (seconds > 0 ? produced / seconds : 0.0)
              << " tokens/s)\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
