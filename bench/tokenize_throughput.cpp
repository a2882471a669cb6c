// Tokenizer encode throughput, single thread, on a few MB of mixed text (by default the texts of the public
// tokenizer fixtures, joined and repeated: English, CJK, Korean, Russian, code, numbers, emoji, whitespace runs),
// and the same measurement for Hugging Face's `tokenizers` (Rust) when the project's Python (.venv, or --python) can
// import it. --json FILE writes the figures as well.
//
//   esft-bench-tokenize [--tokenizer FILE]... [--input TEXT_FILE] [--megabytes 4] [--repeat 3] [--python PATH]
//                       [--json FILE]
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "bench_models.h"
#include "esft/error.h"
#include "esft/tokenizer/tokenizer.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// The fixture texts, one document per line of the fixture, repeated until `megabytes` is reached.
std::vector<std::string> default_corpus(double megabytes) {
  std::vector<std::string> base;
  for (const char* name : {"qwen3.public.jsonl"}) {
    std::ifstream in(fs::path(ESFT_TEST_DATA_DIR) / "tok" / name);
    if (!in) throw esft::Error(std::string("cannot open the fixture ") + name);
    for (std::string line; std::getline(in, line);) base.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  }
  // Documents of about 64 KB: joined fixture lines.
  std::vector<std::string> docs;
  std::string doc;
  size_t total = 0;
  for (size_t i = 0; total < megabytes * 1e6; i = (i + 1) % base.size()) {
    doc += base[i];
    doc += '\n';
    total += base[i].size() + 1;
    if (doc.size() >= 65536) docs.push_back(std::move(doc)), doc.clear();
  }
  if (!doc.empty()) docs.push_back(doc);
  return docs;
}

std::vector<std::string> file_corpus(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw esft::Error("cannot open " + path.string());
  std::vector<std::string> docs;
  std::string doc;
  for (std::string line; std::getline(in, line);) {
    doc += line + "\n";
    if (doc.size() >= 65536) docs.push_back(std::move(doc)), doc.clear();
  }
  if (!doc.empty()) docs.push_back(doc);
  return docs;
}

std::string python = ESFT_PYTHON;  // --python

