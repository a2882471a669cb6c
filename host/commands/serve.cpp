// `esft-host serve`: the model (with an adapter, if given) behind an OpenAI-compatible HTTP API and a web chat page,
// until SIGINT or SIGTERM, which let the requests in flight finish. See host/serve/.
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "../cli.h"
#include "esft/error.h"
#include "esft/pipeline/any_adapter.h"
#include "esft/tokenizer/tokenizer.h"
#include "serve/http_server.h"
#include "serve/openai_server.h"
#include "serve/scheduler.h"

namespace esft::host {

namespace {

int64_t positive(const po::variables_map& vm, const std::string& name, int64_t high) {
  const int64_t value = vm[name].as<int64_t>();
  if (value < 1 || value > high) throw UsageError("--" + name + " must be in [1, " + std::to_string(high) + "]");
  return value;
}

bool loopback(const std::string& host) { return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0; }

}  // namespace

Command serve_command() {
  Command c;
  c.name = "serve";
  c.several_devices = true;
  c.summary = "an OpenAI-compatible HTTP server (chat and text completions, streaming) with a web chat page at /";
  c.usage = "serve --model DIR [--adapter DIR] [--host 127.0.0.1] [--port 8000] [--api-key-env NAME]";
  c.add_options = [](po::options_description& d) {
    d.add_options()
        ("model", po::value<std::string>()->required(), "model directory (with tokenizer.json)")
        ("adapter", po::value<std::string>(), "adapter folder applied to the model (as generate's --adapter)")
        ("host", po::value<std::string>()->default_value("127.0.0.1"), "address to listen on")
        ("port", po::value<int64_t>()->default_value(8000), "port to listen on (0: a free port, printed)")
        ("api-key-env", po::value<std::string>(),
         "environment variable holding the API key that requests must send (Authorization: Bearer KEY)")
        ("served-model-name", po::value<std::string>(), "the model's name in the API (default: the model folder's)")
        ("max-batch", po::value<int64_t>()->default_value(8), "requests decoded together at most")
        ("max-queue", po::value<int64_t>()->default_value(64), "requests waiting at most (more: 503)")
        ("max-connections", po::value<int64_t>()->default_value(64), "open connections at most (more: 503)")
        ("max-body-bytes", po::value<int64_t>()->default_value(1 << 20), "request body size limit (more: 413)")
        ("request-timeout", po::value<double>()->default_value(10),
         "seconds a request may take to arrive (slower: 408); kept-alive connections idle 30 s at most")
        ("default-max-tokens", po::value<int64_t>()->default_value(256), "max_tokens of requests that give none")
        ("access-log", po::value<std::string>(), "file the access log is appended to (default: standard error)");
  };
  c.run = [](const GlobalOptions& global, const po::variables_map& vm) {
    // Before any thread exists (LibTorch starts pools while loading): the server takes SIGINT/SIGTERM itself.
    serve::block_stop_signals();
    const std::filesystem::path model_dir = vm["model"].as<std::string>();
    const std::string host = vm["host"].as<std::string>();
    const int64_t port = vm["port"].as<int64_t>();
    if (port < 0 || port > 65535) throw UsageError("--port must be in [0, 65535]");
    serve::HttpLimits limits;
    limits.max_connections = static_cast<int>(positive(vm, "max-connections", 4096));
    limits.max_body_bytes = static_cast<size_t>(positive(vm, "max-body-bytes", int64_t(1) << 30));
    const double timeout = vm["request-timeout"].as<double>();
    if (!(timeout > 0 && timeout <= 3600)) throw UsageError("--request-timeout must be in (0, 3600] seconds");
    limits.request_time = std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
    const int64_t max_batch = positive(vm, "max-batch", 256);
    const int64_t max_queue = positive(vm, "max-queue", 100000);
    std::string api_key;
    if (vm.count("api-key-env")) {
      const std::string name = vm["api-key-env"].as<std::string>();
      const char* value = std::getenv(name.c_str());
      if (!value || !*value) throw UsageError("--api-key-env " + name + ": that environment variable is not set");
      api_key = value;
    }
    std::optional<std::ofstream> log_file;
    if (vm.count("access-log")) {
      log_file.emplace(vm["access-log"].as<std::string>(), std::ios::app);
      if (!*log_file) throw Error("cannot open --access-log " + vm["access-log"].as<std::string>());
    }

    const auto tokenizer = tok::Tokenizer::load(model_dir);  // before the weights: fail fast without one
    std::optional<pipeline::AnyAdapter> adapter;
    if (vm.count("adapter")) {
      adapter = pipeline::AnyAdapter::open(vm["adapter"].as<std::string>());
      adapter->check_base(model_dir);
    }
    auto m = open_model(global, model_dir);
    if (adapter) std::cerr << adapter->apply(*m.model, model_dir) << "\n";
    m.model->eval();

    serve::ServedModel served;
    served.id = vm.count("served-model-name") ? vm["served-model-name"].as<std::string>()
                                              : std::filesystem::absolute(model_dir).lexically_normal().filename().string();
    if (served.id.empty()) served.id = std::filesystem::absolute(model_dir).parent_path().filename().string();
    served.chat_format = &m.family->chat_format();
    served.tokenizer = &tokenizer;
    served.vocab_size = m.config.vocab_size;
    served.context_length = m.config.max_position_embeddings;
    served.stop_ids = generation_stop_ids(m.config);
    served.default_max_tokens = positive(vm, "default-max-tokens", 1 << 20);

    serve::Scheduler scheduler(*m.model, tokenizer, max_batch, max_queue);
    serve::OpenAiService service(served, scheduler, api_key);
    auto log = [&](const std::string& line) {
      if (log_file) (*log_file << line << "\n").flush();
      else std::cerr << line << std::endl;
    };
    serve::HttpServer server(host, static_cast<uint16_t>(port), limits,
                             [&](const serve::HttpRequest& r, serve::HttpExchange& e) { service.handle(r, e); }, log);
    const std::string shown_host = host.find(':') != std::string::npos ? "[" + host + "]" : host;
    std::cerr << "esft-host: serving '" << served.id << "' at http://" << shown_host << ":" << server.port()
              << "/ (OpenAI API under /v1, web chat at /); SIGINT or SIGTERM stops" << std::endl;
    if (!loopback(host) && api_key.empty()) {
      std::cerr << "esft-host: warning: listening on " << host << " without an API key (--api-key-env)" << std::endl;
    }
    const std::string signal = server.run(/*watch_signals=*/true);  // returns once open requests are answered
    scheduler.drain();
    std::cerr << "esft-host: " << signal << ": stopped after " << scheduler.stats().served << " generation requests"
              << std::endl;
    return 0;
  };
  return c;
}

}  // namespace esft::host
