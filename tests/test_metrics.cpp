// Evaluation metrics. The intent cases' expected scores are those of the ESFT reference's IntentEvaluator on the
// same strings; ROUGE-L values are worked out by hand from the LCS.
#include "doctest_torch.h"

#include <string>
#include <vector>

#include "esft/error.h"
#include "esft/pipeline/completions.h"
#include "esft/pipeline/metrics.h"

namespace {

using namespace esft::pipeline;
using Answers = std::vector<std::string>;

const std::string kAppliance =
    R"({"intent": "HomeAppliance-Control", "slots": {"appliance": "洗衣机", "details": ["厨房", "中性"], "command": "模式调节"}})";
const std::string kAlarm = R"({"intent": "Alarm-Update", "slots": {"datetime_date": "今天", "notes": "追剧"}})";

double intent(const std::string& completion, const std::string& answer = kAppliance) {
  return score_completion(Metric::Intent, completion, {answer});
}

}  // namespace

TEST_CASE("metrics: names parse both ways and unknown names list the valid ones") {
  for (Metric m : {Metric::Exact, Metric::Intent, Metric::RougeL, Metric::Accuracy, Metric::F1}) CHECK(parse_metric(metric_name(m)) == m);
  CHECK(std::string(metric_name(Metric::RougeL)) == "rouge-l");
  CHECK_THROWS_WITH_AS(parse_metric("rouge"), "unknown metric 'rouge' (valid: exact, intent, rouge-l, accuracy, f1)", esft::Error);
  CHECK_THROWS_AS(parse_metric("Exact"), esft::Error);
  CHECK_THROWS_AS(parse_metric(""), esft::Error);
}

TEST_CASE("metrics: every metric refuses a sample without answers") {
  for (Metric m : {Metric::Exact, Metric::Intent, Metric::RougeL, Metric::Accuracy}) {
    CHECK_THROWS_AS(score_completion(m, "x", {}), esft::Error);
  }
}

TEST_CASE("metrics: intent compares the intent and the slot set, whatever the order of slots and list items") {
  CHECK(intent(R"({"slots": {"command": "模式调节", "details": ["中性", "厨房"], "appliance": "洗衣机"}, "intent": "HomeAppliance-Control"})") == 1.0);
  CHECK(intent(R"({"intent": "HomeAppliance-Query", "slots": {"appliance": "洗衣机", "details": ["厨房", "中性"], "command": "模式调节"}})") == 0.0);
  CHECK(intent(R"({"intent": "HomeAppliance-Control", "slots": {"appliance": "洗衣机", "details": ["厨房"], "command": "模式调节"}})") == 0.0);
  CHECK(intent(R"({"intent": "HomeAppliance-Control", "slots": {"appliance": "洗衣机", "details": ["厨房", "中性"]}})") == 0.0);
  CHECK(intent(R"({"intent": "HomeAppliance-Control", "slots": {"appliance": "洗衣机", "details": ["厨房", "中性"], "command": "模式调节", "x": "y"}})") == 0.0);
  // A list never equals a string, even one holding the same text.
  CHECK(intent(R"({"intent": "HomeAppliance-Control", "slots": {"appliance": ["洗衣机"], "details": ["厨房", "中性"], "command": "模式调节"}})") == 0.0);
  // Missing intent and slots read as "" and {}.
  CHECK(intent("{}", R"({"intent": ""})") == 1.0);
  CHECK(intent(R"({"intent": "Alarm-Update"})", R"({"intent": "Alarm-Update", "slots": {}})") == 1.0);
  CHECK(intent(R"({"slots": {}})", kAlarm) == 0.0);
}

TEST_CASE("metrics: intent removes spaces from the prediction's slot values only") {
  CHECK(intent(R"({"intent": "HomeAppliance-Control", "slots": {"appliance": "洗 衣机 ", "details": ["厨 房", " 中性"], "command": "模式调节"}})") == 1.0);
  // The reference keeps the answer's spaces, so an answer slot with a space can never be matched.
  const std::string spaced = R"({"intent": "Music-Play", "slots": {"artist": "Jay Chou"}})";
  CHECK(intent(R"({"intent": "Music-Play", "slots": {"artist": "Jay Chou"}})", spaced) == 0.0);
  CHECK(intent(R"({"intent": "Music-Play", "slots": {"artist": "JayChou"}})", spaced) == 0.0);
  // The intent itself is compared as it is.
  CHECK(intent(R"({"intent": "Alarm-Update ", "slots": {"datetime_date": "今天", "notes": "追剧"}})", kAlarm) == 0.0);
}

