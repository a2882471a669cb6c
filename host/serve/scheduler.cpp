#include "serve/scheduler.h"

#include <algorithm>

#include "serve/streaming_text.h"

namespace esft::host::serve {

using Clock = std::chrono::steady_clock;

bool JobProgress::wait_for_text(std::string& text, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait_for(lock, timeout, [&] { return done_ || !pending_.empty(); });
  text += pending_;
  pending_.clear();
  return done_;
}

std::string JobProgress::finish_reason() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return finish_reason_;
}

std::string JobProgress::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

int64_t JobProgress::completion_tokens() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return completion_tokens_;
}

double JobProgress::queued_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::chrono::duration<double>(started_ - submitted_).count();
}

double JobProgress::decode_seconds() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::chrono::duration<double>(ended_ - started_).count();
}

void JobProgress::publish(const std::string& text) {
  if (text.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_ += text;
  }
  changed_.notify_all();
}

void JobProgress::finish(const std::string& reason, const std::string& error, int64_t completion_tokens) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    done_ = true;
    finish_reason_ = reason;
    error_ = error;
    completion_tokens_ = completion_tokens;
    ended_ = Clock::now();
  }
  changed_.notify_all();
}

Scheduler::Scheduler(MoECausalLM& model, const tok::Tokenizer& tokenizer, int64_t max_batch, int64_t max_queue)
    : model_(model), tokenizer_(tokenizer), max_batch_(max_batch), max_queue_(max_queue) {
  worker_ = std::thread([this] { work(); });
}

Scheduler::~Scheduler() { drain(); }

std::shared_ptr<JobProgress> Scheduler::submit(CompletionJob job) {
  auto progress = std::make_shared<JobProgress>();
  progress->prompt_tokens_ = static_cast<int64_t>(job.generation.prompt.size());
  progress->submitted_ = progress->started_ = progress->ended_ = Clock::now();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (draining_ || static_cast<int64_t>(queue_.size()) >= max_queue_) return nullptr;
    queue_.push_back({std::move(job), progress});
  }
  wake_.notify_one();
  return progress;
}

void Scheduler::drain() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    draining_ = true;
  }
  wake_.notify_one();
  if (worker_.joinable()) worker_.join();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {static_cast<int64_t>(queue_.size()), running_, served_};
}

void Scheduler::work() {
  while (true) {
    std::vector<Entry> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return draining_ || !queue_.empty(); });
      if (queue_.empty()) return;  // draining, and nothing is left
      while (!queue_.empty() && static_cast<int64_t>(batch.size()) < max_batch_) {
        if (!queue_.front().progress->cancelled()) batch.push_back(std::move(queue_.front()));
        else queue_.front().progress->finish("cancelled", "", 0);  // its client left while it waited
        queue_.pop_front();
      }
      running_ = static_cast<int64_t>(batch.size());
    }
    if (!batch.empty()) run_batch(batch);
    std::lock_guard<std::mutex> lock(mutex_);
    served_ += running_;
    running_ = 0;
  }
}

void Scheduler::run_batch(std::vector<Entry>& batch) {
  std::vector<GenerationRequest> requests;
  std::vector<StreamingText> texts;
  const auto start = Clock::now();
  for (auto& entry : batch) {
    requests.push_back(entry.job.generation);
    texts.emplace_back(tokenizer_, entry.job.stops);
    std::lock_guard<std::mutex> lock(entry.progress->mutex_);
    entry.progress->started_ = start;
  }
  std::vector<int64_t> produced(batch.size(), 0);
  std::vector<std::string> row_errors(batch.size());  // one row's failure (a token its tokenizer cannot decode) ends
                                                      // that row only
  try {
    const auto results = generate_batch(model_, requests, /*pad_id=*/0, [&](size_t i, int64_t token) {
      ++produced[i];
      try {
        batch[i].progress->publish(texts[i].add(static_cast<int32_t>(token)));
      } catch (const std::exception& e) {
        row_errors[i] = e.what();
        return false;
      }
      return !texts[i].stopped() && !batch[i].progress->cancelled();
    });
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!row_errors[i].empty()) {
        batch[i].progress->finish("error", row_errors[i], produced[i]);
        continue;
      }
      batch[i].progress->publish(texts[i].finish());
      const bool stopped = texts[i].stopped() || results[i].stopped;
      const char* reason = batch[i].progress->cancelled() ? "cancelled" : stopped ? "stop" : "length";
      batch[i].progress->finish(reason, "", produced[i]);
    }
  } catch (const std::exception& e) {
    for (size_t i = 0; i < batch.size(); ++i) batch[i].progress->finish("error", e.what(), produced[i]);
  }
}

}  // namespace esft::host::serve
