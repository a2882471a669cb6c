#pragma once
// Asks an OpenAI-compatible chat-completions endpoint (POST {url}/chat/completions) to judge completions, as the
// ESFT reference's GPT4Evaluator does: its system message, the filled-in template as the user message, max_tokens
// 80, no temperature. Requests run in parallel; a failed one (no connection, an HTTP status other than 200, a reply
// without choices[0].message.content) is retried with doubling delays. Built with libcurl; a build without it
// refuses the judge metrics with one line saying so.
#include <functional>
#include <string>
#include <vector>

namespace esft::host::eval {

struct JudgeEndpoint {
  std::string url;       // e.g. https://api.openai.com/v1, or the full .../chat/completions
  std::string model;     // the judge model's name
  std::string api_key;   // sent as "Authorization: Bearer KEY"; empty: no header
  int concurrency = 4;   // requests in flight at once
  int max_tries = 5;     // the reference's MAX_TRIAL
  double first_backoff_seconds = 2;  // then doubled after each failed try
  long timeout_seconds = 120;
  int max_tokens = 80;
};

struct JudgeReply {
  std::string text;   // the judge's message, when a try succeeded
  std::string error;  // the last failure, when every try failed
  int tries = 0;
};

// Whether this build can reach a judge (it was built with libcurl), and the message that says it cannot.
bool judge_available();
extern const char* const kJudgeUnavailable;

// One reply per prompt, in order. `progress(done, total)` is called after each finished prompt (from one thread at
// a time). Throws esft::Error when libcurl is not built in.
std::vector<JudgeReply> ask_judge(const JudgeEndpoint& endpoint, const std::string& system_prompt,
                                  const std::vector<std::string>& prompts,
                                  const std::function<void(size_t, size_t)>& progress = {});

}  // namespace esft::host::eval
