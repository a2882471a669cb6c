// `esft-host chat`: a conversation rendered with the model family's chat format (its chat template).
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "../cli.h"
#include "esft/error.h"
#include "esft/model/chat_format.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::host {

Command chat_command() {
  Command c;
  c.name = "chat";
  c.summary = "render a conversation with the family's chat format; optionally its token ids";
  c.usage = "chat --model DIR --messages FILE.json [--add-generation-prompt] [--enable-thinking true|false] [--ids]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory (config.json; tokenizer.json for --ids)")
        ("messages", po::value<std::string>()->required(),
         "JSON file: a list of {\"role\", \"content\"} or an object with \"messages\"")
        ("add-generation-prompt", po::bool_switch(), "end with the prompt for the assistant's next turn")
        ("enable-thinking", po::value<std::string>(), "true | false: Qwen3's thinking switch (default: the template's)")
        ("date", po::value<std::string>(), "YYYY-MM-DD for formats that print a date (gpt-oss; default: today, UTC)")
        ("ids", po::bool_switch(), "print the token ids of the rendering instead of the text");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    const std::filesystem::path model_dir = vm["model"].as<std::string>();
    const auto config = ModelConfig::load(model_dir);
    const auto family = resolve_family(global, config);

    const std::string path = vm["messages"].as<std::string>();
    const auto messages = load_chat_messages(path);

    ChatOptions options;
    options.add_generation_prompt = vm["add-generation-prompt"].as<bool>();
    options.enable_thinking = optional_true_false(vm, "enable-thinking");
    if (vm.count("date")) options.date = vm["date"].as<std::string>();
    const auto rendered = join_segments(family->chat_format().render(messages, options));
    if (!vm["ids"].as<bool>()) {
      std::cout << rendered;
      if (rendered.empty() || rendered.back() != '\n') std::cout << "\n";
      return 0;
    }
    const auto ids = tok::Tokenizer::load(model_dir).encode(rendered);
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? "," : "") << ids[i];
    std::cout << "\n";
    return 0;
  };
  return c;
}

}  // namespace esft::host
