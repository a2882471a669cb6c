// `esft-host serve` over real loopback HTTP: answers equal `generate`'s at temperature 0 (whole and streamed, chat and
// text), OpenAI-style refusals that never stop the server, the API key, a full queue, clients that leave mid-stream,
// many clients at once, and a graceful SIGTERM.
#include "doctest_torch.h"

#include <nlohmann/json.hpp>

#include <atomic>
#include <thread>

#include "cli_support.h"
#include "http_client.h"
#include "serve_process.h"

using namespace cli_support;
using json = nlohmann::json;

namespace {

const fs::path kModel = fs::path(ESFT_TEST_DATA_DIR).parent_path().parent_path() / "examples" / "tiny-model";

std::string chat_body(const std::string& message, int max_tokens, bool stream = false, json extra = json::object()) {
  json body = {{"model", "tiny-model"},
               {"messages", {{{"role", "user"}, {"content", message}}}},
               {"temperature", 0},
               {"max_tokens", max_tokens},
               {"stream", stream}};
  body.update(extra);
  return body.dump();
}

// What `generate` prints for the same conversation at temperature 0 (its line, without the newline).
std::string generated_reply(const std::string& message, int max_tokens) {
  TempDir dir;
  const auto messages = dir / "messages.json";
  std::ofstream(messages) << json::array({{{"role", "user"}, {"content", message}}}).dump();
  const Run r = run_host({"generate", "--model", kModel.string(), "--messages", messages.string(), "--max-new-tokens",
                          std::to_string(max_tokens)});
  expect_success(r);
  REQUIRE(!r.out.empty());
  return r.out.substr(0, r.out.size() - 1);
}

// The text of a streamed answer: its deltas joined; checks the stream's shape on the way.
std::string streamed_text(const http_client::Reply& reply, bool chat) {
  REQUIRE(reply.status == 200);
  REQUIRE(reply.complete);
  REQUIRE(reply.events.size() >= 2);
  CHECK(reply.events.back() == "[DONE]");
  std::string text;
  for (size_t i = 0; i + 1 < reply.events.size(); ++i) {
    const json chunk = json::parse(reply.events[i]);
    if (chunk["choices"].empty()) continue;  // the usage chunk
    const json& choice = chunk["choices"][0];
    text += chat ? choice["delta"].value("content", "") : choice.value("text", "");
  }
  return text;
}

json json_of(const http_client::Reply& reply) { return json::parse(reply.body); }

}  // namespace

TEST_CASE("cli serve: answers equal generate's at temperature 0, whole and streamed, for chat and text completions") {
  ServeProcess server(kHost, {"--model", kModel.string()});
  const uint16_t port = server.port();

  const auto health = http_client::request(port, "GET", "/health");
  CHECK(health.status == 200);
  CHECK(json_of(health)["status"] == "ok");
  const auto models = http_client::request(port, "GET", "/v1/models");
  REQUIRE(models.status == 200);
  CHECK(json_of(models)["data"][0]["id"] == "tiny-model");
  const auto page = http_client::request(port, "GET", "/");
  CHECK(page.status == 200);
  CHECK(page.headers.at("content-type") == "text/html; charset=utf-8");
  CHECK(contains(page.body, "/v1/chat/completions"));
  CHECK_FALSE(contains(page.body, "src=\"http"));  // nothing loads from outside
  CHECK_FALSE(contains(page.body, "href=\"http"));

  const std::string message = "turn on the kitchen lights";
  const std::string expected = generated_reply(message, 16);
  const auto whole = http_client::request(port, "POST", "/v1/chat/completions", chat_body(message, 16));
  REQUIRE(whole.status == 200);
  const json answer = json_of(whole);
  CHECK(answer["object"] == "chat.completion");
  CHECK(answer["choices"][0]["message"]["content"] == expected);
  CHECK(answer["usage"]["completion_tokens"].get<int>() <= 16);

  const auto streamed = http_client::request(port, "POST", "/v1/chat/completions",
                                             chat_body(message, 16, true, {{"stream_options", {{"include_usage", true}}}}));
  CHECK(streamed.headers.at("content-type") == "text/event-stream");
  CHECK(streamed_text(streamed, true) == expected);
  const json usage = json::parse(streamed.events[streamed.events.size() - 2]);
  CHECK(usage["usage"]["completion_tokens"] == answer["usage"]["completion_tokens"]);

  // Text completions against `generate --prompt`.
  const Run prompt_run = run_host({"generate", "--model", kModel.string(), "--prompt", "Intent of: wake me up",
                                   "--max-new-tokens", "10"});
  expect_success(prompt_run);
  const std::string prompt_expected = prompt_run.out.substr(0, prompt_run.out.size() - 1);
  const json completion_body = {{"prompt", "Intent of: wake me up"}, {"temperature", 0}, {"max_tokens", 10}};
  const auto text = http_client::request(port, "POST", "/v1/completions", completion_body.dump());
  REQUIRE(text.status == 200);
  CHECK(json_of(text)["choices"][0]["text"] == prompt_expected);
  json stream_body = completion_body;
  stream_body["stream"] = true;
  CHECK(streamed_text(http_client::request(port, "POST", "/v1/completions", stream_body.dump()), false) ==
        prompt_expected);

  // A stop string ends the answer before it.
  REQUIRE(expected.size() > 6);
  const std::string stop = expected.substr(3, 2);
  const auto stopped = http_client::request(port, "POST", "/v1/chat/completions",
                                            chat_body(message, 16, false, {{"stop", stop}}));
  CHECK(json_of(stopped)["choices"][0]["message"]["content"] == expected.substr(0, expected.find(stop)));
  CHECK(json_of(stopped)["choices"][0]["finish_reason"] == "stop");

  CHECK(server.stop(SIGTERM) == 0);
  const std::string log = server.log();
  CHECK(contains(log, "\"POST /v1/chat/completions\" 200"));
  CHECK(contains(log, "SIGTERM: stopped after"));
}

