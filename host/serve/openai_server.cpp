#include "serve/openai_server.h"

#include <ctime>
#include <sstream>

namespace esft::host::serve {

using json = nlohmann::json;

namespace {

// JSON text for the wire: bytes that are not UTF-8 (a model can emit any) become U+FFFD instead of an exception.
std::string text_of(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_error(HttpExchange& exchange, const ApiError& error) {
  std::map<std::string, std::string> headers;
  if (error.status == 503) headers["Retry-After"] = "1";
  if (error.status == 401) headers["WWW-Authenticate"] = "Bearer";
  exchange.respond(error.status, "application/json", text_of(error_body(error)), headers);
}

std::string rate_note(const JobProgress& progress) {
  std::ostringstream note;
  note.setf(std::ios::fixed);
  note.precision(1);
  const double seconds = progress.decode_seconds();
  note << progress.prompt_tokens() << "+" << progress.completion_tokens() << " tokens";
  if (seconds > 0) note << ", " << progress.completion_tokens() / seconds << " tokens/s";
  note << ", queued " << progress.queued_seconds() << " s";
  if (progress.finish_reason() == "cancelled") note << ", cancelled";
  return note.str();
}

}  // namespace

OpenAiService::OpenAiService(ServedModel model, Scheduler& scheduler, std::string api_key)
    : model_(std::move(model)), scheduler_(scheduler), api_key_(std::move(api_key)),
      started_(static_cast<int64_t>(std::time(nullptr))) {}

bool OpenAiService::authorized(const HttpRequest& request) const {
  return api_key_.empty() || request.header("authorization") == "Bearer " + api_key_;
}

void OpenAiService::handle(const HttpRequest& request, HttpExchange& exchange) {
  struct Route {
    const char* path;
    const char* method;
  };
  static const Route routes[] = {{"/", "GET"},
                                 {"/health", "GET"},
                                 {"/v1/models", "GET"},
                                 {"/v1/chat/completions", "POST"},
                                 {"/v1/completions", "POST"}};
  const Route* route = nullptr;
  for (const auto& r : routes)
    if (request.path == r.path) route = &r;
  try {
    if (!route) throw ApiError(404, "no route " + request.path + " (see GET /v1/models)", "", "not_found");
    if (request.method != route->method) {
      exchange.respond(405, "application/json",
                       text_of(error_body(ApiError(405, request.method + " is not allowed on " + request.path))),
                       {{"Allow", route->method}});
      return;
    }
    if (request.path == "/") {
      exchange.respond(200, "text/html; charset=utf-8", chat_page_html(), {{"Cache-Control", "no-cache"}});
      return;
    }
    if (request.path == "/health") {
      const auto stats = scheduler_.stats();
      exchange.respond(200, "application/json",
                       text_of({{"status", "ok"}, {"model", model_.id}, {"queued", stats.queued},
                                {"running", stats.running}, {"served", stats.served}}));
      return;
    }
    if (!authorized(request)) {
      throw ApiError(401, "a valid API key is needed (Authorization: Bearer KEY)", "", "invalid_api_key");
    }
    if (request.path == "/v1/models") {
      exchange.respond(200, "application/json", text_of(model_list(model_, started_)));
      return;
    }
    complete(request, exchange, request.path == "/v1/chat/completions");
  } catch (const ApiError& error) {
    send_error(exchange, error);
  } catch (const nlohmann::json::exception& e) {  // a field of an unexpected JSON type deep in the request
    send_error(exchange, ApiError(400, std::string("the request does not have the expected shape: ") + e.what()));
  }
}

void OpenAiService::complete(const HttpRequest& request, HttpExchange& exchange, bool chat) {
  const CompletionRequest parsed = chat ? parse_chat_request(request.body, model_)
                                        : parse_completion_request(request.body, model_);
  const auto progress = scheduler_.submit(parsed.job);
  if (!progress) throw ApiError(503, "the queue is full; try again later", "", "server_busy", "server_error");
  AnswerInfo info;
  info.id = new_completion_id(chat);
  info.model = model_.id;
  info.created = static_cast<int64_t>(std::time(nullptr));
  info.prompt_tokens = progress->prompt_tokens();
  const auto step = std::chrono::milliseconds(100);

  if (!parsed.stream) {
    std::string text;
    while (!progress->wait_for_text(text, step)) {
      if (exchange.client_gone()) {  // nobody is waiting for this answer any more
        progress->cancel();
        exchange.note("client gone before the answer");
        return;
      }
    }
    exchange.note(rate_note(*progress));
    if (!progress->error().empty()) {
      throw ApiError(500, "generation failed: " + progress->error(), "", "", "server_error");
    }
    info.completion_tokens = progress->completion_tokens();
    exchange.respond(200, "application/json", text_of(whole_answer(parsed, info, text, progress->finish_reason())));
    return;
  }

  bool open = exchange.start_events() && exchange.send_event(text_of(answer_chunk(parsed, info, "", "", true)));
  bool done = false;
  while (open && !done) {
    std::string text;
    done = progress->wait_for_text(text, step);
    if (!text.empty()) open = exchange.send_event(text_of(answer_chunk(parsed, info, text, "", false)));
    if (open && exchange.client_gone()) open = false;
  }
  if (!open) {
    progress->cancel();
    exchange.note("client gone mid-stream");
    return;
  }
  exchange.note(rate_note(*progress));
  if (!progress->error().empty()) {
    exchange.send_event(text_of(error_body(ApiError(500, "generation failed: " + progress->error(), "", "", "server_error"))));
  } else {
    info.completion_tokens = progress->completion_tokens();
    exchange.send_event(text_of(answer_chunk(parsed, info, "", progress->finish_reason(), false)));
    if (parsed.include_usage) exchange.send_event(text_of(usage_chunk(parsed, info)));
  }
  exchange.send_event("[DONE]");
  exchange.end_events();
}

}  // namespace esft::host::serve
