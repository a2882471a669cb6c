#pragma once
// The ESFT reference's judge prompts (judge_prompts.cpp); `{prediction}` and `{ground_truth}` are filled in.
namespace esft::pipeline::judge_prompts {
extern const char* const kSystem;
extern const char* const kSummary;
extern const char* const kLaw;
extern const char* const kTranslation;
}  // namespace esft::pipeline::judge_prompts