TEST_CASE("cli serve: bad requests get OpenAI-style errors, and the server keeps serving") {
  ServeProcess server(kHost, {"--model", kModel.string(), "--max-body-bytes", "4000", "--request-timeout", "0.5"});
  const uint16_t port = server.port();
  auto expect_refusal = [&](const http_client::Reply& reply, int status, const std::string& needle) {
    CAPTURE(reply.body);
    CHECK(reply.status == status);
    const json body = json::parse(reply.body, nullptr, false);
    REQUIRE(body.is_object());
    CHECK(body["error"]["message"].is_string());
    CHECK(contains(body["error"]["message"].get<std::string>(), needle));
  };
  expect_refusal(http_client::request(port, "POST", "/v1/chat/completions", "{not json"), 400, "not valid JSON");
  expect_refusal(http_client::request(port, "POST", "/v1/chat/completions", "[1, 2]"), 400, "JSON object");
  expect_refusal(http_client::request(port, "POST", "/v1/chat/completions", "{}"), 400, "messages is required");
  expect_refusal(http_client::request(port, "POST", "/v1/chat/completions", chat_body("hi", 4, false, {{"temperature", 5}})),
                 400, "temperature must be in [0, 2]");
  expect_refusal(http_client::request(port, "POST", "/v1/chat/completions", chat_body("hi", 4, false, {{"n", 2}})), 400,
                 "n must be 1");
  expect_refusal(http_client::request(port, "POST", "/v1/chat/completions", chat_body("hi", 0)), 400,
                 "max_tokens must be at least 1");
  expect_refusal(http_client::request(port, "POST", "/v1/chat/completions",
                                      chat_body("hi", 4, false, {{"messages", {{{"role", "robot"}, {"content", "x"}}}}})),
                 400, "robot");
  expect_refusal(http_client::request(port, "POST", "/v1/chat/completions", chat_body("hi", 4, false, {{"model", "gpt-9"}})),
                 404, "gpt-9");
  expect_refusal(http_client::request(port, "GET", "/v2/nothing"), 404, "no route");
  expect_refusal(http_client::request(port, "GET", "/v1/chat/completions"), 405, "not allowed");
  expect_refusal(http_client::request(port, "POST", "/v1/completions", std::string(5000, ' ')), 413, "larger than 4000");
  {  // huge headers
    http_client::Connection c(port);
    c.send("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'a') + "\r\n\r\n");
    expect_refusal(c.read_reply(), 431, "headers are too large");
  }
  {  // not HTTP at all
    http_client::Connection c(port);
    c.send("HELLO THERE\r\n\r\n");
    expect_refusal(c.read_reply(), 400, "malformed");
  }
  {  // a slow client: half a request, then nothing
    http_client::Connection c(port);
    c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":");
    const auto reply = c.read_reply({}, 5000);
    expect_refusal(reply, 408, "did not arrive in time");
  }
  {  // an idle connection that never sends is closed without an answer, and costs nothing
    http_client::Connection idle(port);
    const auto health = http_client::request(port, "GET", "/health");
    CHECK(health.status == 200);
  }
  const auto after = http_client::request(port, "POST", "/v1/chat/completions", chat_body("still there?", 4));
  CHECK(after.status == 200);
  CHECK(server.stop(SIGINT) == 0);
  const std::string log = server.log();
  CHECK(contains(log, "\" 413 "));
  CHECK(contains(log, "\" 408 "));
}

