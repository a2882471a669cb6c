#include "judge_client.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <system_error>
#include <chrono>
#include <mutex>
#include <thread>

#include "esft/error.h"

#if ESFT_WITH_CURL
#include <curl/curl.h>
#endif

namespace esft::host::eval {

const char* const kJudgeUnavailable =
    "this esft-host was built without libcurl, which the judge metrics need to reach their endpoint (install "
    "libcurl4-openssl-dev and build again)";

#if ESFT_WITH_CURL

bool judge_available() { return true; }

namespace {

size_t collect(char* data, size_t size, size_t count, void* sink) {
  static_cast<std::string*>(sink)->append(data, size * count);
  return size * count;
}

std::string chat_completions_url(const std::string& url) {
  const std::string suffix = "/chat/completions";
  if (url.size() >= suffix.size() && url.compare(url.size() - suffix.size(), suffix.size(), suffix) == 0) return url;
  return (url.empty() || url.back() != '/' ? url : url.substr(0, url.size() - 1)) + suffix;
}

// One try: the reply's text, or throws esft::Error saying what went wrong.
std::string post_once(CURL* curl, const JudgeEndpoint& e, const std::string& url, const std::string& body) {
  std::string response;
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  if (!e.api_key.empty()) headers = curl_slist_append(headers, ("Authorization: Bearer " + e.api_key).c_str());
  curl_easy_reset(curl);
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, e.timeout_seconds);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  const CURLcode code = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (code != CURLE_OK) throw Error(std::string("request failed: ") + curl_easy_strerror(code));
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) throw Error("HTTP " + std::to_string(status) + ": " + response.substr(0, 200));
  const auto j = nlohmann::json::parse(response, nullptr, false);
  if (j.is_discarded()) throw Error("the reply is not JSON: " + response.substr(0, 200));
  try {
    return j.at("choices").at(0).at("message").at("content").get<std::string>();
  } catch (const nlohmann::json::exception&) {
    throw Error("the reply has no choices[0].message.content: " + response.substr(0, 200));
  }
}

}  // namespace

constexpr double kLongestDelaySeconds = 300;

std::vector<JudgeReply> ask_judge(const JudgeEndpoint& e, const std::string& system_prompt,
                                  const std::vector<std::string>& prompts,
                                  const std::function<void(size_t, size_t)>& progress) {
  static const CURLcode init = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (init != CURLE_OK) throw Error(std::string("libcurl does not start: ") + curl_easy_strerror(init));
  const std::string url = chat_completions_url(e.url);
  std::vector<JudgeReply> replies(prompts.size());
  std::atomic<size_t> next{0};
  size_t done = 0;
  std::mutex progress_mutex;
  auto worker = [&] {
    CURL* curl = curl_easy_init();
    if (!curl) return;
    for (size_t i; (i = next.fetch_add(1)) < prompts.size();) {
      const nlohmann::json request = {
          {"model", e.model},
          {"messages", {{{"role", "system"}, {"content", system_prompt}}, {{"role", "user"}, {"content", prompts[i]}}}},
          {"max_tokens", e.max_tokens}};
      const std::string body = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      auto& reply = replies[i];
      double delay = e.first_backoff_seconds;
      for (reply.tries = 1; reply.tries <= e.max_tries; ++reply.tries) {
        try {
          reply.text = post_once(curl, e, url, body);
          reply.error.clear();
          break;
        } catch (const std::exception& err) {  // esft::Error, and anything else a try can throw
          reply.error = err.what();
        }
        if (reply.tries < e.max_tries) {
          std::this_thread::sleep_for(std::chrono::duration<double>(delay));
          delay = std::min(2 * delay, kLongestDelaySeconds);
        }
      }
      if (reply.tries > e.max_tries) reply.tries = e.max_tries;
      std::lock_guard<std::mutex> lock(progress_mutex);
      ++done;
      if (progress) progress(done, prompts.size());
    }
    curl_easy_cleanup(curl);
  };
  std::vector<std::thread> threads;
  const int n = std::max(1, std::min<int>(e.concurrency, static_cast<int>(prompts.size())));
  try {
    for (int t = 0; t < n; ++t) threads.emplace_back(worker);
  } catch (const std::system_error& err) {  // fewer threads than asked: those started finish the work
    if (threads.empty()) throw Error(std::string("cannot start a judge thread: ") + err.what());
  }
  for (auto& t : threads) t.join();
  for (auto& r : replies) {
    if (r.tries == 0) r.error = "no request was made (libcurl could not start a session)";
  }
  return replies;
}

#else

bool judge_available() { return false; }

std::vector<JudgeReply> ask_judge(const JudgeEndpoint&, const std::string&, const std::vector<std::string>&,
                                  const std::function<void(size_t, size_t)>&) {
  throw Error(kJudgeUnavailable);
}

#endif

}  // namespace esft::host::eval
