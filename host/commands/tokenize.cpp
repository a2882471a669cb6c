// `esft-host tokenize`: text to token ids and back with a model's tokenizer.json, one string or a JSON-lines file.
#include <chrono>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "../cli.h"
#include "esft/error.h"
#include "esft/io/atomic_file.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::host {

namespace {

// Reads IN.jsonl and writes each line back with `to_field` added: ids of the "text" string, or (decoding) the text
// of the "ids" list. Any bad line stops the run with its line number; the output appears only when complete.
void convert_file(const tok::Tokenizer& tokenizer, const std::filesystem::path& in_path,
                  const std::filesystem::path& out_path, bool decode, bool skip_special) {
  std::ifstream in(in_path);
  if (!in) throw Error("cannot open " + in_path.string());
  AtomicFile out(out_path);
  const char* from_field = decode ? "ids" : "text";
  const auto start = std::chrono::steady_clock::now();
  int64_t lines = 0, tokens = 0, bytes = 0;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines carry nothing
    const std::string where = in_path.string() + ":" + std::to_string(number);
    nlohmann::ordered_json record;  // keeps the user's field order
    try {
      record = nlohmann::ordered_json::parse(line);
    } catch (const nlohmann::json::exception&) {
      throw Error(where + ": malformed JSON");
    }
    if (!record.is_object() || !record.contains(from_field)) {
      throw Error(where + ": no \"" + from_field + "\" field");
    }
    try {
      if (decode) {
        const auto ids = record.at("ids").get<std::vector<int32_t>>();
        record["text"] = tokenizer.decode(ids, skip_special);
        tokens += static_cast<int64_t>(ids.size());
      } else {
        const auto text = record.at("text").get<std::string>();
        const auto ids = tokenizer.encode(text);
        record["ids"] = ids;
        tokens += static_cast<int64_t>(ids.size());
        bytes += static_cast<int64_t>(text.size());
      }
    } catch (const nlohmann::json::exception&) {
      throw Error(where + ": \"" + from_field + "\" must be " + (decode ? "a list of token ids" : "a string"));
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    out.stream() << record.dump() << "\n";
    if (++lines % 100000 == 0) std::cerr << "tokenize: " << lines << " lines\n";
  }
  out.commit();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "tokenize: " << lines << " lines, " << tokens << " tokens";
  if (!decode && seconds > 0) std::cerr << ", " << bytes / seconds / 1e6 << " MB/s";
  std::cerr << " -> " << out_path.string() << "\n";
}

}  // namespace

Command tokenize_command() {
  Command c;
  c.name = "tokenize";
  c.summary = "text to token ids (or back) with a tokenizer.json: one string, or a JSON-lines file";
  c.usage = "tokenize --tokenizer FILE_OR_MODEL_DIR (--text TEXT | --ids 1,2,3 | --input IN.jsonl --out OUT.jsonl "
            "[--decode])";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("tokenizer", po::value<std::string>()->required(), "tokenizer.json (may be gzipped) or a model directory")
        ("text", po::value<std::string>(), "one string: print its ids, comma-separated")
        ("ids", po::value<std::string>(), "comma-separated ids: print their text")
        ("input", po::value<std::string>(), "JSON lines with a \"text\" field (\"ids\" with --decode)")
        ("out", po::value<std::string>(), "where to write the lines with \"ids\" (\"text\" with --decode) added")
        ("decode", po::bool_switch(), "with --input: decode each line's \"ids\" instead of encoding \"text\"")
        ("skip-special-tokens", po::bool_switch(), "leave special tokens out of decoded text");
  };
  c.run = [](const GlobalOptions&, const po::variables_map& vm) {
    const int modes = static_cast<int>(vm.count("text")) + static_cast<int>(vm.count("ids")) + static_cast<int>(vm.count("input"));
    if (modes != 1) throw UsageError("give exactly one of --text, --ids and --input");
    if (vm.count("input") != vm.count("out")) throw UsageError("--input and --out go together");
    if (vm["decode"].as<bool>() && !vm.count("input")) throw UsageError("--decode applies to --input (use --ids for one list)");
    if (vm.count("out")) check_output_path(vm["out"].as<std::string>(), "--out");

    const auto tokenizer = tok::Tokenizer::load(vm["tokenizer"].as<std::string>());
    const bool skip_special = vm["skip-special-tokens"].as<bool>();
    if (vm.count("text")) {
      const auto ids = tokenizer.encode(vm["text"].as<std::string>());
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? "," : "") << ids[i];
      std::cout << "\n";
    } else if (vm.count("ids")) {
      const auto wide = parse_token_ids(vm["ids"].as<std::string>(), "--ids", static_cast<int64_t>(tokenizer.vocab_size()));
      const std::vector<int32_t> ids(wide.begin(), wide.end());
      std::cout << tokenizer.decode(ids, skip_special) << "\n";
    } else {
      convert_file(tokenizer, vm["input"].as<std::string>(), vm["out"].as<std::string>(), vm["decode"].as<bool>(),
                   skip_special);
    }
    return 0;
  };
  return c;
}

}  // namespace esft::host