TEST_CASE("cli serve: with --api-key-env the API asks for the key, while the page and /health do not") {
  ServeProcess server(kHost, {"--model", kModel.string(), "--api-key-env", "ESFT_TEST_SERVE_KEY"},
                      {{"ESFT_TEST_SERVE_KEY", "s3cret"}});
  const uint16_t port = server.port();
  auto models = [&](std::vector<std::string> headers) {
    return http_client::request(port, "GET", "/v1/models", "", headers).status;
  };
  CHECK(models({}) == 401);
  CHECK(models({"Authorization: Bearer wrong"}) == 401);
  CHECK(models({"Authorization: Bearer s3cret"}) == 200);
  CHECK(http_client::request(port, "POST", "/v1/chat/completions", chat_body("hi", 4)).status == 401);
  CHECK(http_client::request(port, "POST", "/v1/chat/completions", chat_body("hi", 4), {"Authorization: Bearer s3cret"})
            .status == 200);
  CHECK(http_client::request(port, "GET", "/health").status == 200);
  CHECK(http_client::request(port, "GET", "/").status == 200);
  server.stop();

  const Run unset = run_host({"serve", "--model", kModel.string(), "--api-key-env", "ESFT_TEST_NOT_SET_ANYWHERE"});
  expect_error(unset, 2, {"--api-key-env ESFT_TEST_NOT_SET_ANYWHERE: that environment variable is not set"});
  expect_error(run_host({"serve", "--model", kModel.string(), "--port", "70000"}), 2, {"--port must be in [0, 65535]"});
  expect_error(run_host({"serve", "--model", kModel.string(), "--max-batch", "0"}), 2, {"--max-batch must be in"});
}