TEST_CASE("metrics: intent post-processing as the reference: fences, first line, periods, whitespace") {
  const std::string good = R"({"intent": "Alarm-Update", "slots": {"notes": "追剧", "datetime_date": "今天"}})";
  CHECK(intent_post_process("  \n" + good + "。\n ") == good);
  CHECK(intent_post_process(good + ".。.") == good);
  CHECK(intent_post_process("") == "None");
  CHECK(intent_post_process(" \t\x1c ") == "None");  // Python's strip() also drops U+001C..U+001F
  CHECK(intent_post_process("```json\n" + good + "\n```") == good);
  CHECK(intent_post_process("Here it is:\n```json " + good + "```\nDone.") == " " + good);
  CHECK(intent_post_process("```json\n" + good) == "{}");  // no closing fence
  CHECK(intent_post_process("```json\n\n```") == "");     // the reference raises IndexError here
  CHECK(intent_post_process(good + "\nThe intent is an alarm.") == good);
  CHECK(intent_post_process("。" + good + "\n\n{}。") == good);
  CHECK(intent_post_process("first.\nsecond") == "first");
  CHECK(intent_post_process(".\u3002") == "");

  CHECK(intent("```json\n" + good + "\n```", kAlarm) == 1.0);
  CHECK(intent("Sure.\n```json\n" + good + "\n```\nAnything else?", kAlarm) == 1.0);
  CHECK(intent("```json\n" + good, kAlarm) == 0.0);
  CHECK(intent(good + "\n" + R"({"intent": "Other"})", kAlarm) == 1.0);
  CHECK(intent(R"({"intent": "Other"})" "\n" + good, kAlarm) == 0.0);
  CHECK(intent(good + "。", kAlarm) == 1.0);
  CHECK(intent("\n" + good + "\r\n", kAlarm) == 1.0);
}

TEST_CASE("metrics: intent scores 0 for predictions that are not a JSON object with usable slots") {
  CHECK(intent("意图是闹钟", kAlarm) == 0.0);
  CHECK(intent("", kAlarm) == 0.0);
  CHECK(intent(R"({"intent": "Alarm-Update", "slots": {"notes": "追剧")", kAlarm) == 0.0);
  CHECK(intent(R"([{"intent": "Alarm-Update"}])", kAlarm) == 0.0);
  CHECK(intent(R"("Alarm-Update")", kAlarm) == 0.0);
  CHECK(intent(R"({"intent": "Alarm-Update", "slots": ["今天"]})", kAlarm) == 0.0);
  CHECK(intent(R"({"intent": "Alarm-Update", "slots": null})", kAlarm) == 0.0);
  CHECK(intent(R"({"intent": "Alarm-Update", "slots": {"datetime_date": "今天", "notes": 5}})", kAlarm) == 0.0);
}

TEST_CASE("metrics: intent spells list items as Python's str()") {
  const std::string ints = R"({"intent": "Alarm-Update", "slots": {"day": [17, 18]}})";
  CHECK(intent(R"({"intent": "Alarm-Update", "slots": {"day": ["18", "17"]}})", ints) == 1.0);
  CHECK(intent(R"({"intent": "Alarm-Update", "slots": {"day": [18, 17]}})", ints) == 1.0);
  CHECK(intent(R"({"intent": "Alarm-Update", "slots": {"day": ["17", "19"]}})", ints) == 0.0);
  CHECK(intent(R"({"intent": "X", "slots": {"a": ["True", "None", "False"]}})", R"({"intent": "X", "slots": {"a": [true, null, false]}})") == 1.0);
  CHECK(intent(R"({"intent": "X", "slots": {"a": ["true"]}})", R"({"intent": "X", "slots": {"a": [true]}})") == 0.0);
  CHECK(intent(R"({"intent": "X", "slots": {"a": ["0.0001", "1e-05", "1e+16", "1000000000000000.0", "2.0", "-0.5", "1.5e+300", "0.1"]}})",
               R"({"intent": "X", "slots": {"a": [0.0001, 0.00001, 1e16, 1e15, 2.0, -0.5, 1.5e300, 0.1]}})") == 1.0);
  // A scalar answer slot that is not a string: the prediction's strings never equal it.
  CHECK(intent(R"({"intent": "X", "slots": {"a": "5"}})", R"({"intent": "X", "slots": {"a": 5}})") == 0.0);
  // Python's ==: True == 1 for the intent.
  CHECK(intent(R"({"intent": true})", R"({"intent": 1})") == 1.0);
}

