#include "serve/openai_protocol.h"

#include <cmath>
#include <random>
#include <sstream>

#include "esft/error.h"

namespace esft::host::serve {

using json = nlohmann::json;

namespace {

json parse_body(const std::string& body) {
  json request = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) throw ApiError(400, "the request body is not valid JSON");
  if (!request.is_object()) throw ApiError(400, "the request body must be a JSON object");
  return request;
}

std::string shown(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

double number_in(const json& request, const char* name, double fallback, double low, double high, bool open_low) {
  if (!request.contains(name) || request[name].is_null()) return fallback;
  if (!request[name].is_number()) throw ApiError(400, std::string(name) + " must be a number", name);
  const double value = request[name].get<double>();
  if (!std::isfinite(value) || (open_low ? value <= low : value < low) || value > high) {
    throw ApiError(400, std::string(name) + " must be in " + (open_low ? "(" : "[") + shown(low) + ", " + shown(high) +
                            "], not " + request[name].dump(),
                   name);
  }
  return value;
}

std::optional<int64_t> integer(const json& request, const char* name) {
  if (!request.contains(name) || request[name].is_null()) return std::nullopt;
  if (!request[name].is_number_integer()) throw ApiError(400, std::string(name) + " must be an integer", name);
  return request[name].get<int64_t>();
}

bool flag(const json& request, const char* name) {
  if (!request.contains(name) || request[name].is_null()) return false;
  if (!request[name].is_boolean()) throw ApiError(400, std::string(name) + " must be true or false", name);
  return request[name].get<bool>();
}

// The fields both endpoints share: sampling, limits, stops, streaming, and what is refused.
void read_common(const json& request, const ServedModel& model, CompletionRequest& out) {
  if (request.contains("model") && !request["model"].is_null()) {
    if (!request["model"].is_string()) throw ApiError(400, "model must be a string", "model");
    if (request["model"] != model.id) {
      throw ApiError(404, "the model '" + request["model"].get<std::string>() + "' does not exist; this server serves '" +
                              model.id + "'",
                     "model", "model_not_found");
    }
  }
  if (const auto n = integer(request, "n"); n && *n != 1) throw ApiError(400, "n must be 1 here", "n");
  for (const char* unsupported : {"presence_penalty", "frequency_penalty"}) {
    if (request.contains(unsupported) && !request[unsupported].is_null() &&
        !(request[unsupported].is_number() && request[unsupported].get<double>() == 0)) {
      throw ApiError(400, std::string(unsupported) + " is not supported (repetition_penalty is)", unsupported);
    }
  }
  if (request.contains("logprobs") && !request["logprobs"].is_null() && request["logprobs"] != false &&
      request["logprobs"] != 0) {
    throw ApiError(400, "logprobs are not supported", "logprobs");
  }
  if (request.contains("tools") && request["tools"].is_array() && !request["tools"].empty()) {
    throw ApiError(400, "tools are not supported", "tools");
  }
  auto& sampling = out.job.generation.sampling;
  sampling.temperature = number_in(request, "temperature", 1.0, 0, 2, false);
  sampling.top_p = number_in(request, "top_p", 1.0, 0, 1, true);
  if (const auto k = integer(request, "top_k")) {
    if (*k < -1) throw ApiError(400, "top_k must be >= 0 (0 or -1: every token)", "top_k");
    sampling.top_k = std::max<int64_t>(*k, 0);
  }
  sampling.repetition_penalty = number_in(request, "repetition_penalty", 1.0, 0, 1e6, true);
  if (const auto seed = integer(request, "seed")) {
    sampling.seed = static_cast<uint64_t>(*seed);
  } else {
    sampling.seed = (static_cast<uint64_t>(std::random_device{}()) << 32) | std::random_device{}();
  }
  if (request.contains("stop") && !request["stop"].is_null()) {
    const json& stop = request["stop"];
    std::vector<std::string> stops;
    if (stop.is_string()) {
      stops.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4) {
      for (const auto& s : stop) {
        if (!s.is_string()) throw ApiError(400, "stop must be a string or a list of up to 4 strings", "stop");
        stops.push_back(s.get<std::string>());
      }
    } else {
      throw ApiError(400, "stop must be a string or a list of up to 4 strings", "stop");
    }
    for (const auto& s : stops)
      if (s.empty()) throw ApiError(400, "stop strings must not be empty", "stop");
    out.job.stops = stops;
  }
  out.stream = flag(request, "stream");
  if (request.contains("stream_options") && request["stream_options"].is_object()) {
    out.include_usage = flag(request["stream_options"], "include_usage");
  }
  out.job.generation.stop_ids = flag(request, "ignore_eos") ? std::vector<int64_t>{} : model.stop_ids;

  // max_tokens (max_completion_tokens is the chat API's newer name) within what the context leaves.
  const int64_t prompt = static_cast<int64_t>(out.job.generation.prompt.size());
  const int64_t room = model.context_length > 0 ? model.context_length - prompt : INT64_MAX;
  if (room < 1) {
    throw ApiError(400, "the prompt has " + std::to_string(prompt) + " tokens; the model's context is " +
                            std::to_string(model.context_length),
                   "messages", "context_length_exceeded");
  }
  std::optional<int64_t> max_tokens = integer(request, "max_completion_tokens");
  const char* max_name = "max_completion_tokens";
  if (!max_tokens) {
    max_tokens = integer(request, "max_tokens");
    max_name = "max_tokens";
  }
  if (max_tokens) {
    if (*max_tokens < 1) throw ApiError(400, std::string(max_name) + " must be at least 1", max_name);
    if (*max_tokens > room) {
      throw ApiError(400, "the prompt's " + std::to_string(prompt) + " tokens and " + max_name + " " +
                              std::to_string(*max_tokens) + " exceed the model's context of " +
                              std::to_string(model.context_length),
                     max_name, "context_length_exceeded");
    }
    out.job.generation.max_new_tokens = *max_tokens;
  } else {
    out.job.generation.max_new_tokens = std::min(model.default_max_tokens, room);
  }
  try {
    sampling.validate();
  } catch (const Error& e) {
    throw ApiError(400, e.what());
  }
}

std::vector<int64_t> encode(const ServedModel& model, const std::string& text, const char* param) {
  std::vector<int64_t> ids;
  for (int32_t id : model.tokenizer->encode(text)) {
    if (id >= model.vocab_size) {
      throw ApiError(400, "the tokenizer gives id " + std::to_string(id) + ", outside the model's vocabulary", param);
    }
    ids.push_back(id);
  }
  if (ids.empty()) throw ApiError(400, "the prompt is empty", param);
  return ids;
}

// OpenAI's message forms, brought to the chat format's: content as a list of text parts joins into one string,
// "developer" is the newer name of "system".
json normalized_messages(const json& messages) {
  if (!messages.is_array() || messages.empty()) throw ApiError(400, "messages must be a non-empty list", "messages");
  json out = json::array();
  for (const auto& message : messages) {
    if (!message.is_object()) throw ApiError(400, "each message must be an object", "messages");
    json m = {{"role", message.value("role", json())}, {"content", message.value("content", json())}};
    if (m["role"] == "developer") m["role"] = "system";
    if (m["content"].is_array()) {
      std::string text;
      for (const auto& part : m["content"]) {
        if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string()) {
          throw ApiError(400, "only text content parts are supported", "messages");
        }
        text += part["text"].get<std::string>();
      }
      m["content"] = text;
    } else if (m["content"].is_null() && m["role"] == "assistant") {
      m["content"] = "";
    }
    if (message.contains("reasoning_content") && message["reasoning_content"].is_string()) {
      m["reasoning_content"] = message["reasoning_content"];
    }
    out.push_back(m);
  }
  return out;
}

json usage_json(const AnswerInfo& info) {
  return {{"prompt_tokens", info.prompt_tokens},
          {"completion_tokens", info.completion_tokens},
          {"total_tokens", info.prompt_tokens + info.completion_tokens}};
}

json finish_json(const std::string& finish_reason) {
  // "cancelled" and "error" never reach a client that is still there; OpenAI knows "stop" and "length".
  return finish_reason.empty() ? json() : json(finish_reason == "length" ? "length" : "stop");
}

}  // namespace