TEST_CASE("cli serve: a full queue answers 503, and a client that leaves mid-stream is cancelled without harm") {
  ServeProcess server(kHost, {"--model", kModel.string(), "--max-batch", "1", "--max-queue", "1"});
  const uint16_t port = server.port();
  const std::string expected = generated_reply("and a short one", 6);  // before the long answer starts
  // A long answer holds the only batch place (near the context of 4096: minutes on the tiny model); its first events
  // say it is running.
  http_client::Connection leaver(port);
  leaver.send(http_client::request_bytes("POST", "/v1/chat/completions",
                                         chat_body("tell me a long story", 4000, true, {{"ignore_eos", true}})));
  int seen = 0;
  const auto partial = leaver.read_reply([&](const std::string&) { return ++seen < 3; });
  REQUIRE(partial.status == 200);
  REQUIRE_FALSE(partial.complete);

  // The next request waits in the queue (its own thread); the one after it finds the queue full.
  http_client::Reply queued;
  std::thread waiter([&] { queued = http_client::request(port, "POST", "/v1/chat/completions", chat_body("and a short one", 6)); });
  json health;
  for (int i = 0; i < 500; ++i) {
    health = json_of(http_client::request(port, "GET", "/health"));
    if (health["queued"] == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CAPTURE(health.dump());
  CHECK(health["running"] == 1);  // (CHECK, not REQUIRE: the waiter thread must be joined below)
  CHECK(health["queued"] == 1);
  const auto refused = http_client::request(port, "POST", "/v1/chat/completions", chat_body("one more", 4));
  CHECK(refused.status == 503);
  CHECK(refused.headers.count("retry-after") == 1);
  CHECK(contains(refused.body, "queue is full"));

  leaver.close();  // mid-stream: its generation ends, and the queued request runs
  waiter.join();
  REQUIRE(queued.status == 200);
  CHECK(json_of(queued)["choices"][0]["message"]["content"] == expected);
  CHECK(server.stop() == 0);
  CHECK(contains(server.log(), "client gone mid-stream"));
}

TEST_CASE("cli serve: at the connection limit an idle kept-alive connection makes room, busy ones do not") {
  ServeProcess server(kHost, {"--model", kModel.string(), "--max-connections", "2", "--request-timeout", "3"});
  const uint16_t port = server.port();
  {
    http_client::Connection idle1(port), idle2(port);  // connected, silent: waiting between requests
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto served = http_client::request(port, "GET", "/health");
    CHECK(served.status == 200);
    CHECK(idle1.closed_by_server(2000));  // the longest idle gave its place up
  }
  {
    http_client::Connection busy1(port), busy2(port);  // each in the middle of a request
    busy1.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{");
    busy2.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const auto refused = http_client::request(port, "GET", "/health");
    CHECK(refused.status == 503);
    CHECK(contains(refused.body, "too many connections"));
  }
  CHECK(server.stop() == 0);
}

TEST_CASE("cli serve: 32 clients with 4 requests each get the answers each prompt gets alone") {
  ServeProcess server(kHost, {"--model", kModel.string(), "--max-batch", "8"});
  const uint16_t port = server.port();
  const std::vector<std::string> prompts = {"dim the lights", "what is the weather", "play some jazz",
                                            "set an alarm for seven"};
  std::vector<std::string> expected;
  for (const auto& p : prompts) {
    const auto reply = http_client::request(port, "POST", "/v1/chat/completions", chat_body(p, 12));
    REQUIRE(reply.status == 200);
    expected.push_back(json_of(reply)["choices"][0]["message"]["content"]);
  }
  std::atomic<int> right{0}, wrong{0};
  std::vector<std::thread> clients;
  std::mutex failures_mutex;
  std::vector<std::string> failures;
  for (int c = 0; c < 32; ++c) {
    clients.emplace_back([&, c] {
      for (int r = 0; r < 4; ++r) {
        const size_t which = static_cast<size_t>(c + r) % prompts.size();
        const bool stream = (c + r) % 2 == 1;
        std::string got;
        try {
          const auto reply = http_client::request(port, "POST", "/v1/chat/completions", chat_body(prompts[which], 12, stream));
          if (reply.status != 200) throw std::runtime_error("status " + std::to_string(reply.status) + ": " + reply.body);
          if (stream) {
            for (size_t i = 0; i + 1 < reply.events.size(); ++i) {
              const json chunk = json::parse(reply.events[i]);
              if (!chunk["choices"].empty()) got += chunk["choices"][0]["delta"].value("content", "");
            }
          } else {
            got = json_of(reply)["choices"][0]["message"]["content"];
          }
        } catch (const std::exception& e) {
          got = std::string("(failed: ") + e.what() + ")";
        }
        if (got == expected[which]) {
          ++right;
        } else {
          ++wrong;
          std::lock_guard<std::mutex> lock(failures_mutex);
          failures.push_back(prompts[which] + ": " + got);
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  CAPTURE(failures.size());
  for (const auto& f : failures) MESSAGE(f);
  CHECK(right == 128);
  CHECK(wrong == 0);
  CHECK(server.stop() == 0);
}

TEST_CASE("cli serve: SIGTERM lets the answer in flight finish, then the server exits 0") {
  ServeProcess server(kHost, {"--model", kModel.string()});
  http_client::Connection client(server.port());
  client.send(http_client::request_bytes("POST", "/v1/chat/completions",
                                         chat_body("a long answer please", 60, true, {{"ignore_eos", true}})));
  bool signalled = false;
  const auto reply = client.read_reply([&](const std::string&) {
    if (!signalled) server.send_signal(SIGTERM);  // at the first event: the answer is in flight
    signalled = true;
    return true;
  });
  CHECK(reply.complete);
  REQUIRE(reply.events.size() >= 3);
  CHECK(reply.events.back() == "[DONE]");
  CHECK(json::parse(reply.events[reply.events.size() - 2])["choices"][0]["finish_reason"] == "length");
  CHECK(server.wait_for_exit() == 0);  // by itself, once the answer is out
  CHECK(contains(server.log(), "SIGTERM: stopped accepting"));
  CHECK(contains(server.log(), "SIGTERM: stopped after 1 generation requests"));
}

TEST_CASE("cli serve: a second SIGINT exits at once, without waiting for the answer in flight") {
  ServeProcess server(kHost, {"--model", kModel.string()});
  http_client::Connection client(server.port());
  client.send(http_client::request_bytes("POST", "/v1/chat/completions",
                                         chat_body("a very long answer please", 4000, true, {{"ignore_eos", true}})));
  int events = 0;
  client.read_reply([&](const std::string&) { return ++events < 2; });
  server.send_signal(SIGINT);
  for (int i = 0; i < 200 && !contains(server.log(), "SIGINT: stopped accepting"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(server.stop(SIGINT, std::chrono::seconds(20)) == 128 + SIGINT);
  CHECK(contains(server.log(), "SIGINT again: exiting without waiting"));
}
