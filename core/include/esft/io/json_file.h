#pragma once
// Reading a whole JSON file with errors that name it, and reading the numbers in one exactly.
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace esft {

// Throws esft::Error "cannot open FILE" or "FILE: malformed JSON (...)".
nlohmann::json read_json_file(const std::filesystem::path& path);

// Calls `record(object, "FILE:LINE")` for each non-blank line of a JSON-lines file (gzip-compressed or not), in
// order. Throws esft::Error "FILE:LINE: not a JSON object" for a line that is not one; `record` may throw too.
void for_each_json_line(const std::filesystem::path& path,
                        const std::function<void(const nlohmann::json&, const std::string&)>& record);

// `value` as T when it is one exactly, nullopt otherwise (the caller says what was wrong, and where). An integer type
// takes only JSON integers within its range: nlohmann's get<T>() would truncate 2.5 and overflow on 1e40 (undefined
// behaviour). A std::vector of integers takes only arrays of such. Any other T is what get<T>() makes of the value.
template <typename T>
std::optional<T> json_get(const nlohmann::json& value);

// `value` as JSON text for a message, cut to about `max_chars` (a wrong value may be a whole object).
std::string json_excerpt(const nlohmann::json& value, size_t max_chars = 40);

// A decimal index as files write them in keys and names ("12" in `"experts": {"12": ...}`, `step-12`): digits only,
// at most 18 of them. nullopt otherwise (std::stoi would throw std::out_of_range, or take "12abc" for 12).
std::optional<int64_t> parse_index(std::string_view digits);

namespace detail {
std::optional<int64_t> json_integer(const nlohmann::json& value, int64_t lowest, int64_t highest);
template <typename T>
struct is_integer_vector : std::false_type {};
template <typename T>
struct is_integer_vector<std::vector<T>> : std::bool_constant<std::is_integral_v<T> && !std::is_same_v<T, bool>> {};
}  // namespace detail

template <typename T>
std::optional<T> json_get(const nlohmann::json& value) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    static_assert(sizeof(T) < sizeof(int64_t) || std::is_signed_v<T>, "json_get reads integers up to int64_t");
    const auto v = detail::json_integer(value, static_cast<int64_t>(std::numeric_limits<T>::lowest()),
                                        static_cast<int64_t>(std::numeric_limits<T>::max()));
    if (!v) return std::nullopt;
    return static_cast<T>(*v);
  } else if constexpr (detail::is_integer_vector<T>::value) {
    if (!value.is_array()) return std::nullopt;
    T out;
    out.reserve(value.size());
    for (const auto& element : value) {
      auto v = json_get<typename T::value_type>(element);
      if (!v) return std::nullopt;
      out.push_back(*v);
    }
    return out;
  } else {
    try {
      return value.get<T>();
    } catch (const nlohmann::json::exception&) {
      return std::nullopt;
    }
  }
}

}  // namespace esft
