#pragma once
// The OpenAI API's shapes, as `esft-host serve` speaks them: chat-completion and completion requests read into
// generation jobs (with the family's chat format and the model's tokenizer), and the JSON of answers, stream chunks,
// the model list and errors. No I/O here: the server (openai_server.cpp) moves these over HTTP.
//
// Beyond OpenAI's fields, requests may carry the ones local servers commonly accept: top_k, repetition_penalty,
// ignore_eos, and chat_template_kwargs.enable_thinking (Qwen3's switch).
#include <nlohmann/json.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "esft/model/chat_format.h"
#include "esft/tokenizer/tokenizer.h"
#include "serve/scheduler.h"

namespace esft::host::serve {

// An answer the client caused: an HTTP status and OpenAI's error object.
struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& message, std::string param = "", std::string code = "",
           std::string type = "invalid_request_error")
      : std::runtime_error(message), status(status), param(std::move(param)), code(std::move(code)),
        type(std::move(type)) {}
  int status;
  std::string param, code, type;
};

// What the requests are read against.
struct ServedModel {
  std::string id;  // the name clients give as "model"
  const ChatFormat* chat_format = nullptr;
  const tok::Tokenizer* tokenizer = nullptr;
  int64_t vocab_size = 0;
  int64_t context_length = 0;  // max_position_embeddings; 0: unknown (no check)
  std::vector<int64_t> stop_ids;
  int64_t default_max_tokens = 256;  // when a request sets none (and the context leaves room)
};

struct CompletionRequest {
  CompletionJob job;
  bool chat = true;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the token counts
};

// Throw ApiError (400, 404 for another model's name) for what cannot be served.
CompletionRequest parse_chat_request(const std::string& body, const ServedModel& model);
CompletionRequest parse_completion_request(const std::string& body, const ServedModel& model);

// "chatcmpl-..." or "cmpl-...": a fresh random id.
std::string new_completion_id(bool chat);

struct AnswerInfo {
  std::string id, model;
  int64_t created = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;
};

nlohmann::json whole_answer(const CompletionRequest& request, const AnswerInfo& info, const std::string& text,
                            const std::string& finish_reason);
// A stream chunk with `text` (chat: the first also says role "assistant"); a non-empty finish_reason ends the choice.
nlohmann::json answer_chunk(const CompletionRequest& request, const AnswerInfo& info, const std::string& text,
                            const std::string& finish_reason, bool first);
nlohmann::json usage_chunk(const CompletionRequest& request, const AnswerInfo& info);
nlohmann::json model_list(const ServedModel& model, int64_t created);
nlohmann::json error_body(const ApiError& error);

}  // namespace esft::host::serve
