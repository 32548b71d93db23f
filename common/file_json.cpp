#include "common/file_json.hpp"

#include <algorithm>

namespace strelay {

namespace {

// Thrown from the parser callback to stop at once; never leaves this file.
struct StopParsing {
  std::string cause;
};

std::string position_of(std::string_view text, std::size_t byte) {
  // nlohmann's byte count is 1-based and may point one past the end.
  const std::size_t end = std::min(byte == 0 ? 0 : byte - 1, text.size());
  std::size_t line = 1;
  std::size_t column = 1;
  for (std::size_t i = 0; i < end; ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

std::string view_of(const SecretText& s) {
  return std::string(s.data(), s.size());
}

// "a number", "an object", "null": for "must be a string, not ..." messages.
std::string described_type(const FileJson& value) {
  if (value.is_null()) return "null";
  const std::string name = value.type_name();
  return (value.is_object() || value.is_array() ? "an " : "a ") + name;
}

}  // namespace

std::optional<FileJson> try_parse_file_json(std::string_view text, std::string& error) {
  if (text.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    error = "is empty (expected a JSON object)";
    return std::nullopt;
  }
  // Keys seen in each open object, innermost last: nlohmann would silently keep the last of
  // two equal keys, and two readers disagreeing on a file's meaning is how confusion starts.
  std::vector<std::vector<SecretText>> open_objects;
  const FileJson::parser_callback_t check = [&](int depth, nlohmann::json::parse_event_t event,
                                                FileJson& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if ((event == Event::object_start || event == Event::array_start) &&
        depth >= max_file_json_depth) {
      throw StopParsing{"nesting is deeper than " + std::to_string(max_file_json_depth) +
                        " levels"};
    }
    if (event == Event::object_start) open_objects.emplace_back();
    if (event == Event::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == Event::key && !open_objects.empty()) {
      auto& keys = open_objects.back();
      const auto& key = parsed.get_ref<const SecretText&>();
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
        throw StopParsing{"duplicate field " + quote_for_message(view_of(key))};
      }
      keys.push_back(key);
    }
    return true;
  };
  FileJson json;
  try {
    json = FileJson::parse(text.begin(), text.end(), check);
  } catch (const StopParsing& stop) {
    error = stop.cause;
    return std::nullopt;
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's own message quotes the input ("last read: ..."), which may be secret.
    error = "not valid JSON (syntax error at " + position_of(text, e.byte) + ")";
    return std::nullopt;
  } catch (const nlohmann::json::out_of_range&) {
    // A number too large for a double (e.g. 7777E777): no field of ours is a number anyway.
    error = "not valid JSON (a number out of range)";
    return std::nullopt;
  }
  if (!json.is_object()) {
    error = "expected a JSON object, found " + described_type(json);
    return std::nullopt;
  }
  return json;
}

bool check_fields(const FileJson& object, std::initializer_list<std::string_view> names,
                  std::string_view what, std::string& error) {
  for (const auto name : names) {
    if (!object.contains(SecretText(name))) {
      error = "missing field " + quote_for_message(name);
      return false;
    }
  }
  for (auto it = object.begin(); it != object.end(); ++it) {
    const std::string_view k(it.key().data(), it.key().size());
    if (std::find(names.begin(), names.end(), k) == names.end()) {
      std::string expected;
      for (const auto name : names) {
        if (!expected.empty()) expected += (name == *(names.end() - 1)) ? " and " : ", ";
        expected += quote_for_message(name);
      }
      error = "unknown field " + quote_for_message(k) + " (" + std::string(what) + " has exactly " +
              expected + ")";
      return false;
    }
  }
  return true;
}

const SecretText* string_field(const FileJson& object, std::string_view name, std::string& error) {
  const auto it = object.find(SecretText(name));
  if (it == object.end()) {
    error = "missing field " + quote_for_message(name);
    return nullptr;
  }
  if (!it->is_string()) {
    error = quote_for_message(name) + " must be a string, not " + described_type(*it);
    return nullptr;
  }
  return &it->get_ref<const SecretText&>();
}

}  // namespace strelay
