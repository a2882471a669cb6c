#include <ATen/ATen.h>

#include <chrono>
#include <iomanip>
#include <iostream>
#include <optional>

#include "esft/error.h"
#include "esft/io/json_file.h"
#include "esft/io/atomic_file.h"
#include "esft/model/generate.h"
#include "esft/pipeline/completions.h"
#include "eval_modes.h"

namespace esft::host::eval {

namespace fs = std::filesystem;

namespace {

struct GenerationRecord {
  std::string origin;
  std::string prompt;  // as rendered
  std::vector<std::string> answers;
  bool raw_prompt = false;  // a "prompt" field (raw text, BOS added as the tokenizer config says), not "messages"
};

std::vector<GenerationRecord> read_generation_records(const fs::path& path, const ChatFormat& format,
                                                     const ChatOptions& chat) {
  std::vector<GenerationRecord> out;
  for_each_json_line(path, [&](const nlohmann::json& j, const std::string& where) {
    GenerationRecord r{where, {}, {}};
    // The ESFT reference's evaluation files ({"idx", "prompt", "raw_answers", "answers"}) score against
    // raw_answers; answers may also be the string of a Python-style list.
    const char* key = j.contains("raw_answers") ? "raw_answers" : "answers";
    if (!j.contains(key)) throw Error(where + ": needs \"answers\", a non-empty list of strings");
    r.answers = pipeline::answers_from_json_value(j.at(key), where + ": " + key);
    if (j.contains("prompt") && j["prompt"].is_string()) {
      r.prompt = j["prompt"].get<std::string>();
      r.raw_prompt = true;
    } else if (j.contains("messages")) {
      r.prompt = join_segments(format.render(parse_chat_messages(j["messages"], where), chat));
    } else {
      throw Error(where + ": needs \"prompt\" (a string) or \"messages\"");
    }
    out.push_back(std::move(r));
  });
  if (out.empty()) throw Error(path.string() + " holds no records");
  return out;
}

}  // namespace

int run_generation(const po::variables_map& vm, LoadedModel& m, const tok::Tokenizer& tokenizer,
                   const data::TokenizerConfig& special, const fs::path& data_path, const CompletionScorer& scorer) {
  const auto& metric_text = scorer.name();
  const int64_t max_new = vm["max-new-tokens"].as<int64_t>();
  ChatOptions chat;
  chat.add_generation_prompt = true;
  chat.enable_thinking = optional_true_false(vm, "enable-thinking");
  auto records = read_generation_records(data_path, m.family->chat_format(), chat);
  if (vm.count("limit") && vm["limit"].as<int64_t>() < static_cast<int64_t>(records.size())) {
    records.resize(static_cast<size_t>(vm["limit"].as<int64_t>()));
  }
  auto stop = generation_stop_ids(m.config);
  if (special.eos_token) stop.push_back(tokenizer.token_to_id(*special.eos_token));
  std::optional<int32_t> bos;
  if (special.add_bos_token && special.bos_token) bos = tokenizer.token_to_id(*special.bos_token);

  std::optional<AtomicFile> out;
  if (vm.count("out")) out.emplace(vm["out"].as<std::string>());
  // Local metrics score each completion as it comes (the running mean shows); a judge scores them all at the end.
  std::vector<ScoreRequest> requests;
  std::vector<RecordScore> scores;  // local metrics: as each completion comes, so the running mean shows
  double running = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < records.size(); ++i) {
    const auto& r = records[i];
    std::vector<int64_t> ids;
    // A chat format renders its own BOS where the template has one (DeepSeek-V2's); a raw prompt gets the
    // tokenizer's, as Hugging Face's encode adds it.
    if (bos && r.raw_prompt) ids.push_back(*bos);
    for (int32_t id : tokenizer.encode(r.prompt)) ids.push_back(id);
    auto prompt = at::tensor(ids, at::kLong).unsqueeze(0).to(m.device);
    auto output = greedy_generate(*m.model, prompt, max_new, stop).cpu();
    const auto* p = output.data_ptr<int64_t>();
    const std::vector<int32_t> generated(p + prompt.size(1), p + output.size(1));
    requests.push_back({tokenizer.decode(generated, /*skip_special_tokens=*/true), r.answers});
    std::cerr << "\reval: " << i + 1 << "/" << records.size() << std::fixed;
    if (!scorer.is_judge()) {
      scores.push_back({scorer.score_one(requests.back()), {}, {}});
      running += scores.back().score;
      std::cerr << " " << metric_text << " " << std::setprecision(4) << running / static_cast<double>(i + 1);
    }
    std::cerr << std::flush;
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << " (" << std::setprecision(1) << seconds << " s)\n";
  if (scorer.is_judge()) scores = scorer.score_all(requests);
  double total = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    total += scores[i].score;
    if (!out) continue;
    nlohmann::json line = {{"origin", records[i].origin}, {"prompt", records[i].prompt},
                           {"completion", requests[i].completion}, {"answers", records[i].answers},
                           {"score", scores[i].score}};
    if (scorer.is_judge()) line[scores[i].judge_error.empty() ? "judge_reply" : "judge_error"] =
        scores[i].judge_error.empty() ? scores[i].judge_reply : scores[i].judge_error;
    out->stream() << line.dump() << "\n";
  }
  if (out) out->commit();
  const double value = total / static_cast<double>(records.size());
  std::cout << metric_text << " " << std::fixed << std::setprecision(4) << value << "  (" << records.size()
            << " records" << (vm.count("adapter") ? ", with adapter" : "") << ")\n";
  write_result(vm, {{"metric", metric_text}, {"value", value}, {"records", records.size()}});
  return 0;
}

}  // namespace esft::host::eval
