#pragma once
// Evaluation metrics for `esft-host eval`: the score of one completion against a sample's reference answers.
// Text is UTF-8 (invalid bytes are read as U+FFFD). "Whitespace" is Python's str.isspace() (Unicode White_Space
// plus U+001C..U+001F), so that the intent metric strips exactly as the reference does.
//
// intent   — the ESFT reference's IntentEvaluator (deepseek-ai/ESFT benchmarks.py), against answers[0] only.
//            The prediction is post-processed: strip whitespace; empty -> "None"; strip '.' and '。' from both ends;
//            if it contains "```json", keep the text after it up to the next "```" ("{}" when there is no closing
//            fence); if it contains '\n', keep its first non-empty line; strip '.' and '。' again. The answer and the
//            prediction are parsed as JSON; a prediction that does not parse or is not an object scores 0. Score 1
//            iff the "intent" values are equal (Python ==; missing = "") and the slot sets are equal: over the
//            "slots" object (missing = empty), the pairs (key, value) where a list value becomes the sorted list of
//            str(item) and, in the prediction only, every ' ' is removed from string values and from each str(item).
//            A prediction slot that is neither a string nor a list scores 0; an answer slot that is neither never
//            matches. str() is Python's for strings, integers, floats, booleans and null; an item that is itself a
//            list or object is spelled as compact JSON, not as Python's repr.
//            Where the reference crashes, we differ: an answer that is not a JSON object (or whose "slots" is not an
//            object, or holds an object) throws esft::Error, whatever the prediction; a prediction with no non-empty
//            line inside its fence scores 0; a string slot never equals a list slot (Python compares the string
//            with str(tuple(...))).
// exact    — normalised exact match against any answer. Normalisation: ASCII letters lower-cased, punctuation
//            (ASCII punctuation and Unicode categories P*) removed, runs of whitespace collapsed to one space, trimmed.
// rouge-l  — ROUGE-L F1 (beta = 1), the best over answers. Tokens of the normalised text: each CJK ideograph,
//            Hiragana, Katakana or Hangul code point is a token of its own; other text splits on whitespace.
//            Empty vs empty = 1, empty vs non-empty = 0.
// accuracy — multiple choice: the first standalone capital A-Z (no letter of any script, nor combining mark,
//            directly before or after it) of the completion equals that of any answer ("B", "(B)", "B) text",
//            "Answer: B."). The words "A" and "I" are standalone capitals too. An answer without one is scored with
//            `exact`.
// f1       — SQuAD's token F1, the best over answers: the `exact` normalisation split on spaces, without the words
//            "a", "an" and "the"; F1 of the two multisets of words. Empty vs empty = 1, empty vs non-empty = 0.
#include <string>
#include <vector>

namespace esft::pipeline {

enum class Metric { Exact, Intent, RougeL, Accuracy, F1 };

// "exact" | "intent" | "rouge-l" | "accuracy" | "f1"; esft::Error naming the valid ones otherwise.
Metric parse_metric(const std::string& name);
const char* metric_name(Metric m);

// In [0, 1]: the best over `answers` (intent: answers[0] only). Throws esft::Error when `answers` is empty.
double score_completion(Metric m, const std::string& completion, const std::vector<std::string>& answers);

// The pieces, for tests and reports.
std::string normalize_answer(const std::string& text);                     // the `exact` normalisation
std::vector<std::string> rouge_tokens(const std::string& text);            // normalised, then split
double rouge_l_f1(const std::string& candidate, const std::string& reference);
std::string choice_letter(const std::string& text);                        // "" when there is none
std::string intent_post_process(const std::string& raw_prediction);        // the reference's post_process
std::string python_strip(const std::string& text);                         // Python's str.strip()

}  // namespace esft::pipeline