CompletionRequest parse_chat_request(const std::string& body, const ServedModel& model) {
  const json request = parse_body(body);
  if (!request.contains("messages")) throw ApiError(400, "messages is required", "messages");
  std::vector<ChatMessage> messages;
  try {
    messages = parse_chat_messages(normalized_messages(request["messages"]), "messages");
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
  ChatOptions options;
  options.add_generation_prompt = true;
  if (request.contains("chat_template_kwargs") && request["chat_template_kwargs"].is_object()) {
    const json& kwargs = request["chat_template_kwargs"];
    if (kwargs.contains("enable_thinking")) {
      if (!kwargs["enable_thinking"].is_boolean()) {
        throw ApiError(400, "chat_template_kwargs.enable_thinking must be true or false", "chat_template_kwargs");
      }
      options.enable_thinking = kwargs["enable_thinking"].get<bool>();
    }
  }
  std::string text;
  try {
    text = join_segments(model.chat_format->render(messages, options));
  } catch (const Error& e) {
    throw ApiError(400, e.what(), "messages");
  }
  CompletionRequest out;
  out.chat = true;
  out.job.generation.prompt = encode(model, text, "messages");
  read_common(request, model, out);
  return out;
}

CompletionRequest parse_completion_request(const std::string& body, const ServedModel& model) {
  const json request = parse_body(body);
  if (!request.contains("prompt")) throw ApiError(400, "prompt is required", "prompt");
  json prompt = request["prompt"];
  if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) prompt = prompt[0];
  CompletionRequest out;
  out.chat = false;
  if (prompt.is_string()) {
    out.job.generation.prompt = encode(model, prompt.get<std::string>(), "prompt");
  } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {  // token ids
    for (const auto& id : prompt) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= model.vocab_size) {
        throw ApiError(400, "prompt token ids must be integers in [0, " + std::to_string(model.vocab_size) + ")",
                       "prompt");
      }
      out.job.generation.prompt.push_back(id.get<int64_t>());
    }
  } else {
    throw ApiError(400, "prompt must be a string, a list of one string, or a list of token ids", "prompt");
  }
  if (flag(request, "echo")) throw ApiError(400, "echo is not supported", "echo");
  if (request.contains("suffix") && !request["suffix"].is_null()) throw ApiError(400, "suffix is not supported", "suffix");
  read_common(request, model, out);
  return out;
}

