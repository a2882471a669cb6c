#include "esft/pipeline/multiple_choice.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <sstream>

#include "esft/error.h"
#include "esft/io/json_file.h"

namespace esft::pipeline {

std::vector<McRecord> read_mc_records(const std::filesystem::path& path) {
  std::vector<McRecord> out;
  for_each_json_line(path, [&](const nlohmann::json& j, const std::string& where) {
    McRecord r;
    r.origin = where;
    if (!j.contains("context") || !j["context"].is_string()) throw Error(where + ": needs \"context\", a string");
    r.context = j["context"].get<std::string>();
    if (!j.contains("choices") || !j["choices"].is_array() || j["choices"].empty())
      throw Error(where + ": needs \"choices\", a non-empty list of strings");
    for (const auto& c : j["choices"]) {
      if (!c.is_string() || c.get<std::string>().empty()) throw Error(where + ": \"choices\" must hold non-empty strings");
      r.choices.push_back(c.get<std::string>());
    }
    if (!j.contains("answer") || !j["answer"].is_number_integer())
      throw Error(where + ": needs \"answer\", the index of the correct choice");
    r.answer = j["answer"].get<int64_t>();
    if (r.answer < 0 || r.answer >= static_cast<int64_t>(r.choices.size())) {
      throw Error(where + ": answer " + std::to_string(r.answer) + " is out of range for " +
                  std::to_string(r.choices.size()) + " choices");
    }
    out.push_back(std::move(r));
  });
  if (out.empty()) throw Error(path.string() + " holds no records");
  return out;
}

std::string fewshot_prefix(const std::vector<McRecord>& dev, int64_t shots) {
  if (shots < 0 || shots > static_cast<int64_t>(dev.size())) {
    throw Error("few-shot: " + std::to_string(shots) + " examples asked, the dev file has " + std::to_string(dev.size()));
  }
  std::string prefix;
  for (int64_t i = 0; i < shots; ++i) {
    const auto& r = dev[static_cast<size_t>(i)];
    prefix += r.context + " " + r.choices[static_cast<size_t>(r.answer)] + "\n\n";
  }
  return prefix;
}

EncodedPair encode_pair(const tok::Tokenizer& tokenizer, std::string context, std::string continuation,
                        int32_t prefix_token) {
  const auto kept = context.find_last_not_of(" \t\n\r\v\f");
  const size_t end = kept == std::string::npos ? 0 : kept + 1;
  continuation = context.substr(end) + continuation;
  context.resize(end);
  EncodedPair p;
  const auto whole = tokenizer.encode(context + continuation);
  p.context = tokenizer.encode(context);
  const size_t n = std::min(p.context.size(), whole.size());
  p.continuation.assign(whole.begin() + static_cast<long>(n), whole.end());
  if (p.context.empty()) p.context = {prefix_token};
  return p;
}

int64_t code_points(const std::string& text) {
  int64_t n = 0;
  for (unsigned char c : text) n += (c & 0xC0) != 0x80;
  return n;
}

McResult score_mc(MoECausalLM& model, const tok::Tokenizer& tokenizer, const McRecord& record,
                  const std::string& prefix, const c10::Device& device, const McOptions& o) {
  const size_t C = record.choices.size();
  std::vector<std::vector<int64_t>> inputs(C);
  std::vector<EncodedPair> pairs;
  std::vector<int64_t> first(C), count(C);  // where each continuation's predictions start in its row, and how many
  int64_t longest = 0;
  for (size_t c = 0; c < C; ++c) {
    pairs.push_back(encode_pair(tokenizer, prefix + record.context, " " + record.choices[c], o.prefix_token));
    const auto& pair = pairs.back();
    if (pair.continuation.empty()) throw Error(record.origin + ": choice " + std::to_string(c) + " encodes to no token");
    // The model sees context + continuation without the last token, cut to max_length from the left.
    std::vector<int64_t> ids(pair.context.begin(), pair.context.end());
    ids.insert(ids.end(), pair.continuation.begin(), pair.continuation.end());
    ids.pop_back();
    const int64_t cut = std::max<int64_t>(0, static_cast<int64_t>(ids.size()) - o.max_length);
    if (static_cast<int64_t>(pair.continuation.size()) > o.max_length) {
      throw Error(record.origin + ": choice " + std::to_string(c) + " is longer than max_length " + std::to_string(o.max_length));
    }
    inputs[c].assign(ids.begin() + cut, ids.end());
    count[c] = static_cast<int64_t>(pair.continuation.size());
    first[c] = static_cast<int64_t>(inputs[c].size()) - count[c];
    longest = std::max<int64_t>(longest, static_cast<int64_t>(inputs[c].size()));
  }
  auto ids = at::zeros({static_cast<int64_t>(C), longest}, at::kLong), mask = at::zeros_like(ids);
  for (size_t c = 0; c < C; ++c) {
    const auto n = static_cast<int64_t>(inputs[c].size());
    ids[static_cast<int64_t>(c)].narrow(0, 0, n).copy_(at::tensor(inputs[c], at::kLong));
    mask[static_cast<int64_t>(c)].narrow(0, 0, n).fill_(1);
  }
  // Each continuation token's log-probability, gathered on the device: [C, T, V] never leaves it.
  auto targets = at::zeros({static_cast<int64_t>(C), longest}, at::kLong), picked = at::zeros_like(targets);
  const int64_t V = model.output_embedding().defined() ? model.output_embedding().size(0) : -1;
  if (V > 0 && ids.max().item<int64_t>() >= V) {
    throw Error(record.origin + ": the tokenizer gives ids outside the model's vocabulary of " + std::to_string(V));
  }
  for (size_t c = 0; c < C; ++c) {
    for (int64_t t = 0; t < count[c]; ++t) {
      const int32_t id = pairs[c].continuation[static_cast<size_t>(t)];
      if (V > 0 && id >= V) {
        throw Error(record.origin + ": token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                    std::to_string(V));
      }
      targets[static_cast<int64_t>(c)][first[c] + t] = id;
      picked[static_cast<int64_t>(c)][first[c] + t] = 1;
    }
  }
  at::NoGradGuard no_grad;
  ForwardOptions fo;
  const auto logits = model.forward(ids.to(device), mask.to(device), fo).logits;
  const auto logprobs = at::log_softmax(logits.to(at::kFloat), -1).gather(-1, targets.to(device).unsqueeze(-1)).squeeze(-1);
  const auto sums = (logprobs.to(at::kDouble) * picked.to(device, at::kDouble)).sum(1).cpu();
  McResult r;
  for (size_t c = 0; c < C; ++c) r.loglik.push_back(sums[static_cast<int64_t>(c)].item<double>());
  for (size_t c = 1; c < C; ++c) {
    if (r.loglik[c] > r.loglik[r.best]) r.best = c;
    const auto norm = [&](size_t i) { return r.loglik[i] / static_cast<double>(code_points(record.choices[i])); };
    if (norm(c) > norm(r.best_norm)) r.best_norm = c;
  }
  r.correct = static_cast<int64_t>(r.best) == record.answer;
  r.correct_norm = static_cast<int64_t>(r.best_norm) == record.answer;
  return r;
}

}  // namespace esft::pipeline