TEST_CASE("metrics: intent scores answers[0] only and refuses a malformed answer") {
  CHECK(score_completion(Metric::Intent, kAlarm, {kAppliance, kAlarm}) == 0.0);
  CHECK(score_completion(Metric::Intent, kAlarm, {kAlarm, kAppliance}) == 1.0);
  CHECK_THROWS_AS(intent(kAlarm, "Alarm-Update"), esft::Error);
  CHECK_THROWS_AS(intent(kAlarm, "[1]"), esft::Error);
  CHECK_THROWS_AS(intent(kAlarm, R"({"intent": "X", "slots": []})"), esft::Error);
  CHECK_THROWS_AS(intent(kAlarm, R"({"intent": "X", "slots": {"a": {"b": 1}}})"), esft::Error);
  CHECK_THROWS_AS(intent("not json either", R"({"intent": "X", "slots": null})"), esft::Error);
}

TEST_CASE("metrics: exact matches after normalising case, punctuation and whitespace") {
  CHECK(normalize_answer("  The\tCAT,  sat!\n ") == "the cat sat");
  CHECK(normalize_answer("洗衣机，开机。") == "洗衣机开机");
  CHECK(normalize_answer("well-known $5 «quote»") == "wellknown 5 quote");
  CHECK(normalize_answer("ÀB Ｃ") == "Àb Ｃ");  // only ASCII letters are folded
  CHECK(normalize_answer("a\u3000 b") == "a b");
  CHECK(normalize_answer(" ... ") == "");
  CHECK(score_completion(Metric::Exact, "The cat sat.", {"the  cat sat"}) == 1.0);
  CHECK(score_completion(Metric::Exact, "洗衣机，开机", {"洗衣机开机"}) == 1.0);
  CHECK(score_completion(Metric::Exact, "Paris", {"London", "paris."}) == 1.0);
  CHECK(score_completion(Metric::Exact, "Paris", {"London", "Pariss"}) == 0.0);
  CHECK(score_completion(Metric::Exact, "the cat", {"thecat"}) == 0.0);
}

TEST_CASE("metrics: rouge-l is the F1 of the longest common subsequence") {
  CHECK(rouge_l_f1("the cat sat on the mat", "the cat lay on the mat") == doctest::Approx(5.0 / 6.0));
  CHECK(rouge_l_f1("the cat", "the cat sat on the mat") == doctest::Approx(0.5));  // P = 1, R = 1/3
  CHECK(rouge_l_f1("the cat sat on the mat", "the cat") == doctest::Approx(0.5));
  CHECK(rouge_l_f1("a b c d", "d c b a") == doctest::Approx(0.25));
  CHECK(rouge_l_f1("The CAT!", "the cat") == 1.0);
  CHECK(rouge_l_f1("dog", "the cat") == 0.0);
  CHECK(rouge_l_f1("", "") == 1.0);
  CHECK(rouge_l_f1("...", " ") == 1.0);  // both normalise to nothing
  CHECK(rouge_l_f1("", "cat") == 0.0);
  CHECK(rouge_l_f1("cat", "") == 0.0);
  CHECK(score_completion(Metric::RougeL, "the cat sat on the mat", {"dog", "the cat lay on the mat", "the"}) ==
        doctest::Approx(5.0 / 6.0));
}

TEST_CASE("metrics: rouge-l makes each CJK, kana and Hangul character a token") {
  CHECK(rouge_tokens("我爱北京 Tian'anmen，广场") == std::vector<std::string>{"我", "爱", "北", "京", "tiananmen", "广", "场"});
  CHECK(rouge_tokens("abc洗衣机def") == std::vector<std::string>{"abc", "洗", "衣", "机", "def"});
  CHECK(rouge_tokens("ひらがな カタカナ 한국") == std::vector<std::string>{"ひ", "ら", "が", "な", "カ", "タ", "カ", "ナ", "한", "국"});
  CHECK(rouge_l_f1("我爱北京", "我爱上海") == doctest::Approx(0.5));
  CHECK(rouge_l_f1("打开洗衣机", "洗衣机打开") == doctest::Approx(0.6));  // LCS 洗衣机: 3 of 5 each way
  CHECK(rouge_l_f1("洗衣机", "洗衣机，开机") == doctest::Approx(2 * 1.0 * 0.6 / 1.6));
}

