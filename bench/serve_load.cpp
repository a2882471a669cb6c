// esft-bench-serve: `esft-host serve` under concurrent clients. For each server setting (--max-batch) and client count
// it starts the server on a free loopback port, sends every client's requests (chat completions at temperature 0,
// alternately whole and streamed, ignore_eos so that every answer has max_tokens tokens), checks each answer equals
// the one the same prompt gets alone, and prints requests/s, latency percentiles and generated tokens/s.
//   esft-bench-serve [--model DIR] [--clients 1,32] [--requests 4] [--max-tokens 16] [--max-batch 1,8]
// Exits 1 when an answer is wrong or a request fails.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../tests/http_client.h"
#include "../tests/serve_process.h"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

std::vector<int> numbers(const std::string& text) {
  std::vector<int> out;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = text.find(',', at);
    out.push_back(std::stoi(text.substr(at, comma - at)));
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

struct Settings {
  std::string model = ESFT_SOURCE_DIR "/examples/tiny-model";
  std::vector<int> clients = {1, 32};
  int requests = 4;
  int max_tokens = 16;
  std::vector<int> max_batch = {1, 8};
};

const std::vector<std::string> kPrompts = {"dim the lights", "what is the weather", "play some jazz",
                                           "set an alarm for seven", "open the garage", "call my sister"};

std::string body(const std::string& prompt, int max_tokens, bool stream) {
  return json{{"messages", {{{"role", "user"}, {"content", prompt}}}},
              {"temperature", 0},
              {"max_tokens", max_tokens},
              {"ignore_eos", true},
              {"stream", stream}}
      .dump();
}

// The answer's text and its completion tokens; throws on a failed request.
std::pair<std::string, int> ask(uint16_t port, const std::string& prompt, int max_tokens, bool stream) {
  const auto reply = http_client::request(port, "POST", "/v1/chat/completions", body(prompt, max_tokens, stream));
  if (reply.status != 200 || !reply.complete) throw std::runtime_error("HTTP " + std::to_string(reply.status));
  if (!stream) {
    const json j = json::parse(reply.body);
    return {j["choices"][0]["message"]["content"], j["usage"]["completion_tokens"]};
  }
  std::string text;
  for (size_t i = 0; i + 1 < reply.events.size(); ++i) {
    const json chunk = json::parse(reply.events[i]);
    if (!chunk["choices"].empty()) text += chunk["choices"][0]["delta"].value("content", "");
  }
  return {text, max_tokens};  // ignore_eos: every answer runs to max_tokens
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(p * static_cast<double>(values.size() - 1) + 0.5));
  return values[index];
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return argv[++i];
    };
    try {
      if (arg == "--model") s.model = value();
      else if (arg == "--clients") s.clients = numbers(value());
      else if (arg == "--requests") s.requests = std::stoi(value());
      else if (arg == "--max-tokens") s.max_tokens = std::stoi(value());
      else if (arg == "--max-batch") s.max_batch = numbers(value());
      else if (arg == "-h" || arg == "--help") {
        std::cout << "usage: esft-bench-serve [--model DIR] [--clients 1,32] [--requests 4] [--max-tokens 16] "
                     "[--max-batch 1,8]\n";
        return 0;
      } else {
        throw std::runtime_error("unknown argument " + arg);
      }
    } catch (const std::exception& e) {
      std::cerr << "esft-bench-serve: error: " << e.what() << "\n";
      return 2;
    }
  }
  const unsigned cores = std::thread::hardware_concurrency();
  std::printf("esft-bench-serve: %s; %u cores; chat completions at temperature 0, %d tokens each (ignore_eos), "
              "half streamed; answers checked against each prompt alone\n\n",
              s.model.c_str(), cores, s.max_tokens);
  std::printf("| %-9s | %-7s | %-8s | %8s | %9s | %9s | %10s | %6s |\n", "max-batch", "clients", "requests", "req/s",
              "p50 s", "p99 s", "tokens/s", "wrong");
  std::printf("|-----------|---------|----------|----------|-----------|-----------|------------|--------|\n");
  bool all_right = true;
  try {
    for (const int batch : s.max_batch) {
      ServeProcess server(ESFT_BIN_DIR "/esft-host", {"--model", s.model, "--max-batch", std::to_string(batch),
                                                      "--max-queue", "4096", "--access-log", "/dev/null"});
      std::vector<std::string> expected;
      for (const auto& p : kPrompts) expected.push_back(ask(server.port(), p, s.max_tokens, false).first);
      for (const int clients : s.clients) {
        std::vector<double> latencies;
        std::mutex mutex;
        std::atomic<int> wrong{0};
        std::atomic<long> tokens{0};
        std::vector<std::thread> threads;
        const auto start = Clock::now();
        for (int c = 0; c < clients; ++c) {
          threads.emplace_back([&, c] {
            for (int r = 0; r < s.requests; ++r) {
              const size_t which = static_cast<size_t>(c * s.requests + r) % kPrompts.size();
              const auto begin = Clock::now();
              try {
                const auto [text, n] = ask(server.port(), kPrompts[which], s.max_tokens, (c + r) % 2 == 1);
                if (text != expected[which]) ++wrong;
                tokens += n;
              } catch (const std::exception&) {
                ++wrong;
              }
              std::lock_guard<std::mutex> lock(mutex);
              latencies.push_back(std::chrono::duration<double>(Clock::now() - begin).count());
            }
          });
        }
        for (auto& t : threads) t.join();
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        const int total = clients * s.requests;
        std::printf("| %9d | %7d | %8d | %8.2f | %9.3f | %9.3f | %10.1f | %6d |\n", batch, clients, total,
                    total / seconds, percentile(latencies, 0.5), percentile(latencies, 0.99),
                    static_cast<double>(tokens) / seconds, wrong.load());
        std::fflush(stdout);
        all_right = all_right && wrong == 0;
      }
      server.stop();
    }
  } catch (const std::exception& e) {
    std::cerr << "esft-bench-serve: error: " << e.what() << "\n";
    return 1;
  }
  if (!all_right) {
    std::cerr << "esft-bench-serve: error: some answers were wrong or failed (see the table)\n";
    return 1;
  }
  return 0;
}
