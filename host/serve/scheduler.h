#pragma once
// The generation scheduler of `esft-host serve`: requests wait in a bounded queue; one worker thread owns the model
// and decodes them in batches (generate_batch: each row with its own sampling, seed, limits and stop tokens). A batch
// takes up to `max_batch` waiting requests at once; requests that arrive while it runs wait for the next batch
// (admitting them into the running batch would need per-row KV caches of different lengths, which the models' cache
// does not have yet). Each request's text is published as it grows, for streaming.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "esft/model/generate.h"
#include "esft/model/moe_causal_lm.h"
#include "esft/tokenizer/tokenizer.h"

namespace esft::host::serve {

struct CompletionJob {
  GenerationRequest generation;   // prompt, max_new_tokens, sampling, stop ids
  std::vector<std::string> stops;  // stop strings: the text ends before the first
};

// A request's progress, shared by the worker (which writes) and the connection (which reads).
class JobProgress {
 public:
  // Waits until new text, the end, or `timeout`; moves the text not yet taken into `text`. Returns true at the end
  // (after which finish_reason(), error() and the token counts are final).
  bool wait_for_text(std::string& text, std::chrono::milliseconds timeout);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }

  std::string finish_reason() const;  // "stop" | "length" | "cancelled" | "error"
  std::string error() const;
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t completion_tokens() const;
  double queued_seconds() const;  // from submission to the start of its batch
  double decode_seconds() const;  // from the start of its batch to its end

 private:
  friend class Scheduler;
  void publish(const std::string& text);
  void finish(const std::string& reason, const std::string& error, int64_t completion_tokens);

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string pending_;
  bool done_ = false;
  std::string finish_reason_, error_;
  int64_t prompt_tokens_ = 0, completion_tokens_ = 0;
  std::atomic<bool> cancelled_{false};
  std::chrono::steady_clock::time_point submitted_, started_, ended_;
};

struct SchedulerStats {
  int64_t queued = 0, running = 0, served = 0;
};

class Scheduler {
 public:
  Scheduler(MoECausalLM& model, const tok::Tokenizer& tokenizer, int64_t max_batch, int64_t max_queue);
  ~Scheduler();

  // Queues a job; nullptr when the queue is full (the caller answers 503).
  std::shared_ptr<JobProgress> submit(CompletionJob job);
  // Finishes what is queued and running, then stops the worker.
  void drain();
  SchedulerStats stats() const;

 private:
  struct Entry {
    CompletionJob job;
    std::shared_ptr<JobProgress> progress;
  };
  void work();
  void run_batch(std::vector<Entry>& batch);

  MoECausalLM& model_;
  const tok::Tokenizer& tokenizer_;
  const int64_t max_batch_, max_queue_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Entry> queue_;
  int64_t running_ = 0, served_ = 0;
  bool draining_ = false;
  std::thread worker_;
};

}  // namespace esft::host::serve
