// `esft-host tokenizer train --input FILE[,FILE...] --vocab-size N --out DIR`: a byte-level BPE tokenizer learned
// from text (training from scratch needs one), written as tokenizer.json and tokenizer_config.json. Inputs are plain
// text or JSON lines whose "text" field is the text (TinyStories style), gzipped or not.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "../cli.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/tokenizer/bpe_trainer.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::host {

namespace {

namespace fs = std::filesystem;

const char* const kDefaultSpecialToken = "<|endoftext|>";

// Calls line(number, text) for each line of `content` (without its '\n') while it returns true.
template <typename Line>
void for_each_line(std::string_view content, const Line& line) {
  size_t pos = 0;
  for (int64_t number = 1; pos < content.size(); ++number) {
    const size_t end = std::min(content.find('\n', pos), content.size());
    if (!line(number, content.substr(pos, end - pos))) return;
    pos = end + 1;
  }
}

bool is_blank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

// JSON lines when the first line with anything on it is an object with a "text" string; plain text otherwise.
bool is_json_lines(std::string_view content) {
  bool json_lines = false;
  for_each_line(content, [&](int64_t, std::string_view line) {
    if (is_blank(line)) return true;
    const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    json_lines = record.is_object() && record.contains("text") && record.at("text").is_string();
    return false;
  });
  return json_lines;
}

// Feeds one input file to the trainer: a plain text file as one text, JSON lines record by record (a text never
// runs into the next record's). Returns what it read, for the progress line.
std::string add_input(tok::BpeTrainer& trainer, const fs::path& path) {
  const std::string content = tok::read_maybe_gzipped(path);
  if (!is_json_lines(content)) {
    try {
      trainer.add_text(content);
    } catch (const Error& e) {
      throw Error(path.string() + ": " + e.what());
    }
    return "plain text";
  }
  int64_t records = 0;
  for_each_line(content, [&](int64_t number, std::string_view line) {
    if (is_blank(line)) return true;
    const std::string where = path.string() + ":" + std::to_string(number);
    const auto record = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (record.is_discarded()) throw Error(where + ": malformed JSON");
    if (!record.is_object() || !record.contains("text") || !record.at("text").is_string())
      throw Error(where + ": no \"text\" string (the first record has one, so every record needs one)");
    try {
      trainer.add_text(record.at("text").get_ref<const std::string&>());
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    ++records;
    return true;
  });
  return std::to_string(records) + " JSON records";
}

// What transformers' AutoTokenizer and TokenizerConfig::load read: the first special token serves as BOS, EOS and
// padding (GPT-2's convention), and no BOS is added in front of samples.
nlohmann::ordered_json tokenizer_config(const std::string& special, int64_t model_max_length) {
  return {{"tokenizer_class", "PreTrainedTokenizerFast"},
          {"bos_token", special},
          {"eos_token", special},
          {"pad_token", special},
          {"add_bos_token", false},
          {"model_max_length", model_max_length},
          {"clean_up_tokenization_spaces", false}};
}

int train(const po::variables_map& vm) {
  const auto inputs = split_commas(vm["input"].as<std::string>());
  if (inputs.empty()) throw UsageError("--input names no file");
  const int64_t vocab_size = vm["vocab-size"].as<int64_t>();
  const int64_t min_frequency = vm["min-frequency"].as<int64_t>();
  const int64_t model_max_length = vm["model-max-length"].as<int64_t>();
  if (vocab_size <= 0) throw UsageError("--vocab-size must be positive");
  if (min_frequency < 0) throw UsageError("--min-frequency must not be negative");
  if (model_max_length <= 0) throw UsageError("--model-max-length must be positive");

  fs::path out = fs::absolute(vm["out"].as<std::string>()).lexically_normal();
  if (!out.has_filename()) out = out.parent_path();  // "dir/"
  std::error_code ec;
  if (fs::exists(out, ec) && (!fs::is_directory(out, ec) || !fs::is_empty(out, ec)))
    throw Error("output directory " + out.string() + " exists and is not empty");
  check_output_path(out, "--out");

  tok::BpeTrainerOptions options;
  options.vocab_size = static_cast<size_t>(vocab_size);
  options.min_frequency = static_cast<size_t>(min_frequency);
  options.special_tokens = vm.count("special-token") ? vm["special-token"].as<std::vector<std::string>>()
                                                     : std::vector<std::string>{kDefaultSpecialToken};
  options.progress = [](const std::string& line) { std::cerr << "tokenizer: " << line << "\n"; };
  tok::BpeTrainer trainer(options);

  const auto start = std::chrono::steady_clock::now();
  std::vector<std::string> read;  // reported once all inputs are known good: a refusal is one line on stderr
  for (const auto& input : inputs) read.push_back(input + " (" + add_input(trainer, input) + ")");
  if (trainer.words() == 0)
    throw Error("no text to train on in " + vm["input"].as<std::string>() + " (empty, or only special tokens)");
  for (const auto& line : read) std::cerr << "tokenizer: read " << line << "\n";
  std::cerr << "tokenizer: " << trainer.words() << " words, " << trainer.distinct_words() << " distinct\n";
  const auto json = trainer.train();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  AtomicDirectory partial(out);
  write_text_atomically(partial.path() / "tokenizer.json", json.dump(2) + "\n");
  write_text_atomically(partial.path() / "tokenizer_config.json",
                        tokenizer_config(options.special_tokens.front(), model_max_length).dump(2) + "\n");
  partial.commit();

  const size_t tokens = json.at("model").at("vocab").size();
  const size_t merges = json.at("model").at("merges").size();
  std::cout << "trained a byte-level BPE tokenizer of " << tokens << " tokens (" << options.special_tokens.size()
            << " special, 256 bytes, " << merges << " merges) from " << trainer.words() << " words in " << seconds
            << " s";
  if (tokens < options.vocab_size)
    std::cout << "; stopped early: no pair left occurs " << std::max<size_t>(1, options.min_frequency) << " times";
  std::cout << "; wrote " << out.string() << "\n";
  return 0;
}

}  // namespace

Command tokenizer_command() {
  Command c;
  c.name = "tokenizer";
  c.summary = "learn a byte-level BPE tokenizer from text (tokenizer.json, tokenizer_config.json)";
  c.usage = "tokenizer train --input FILE[,FILE...] --vocab-size N --out DIR [--min-frequency N] "
            "[--special-token TOK ...] [--model-max-length N]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("action", po::value<std::string>(), "what to do: train")
        ("input", po::value<std::string>()->required(),
         "comma-separated text files: plain text, or JSON lines with a \"text\" field; gzipped or not")
        ("vocab-size", po::value<int64_t>()->required(), "tokens at most: special tokens + 256 bytes + merges")
        ("out", po::value<std::string>()->required(), "new tokenizer directory: must not exist or be empty")
        ("min-frequency", po::value<int64_t>()->default_value(2), "merge only pairs seen at least this often")
        ("special-token", po::value<std::vector<std::string>>()->composing(),
         "a special token (repeatable), ids 0, 1, ... in order; the first is BOS, EOS and padding "
         "(default: <|endoftext|>)")
        ("model-max-length", po::value<int64_t>()->default_value(1024), "tokenizer_config.json's model_max_length");
  };
  c.positional = "action";
  c.run = [](const GlobalOptions&, const po::variables_map& vm) {
    if (!vm.count("action")) throw UsageError("tokenizer needs an action: tokenizer train ...");
    const auto action = vm["action"].as<std::string>();
    if (action != "train") throw UsageError("unknown tokenizer action '" + action + "' (the one action is train)");
    return train(vm);
  };
  return c;
}

}  // namespace esft::host