TEST_CASE("metrics: accuracy reads the first standalone capital letter as the choice") {
  CHECK(choice_letter("The answer is (C).") == "C");
  CHECK(choice_letter("C") == "C");
  CHECK(choice_letter("Answer: B.") == "B");
  CHECK(choice_letter("B) Paris") == "B");
  CHECK(choice_letter("选项D正确") == "");   // CJK characters are letters
  CHECK(choice_letter("选项 D 正确") == "D");
  CHECK(choice_letter("Because") == "");
  CHECK(choice_letter("The OK answer") == "");
  CHECK(choice_letter("A word") == "A");     // documented: a standalone word "A" reads as choice A
  CHECK(choice_letter("éB, then C") == "C");  // any script's letter joins a word
  CHECK(choice_letter("B\u0301 or D") == "D");  // so does a combining mark
  CHECK(choice_letter("3B") == "B");
  CHECK(choice_letter("") == "");

  CHECK(score_completion(Metric::Accuracy, "The answer is (C).", {"C"}) == 1.0);
  CHECK(score_completion(Metric::Accuracy, "The answer is (C).", {"C) Paris"}) == 1.0);
  CHECK(score_completion(Metric::Accuracy, "The answer is (C).", {"B"}) == 0.0);
  CHECK(score_completion(Metric::Accuracy, "Because", {"B"}) == 0.0);
  CHECK(score_completion(Metric::Accuracy, "D", {"B", "D"}) == 1.0);
}

TEST_CASE("metrics: accuracy falls back to exact for an answer without a choice letter") {
  CHECK(score_completion(Metric::Accuracy, "42.", {"42"}) == 1.0);
  CHECK(score_completion(Metric::Accuracy, "43", {"42"}) == 0.0);
  CHECK(score_completion(Metric::Accuracy, "paris", {"paris"}) == 1.0);
  CHECK(score_completion(Metric::Accuracy, "paris", {"B", "paris"}) == 1.0);
}

TEST_CASE("metrics: f1 is SQuAD's token F1 (normalised words, articles dropped), the best over answers") {
  using esft::pipeline::score_completion;
  // "the Denver Broncos won" vs "Denver Broncos": words {denver, broncos, won} vs {denver, broncos}; P 2/3, R 1.
  CHECK(score_completion(Metric::F1, "the Denver Broncos won", {"Denver Broncos"}) == doctest::Approx(0.8));
  CHECK(score_completion(Metric::F1, "Broncos!", {"Carolina", "The Broncos."}) == doctest::Approx(1.0));
  CHECK(score_completion(Metric::F1, "a b b", {"b c"}) == doctest::Approx(0.5));  // common 1: P 1/2, R 1/2
  CHECK(score_completion(Metric::F1, "nothing", {"Denver"}) == 0.0);
  CHECK(score_completion(Metric::F1, "the", {"a"}) == 1.0);  // both empty once the articles go
}

TEST_CASE("completions: answers are a list of strings, or the string of a Python-style list") {
  using esft::pipeline::answers_from_json_value;
  CHECK(answers_from_json_value(nlohmann::json::array({"a", "b"}), "t") == std::vector<std::string>{"a", "b"});
  CHECK(answers_from_json_value("['{\"intent\": \"x\"}', \"it's\"]", "t") ==
        std::vector<std::string>{"{\"intent\": \"x\"}", "it's"});
  CHECK(answers_from_json_value(R"(['line\none', 'tab\t', '\u00e9\\'])", "t") ==
        std::vector<std::string>{"line\none", "tab\t", "\xC3\xA9\\"});
  for (const char* bad : {"", "['a'", "['a',]x", "[1]", "'a'"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(answers_from_json_value(bad, "t"), esft::Error);
  }
  CHECK_THROWS_WITH_AS(answers_from_json_value(nlohmann::json::array(), "f:3"), doctest::Contains("f:3"), esft::Error);
}
