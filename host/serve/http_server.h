#pragma once
// A small HTTP/1.1 server for `esft-host serve`: Boost.Beast parses each request (headers, bodies, chunked uploads,
// header and body limits); a thread per connection (their number bounded) reads with deadlines, calls the handler,
// and writes the answer, whole or as a stream of server-sent events. A model server holds few connections and its
// handlers wait on generation, so blocking threads are the simple, fitting model here.
//
// Nothing a client sends can stop the server: malformed requests get 400, oversized headers 431, oversized bodies 413,
// requests that do not arrive within the time limit 408; each then closes its connection. Connections beyond the limit
// get 503. SIGINT or SIGTERM stops accepting, lets every connection finish the request it is serving, and returns.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

namespace esft::host::serve {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // "/v1/models?x=1"
  std::string path;    // "/v1/models"
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string peer;  // "127.0.0.1:53422"

  std::string header(const std::string& lower_case_name) const;
};

// One request's answer, given by the handler on the connection's thread: either respond() once, or
// start_events(), then send_event() for each event, then end_events().
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual void respond(int status, const std::string& content_type, const std::string& body,
                       const std::map<std::string, std::string>& extra_headers = {}) = 0;
  // A `text/event-stream` answer (chunked). send_event writes "data: DATA\n\n" and returns false once the client is
  // gone (the handler should then stop producing).
  virtual bool start_events() = 0;
  virtual bool send_event(const std::string& data) = 0;
  virtual void end_events() = 0;
  // Whether the client closed its side (checked without blocking, between tokens of a long answer).
  virtual bool client_gone() = 0;
  // Text appended to this request's access-log line ("17 tokens").
  virtual void note(const std::string& text) = 0;
};

using HttpHandler = std::function<void(const HttpRequest&, HttpExchange&)>;

struct HttpLimits {
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 1024 * 1024;
  int max_connections = 64;
  std::chrono::milliseconds request_time{10000};  // from a request's first byte to its last (slow clients)
  std::chrono::milliseconds idle_time{30000};     // between requests on a kept-alive connection
  std::chrono::milliseconds write_time{30000};    // to write one response or event (clients that stop reading)
};

class HttpServer {
 public:
  // Binds and listens (port 0: a free port). Throws esft::Error when the address cannot be bound.
  HttpServer(const std::string& host, uint16_t port, HttpLimits limits, HttpHandler handler,
             std::function<void(const std::string&)> access_log);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  uint16_t port() const;
  // Accepts until stop() or, when `watch_signals`, SIGINT/SIGTERM (which the caller must have blocked in every
  // thread: see block_stop_signals); then waits for the connections' current requests and returns the signal's
  // name ("" after stop()).
  std::string run(bool watch_signals);
  void stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards, so that HttpServer::run
// receives them. Call it before anything starts threads (LibTorch's pools included).
void block_stop_signals();

}  // namespace esft::host::serve