std::string new_completion_id(bool chat) {
  static thread_local std::mt19937_64 random{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string id = chat ? "chatcmpl-" : "cmpl-";
  for (int i = 0; i < 24; ++i) id += digits[random() % 16];
  return id;
}

json whole_answer(const CompletionRequest& request, const AnswerInfo& info, const std::string& text,
                  const std::string& finish_reason) {
  json choice = {{"index", 0}, {"finish_reason", finish_json(finish_reason)}, {"logprobs", nullptr}};
  if (request.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  return {{"id", info.id},
          {"object", request.chat ? "chat.completion" : "text_completion"},
          {"created", info.created},
          {"model", info.model},
          {"choices", json::array({choice})},
          {"usage", usage_json(info)}};
}

json answer_chunk(const CompletionRequest& request, const AnswerInfo& info, const std::string& text,
                  const std::string& finish_reason, bool first) {
  json choice = {{"index", 0}, {"finish_reason", finish_json(finish_reason)}, {"logprobs", nullptr}};
  if (request.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (first || !text.empty()) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  return {{"id", info.id},
          {"object", request.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", info.created},
          {"model", info.model},
          {"choices", json::array({choice})}};
}

json usage_chunk(const CompletionRequest& request, const AnswerInfo& info) {
  return {{"id", info.id},
          {"object", request.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", info.created},
          {"model", info.model},
          {"choices", json::array()},
          {"usage", usage_json(info)}};
}

json model_list(const ServedModel& model, int64_t created) {
  return {{"object", "list"},
          {"data", json::array({{{"id", model.id}, {"object", "model"}, {"created", created}, {"owned_by", "esft"}}})}};
}

json error_body(const ApiError& error) {
  return {{"error",
           {{"message", error.what()},
            {"type", error.type},
            {"param", error.param.empty() ? json() : json(error.param)},
            {"code", error.code.empty() ? json() : json(error.code)}}}};
}

}  // namespace esft::host::serve
