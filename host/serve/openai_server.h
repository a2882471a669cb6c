#pragma once
// The routes of `esft-host serve`: GET / (the web chat page), GET /health, GET /v1/models,
// POST /v1/chat/completions and POST /v1/completions (whole answers or server-sent events ending with [DONE]),
// with the API key checked where one is set and every refusal as OpenAI's error JSON.
#include <string>

#include "serve/http_server.h"
#include "serve/openai_protocol.h"
#include "serve/scheduler.h"

namespace esft::host::serve {

class OpenAiService {
 public:
  // `api_key` empty: no key asked.
  OpenAiService(ServedModel model, Scheduler& scheduler, std::string api_key);
  void handle(const HttpRequest& request, HttpExchange& exchange);

 private:
  void complete(const HttpRequest& request, HttpExchange& exchange, bool chat);
  bool authorized(const HttpRequest& request) const;

  ServedModel model_;
  Scheduler& scheduler_;
  std::string api_key_;
  int64_t started_;
};

// The web chat page (host/serve/chat_page.html, compiled in).
const std::string& chat_page_html();

}  // namespace esft::host::serve