// MB/s of the `tokenizers` library on the same documents, or a negative value when the Python cannot import it.
double rust_rate(const fs::path& tokenizer_file, const std::vector<std::string>& docs, int repeat) {
  if (std::system(("'" + python + "' -c 'import tokenizers' >/dev/null 2>&1").c_str()) != 0) return -1;
  const auto dir = fs::temp_directory_path() / ("esft_bench_tok_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << esft::tok::read_maybe_gzipped(tokenizer_file);
  {
    nlohmann::json j = docs;
    std::ofstream(dir / "docs.json") << j.dump();
  }
  std::ofstream(dir / "run.py") << "import json, sys, time\n"
                                   "from tokenizers import Tokenizer\n"
                                   "tok = Tokenizer.from_file(sys.argv[1] + '/tokenizer.json')\n"
                                   "docs = json.load(open(sys.argv[1] + '/docs.json'))\n"
                                   "size = sum(len(d.encode()) for d in docs)\n"
                                   "best = None\n"
                                   "for _ in range(" << repeat << " + 1):\n"
                                   "    t = time.perf_counter()\n"
                                   "    for d in docs: tok.encode(d, add_special_tokens=False)\n"
                                   "    t = time.perf_counter() - t\n"
                                   "    best = t if best is None else min(best, t)\n"
                                   "print(size / best / 1e6)\n";
  const std::string command = "RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false '" + python + "' " + (dir / "run.py").string() + " " +
                              dir.string();
  double rate = -1;
  if (FILE* p = popen(command.c_str(), "r")) {
    if (std::fscanf(p, "%lf", &rate) != 1) rate = -1;
    pclose(p);
  }
  fs::remove_all(dir);
  return rate;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<fs::path> tokenizers;
  fs::path input, json_path;
  double megabytes = 4;
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "esft-bench-tokenize: error: " << arg << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--tokenizer") tokenizers.push_back(value());
    else if (arg == "--input") input = value();
    else if (arg == "--megabytes") megabytes = std::stod(value());
    else if (arg == "--repeat") repeat = std::stoi(value());
    else if (arg == "--python") python = value();
    else if (arg == "--json") json_path = value();
    else if (arg == "-h" || arg == "--help") {
      std::cout << "usage: esft-bench-tokenize [--tokenizer FILE]... [--input TEXT_FILE] [--megabytes N] [--repeat N] "
                   "[--python PATH] [--json FILE]\n";
      return 0;
    } else {
      std::cerr << "esft-bench-tokenize: error: unknown argument '" << arg << "'\n";
      return 2;
    }
  }
  try {
    if (tokenizers.empty()) {
      for (const char* name : {"qwen3", "gptoss"})
        tokenizers.push_back(fs::path(ESFT_TEST_DATA_DIR) / "tokenizers" / (std::string(name) + ".tokenizer.json.gz"));
    }
    const auto docs = input.empty() ? default_corpus(megabytes) : file_corpus(input);
    size_t bytes = 0;
    for (const auto& d : docs) bytes += d.size();
    const std::string machine = esft::bench::cpu_model() + ", 1 thread";
    std::printf("esft-bench-tokenize: %s; %.2f MB in %zu documents (%s); best of %d after a warm-up\n\n",
                machine.c_str(), static_cast<double>(bytes) / 1e6, docs.size(),
                input.empty() ? "fixture texts" : input.c_str(), repeat);
    nlohmann::json results = nlohmann::json::array();
    std::printf("| %-26s | %7s | %10s | %12s | %14s | %9s |\n", "tokenizer", "load s", "esft MB/s", "esft tok/s",
                "tokenizers MB/s", "esft/rust");
    std::printf("|%s|%s|%s|%s|%s|%s|\n", std::string(28, '-').c_str(), std::string(9, '-').c_str(),
                std::string(12, '-').c_str(), std::string(14, '-').c_str(), std::string(17, '-').c_str(),
                std::string(11, '-').c_str());
    for (const auto& path : tokenizers) {
      auto start = Clock::now();
      const auto tok = esft::tok::Tokenizer::load(path);
      const double load = seconds_since(start);
      double best = 1e30;
      size_t tokens = 0;
      for (int r = 0; r <= repeat; ++r) {
        tokens = 0;
        start = Clock::now();
        for (const auto& d : docs) tokens += tok.encode(d).size();
        if (r > 0) best = std::min(best, seconds_since(start));  // run 0 warms the word cache, as Rust's
      }
      const double ours = static_cast<double>(bytes) / best / 1e6;
      const double rust = rust_rate(path, docs, repeat);
      char rust_text[32] = "not installed", ratio[32] = "-";
      if (rust > 0) std::snprintf(rust_text, sizeof rust_text, "%.2f", rust), std::snprintf(ratio, sizeof ratio, "%.2fx", ours / rust);
      std::printf("| %-26s | %7.2f | %10.2f | %12.0f | %15s | %9s |\n", path.filename().c_str(), load, ours,
                  static_cast<double>(tokens) / best, rust_text, ratio);
      std::fflush(stdout);
      results.push_back({{"tokenizer", path.filename().string()}, {"load_s", load}, {"esft_mb_s", ours},
                         {"esft_tokens_s", static_cast<double>(tokens) / best},
                         {"tokenizers_mb_s", rust > 0 ? nlohmann::json(rust) : nlohmann::json(nullptr)}});
    }
    if (!json_path.empty()) {
      const nlohmann::json doc = {{"program", "esft-bench-tokenize"}, {"machine", machine}, {"megabytes", bytes / 1e6},
                                  {"repeat", repeat}, {"results", results}};
      std::ofstream(json_path) << doc.dump(2) << "\n";
    }
  } catch (const std::exception& e) {
    std::cerr << "esft-bench-tokenize: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
