#include "strelay/admission_hook.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cmath>
#include <nlohmann/json.hpp>

namespace strelay {

namespace {

using std::chrono::milliseconds;

// --admission-timeout and --admission-cache, in seconds with fractions, as every other
// duration flag of strelay.
void add_hook_seconds(CLI::App& app, const std::string& flag, milliseconds& target,
                      const std::string& help, double lo, double hi) {
  app.add_option_function<double>(
         flag, [&target](double s) { target = milliseconds(std::llround(s * 1000.0)); }, help)
      ->check(CLI::Range(lo, hi).description(""))
      ->default_str(std::to_string(target.count() / 1000))
      ->type_name("SECONDS");
}

bool valid_host(std::string_view host) {
  return !host.empty() && host.size() <= 253 &&
         std::all_of(host.begin(), host.end(), [](unsigned char c) {
           return std::isalnum(c) != 0 || c == '.' || c == '-' || c == ':';
         });
}

}  // namespace

void setup_admission_hook_options(CLI::App& app, AdmissionHookOptions& o) {
  auto* g = app.add_option_group("Admission hook (docs/operations.md; a restart applies changes)");
  g->add_option(
       "--admission-url", o.url,
       "Ask this HTTP service whether a key may listen or connect (POST {key, action, source}; "
       "answer {\"allow\": true|false})")
      ->check(CLI::Validator(
          [](std::string& input) -> std::string {
            std::string error;
            return try_parse_hook_url(input, error) ? std::string() : error;
          },
          ""))
      ->type_name("URL");
  add_hook_seconds(*g, "--admission-timeout", o.timeout,
                   "The hook's whole HTTP exchange must end within this; later is a failure", 0.01,
                   60);
  add_hook_seconds(*g, "--admission-cache", o.cache,
                   "Reuse a hook's answer for a key and action this long (0: ask every time)", 0,
                   86400);
  g->add_option_function<std::string>(
       "--admission-fail", [&o](const std::string& v) { o.fail_open = v == "open"; },
       "When the hook fails or is busy: closed refuses (Refused{overloaded}), open admits")
      ->check(CLI::IsMember({"open", "closed"}).description(""))
      ->default_str("closed")
      ->type_name("open|closed");
  g->add_option("--admission-max-in-flight", o.max_in_flight,
                "Hook requests out at once; beyond, the fail policy answers (counted)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10000}).description(""))
      ->capture_default_str()
      ->type_name("N");
}

std::optional<HookUrl> try_parse_hook_url(std::string_view text, std::string& error) {
  constexpr std::string_view scheme = "http://";
  const auto fail = [&](const std::string& why) -> std::optional<HookUrl> {
    error = "\"" + std::string(text.substr(0, 80)) + "\" " + why;
    return std::nullopt;
  };
  if (!text.starts_with(scheme)) return fail("is not an http:// URL (https is not supported)");
  auto rest = text.substr(scheme.size());
  const auto slash = rest.find('/');
  HookUrl url;
  url.target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  auto authority = rest.substr(0, slash);
  if (authority.find('@') != std::string_view::npos) return fail("has user information");
  std::string_view port;
  if (authority.starts_with('[')) {  // [v6]:port
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return fail("has an unclosed [");
    url.host = std::string(authority.substr(1, close - 1));
    const auto after = authority.substr(close + 1);
    if (!after.empty() && !after.starts_with(':')) return fail("has text after ]");
    if (!after.empty()) port = after.substr(1);
  } else {
    const auto colon = authority.rfind(':');
    url.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (!valid_host(url.host)) return fail("has no valid host");
  url.port = port.empty() ? "80" : std::string(port);
  int number = 0;
  for (const char c : url.port)
    number = std::isdigit(static_cast<unsigned char>(c)) != 0
                 ? std::min(number * 10 + (c - '0'), 70000)
                 : 70000;
  if (number < 1 || number > 65535) return fail("has no valid port (1 to 65535)");
  return url;
}

const char* to_string(HookAction action) {
  return action == HookAction::listen ? "listen" : "connect";
}

std::string hook_request_body(const PublicKey& key, HookAction action, std::string_view source) {
  nlohmann::ordered_json body;
  body["key"] = key.to_base64url();
  body["action"] = to_string(action);
  body["source"] = std::string(source);
  return body.dump();
}

std::optional<HookAnswer> parse_hook_answer(unsigned status, std::string_view body) {
  if (status != 200 || body.size() > admission_hook_answer_bytes) return std::nullopt;
  const auto json = nlohmann::json::parse(body, nullptr, false);
  if (!json.is_object()) return std::nullopt;
  const auto allow = json.find("allow");
  if (allow == json.end() || !allow->is_boolean()) return std::nullopt;
  HookAnswer answer{allow->get<bool>(), std::nullopt};
  if (const auto cache = json.find("cache_seconds"); cache != json.end()) {
    if (!cache->is_number() || cache->get<double>() < 0) return std::nullopt;
    const double seconds = std::min(cache->get<double>(), 1e6);  // capped by the flag anyway
    answer.cache_for = milliseconds(std::llround(seconds * 1000.0));
  }
  return answer;
}

// ---------------------------------------------------------------- AdmissionPolicy

std::size_t AdmissionPolicy::KeyHash::operator()(
    const std::pair<PublicKey, HookAction>& k) const noexcept {
  return std::hash<PublicKey>{}(k.first) ^ static_cast<std::size_t>(k.second);
}

AdmissionPolicy::AdmissionPolicy(AdmissionHookOptions options) : options_(std::move(options)) {}

HookDecision AdmissionPolicy::begin(const PublicKey& key, HookAction action, TimePoint now) {
  if (const auto it = cache_.find({key, action}); it != cache_.end()) {
    if (now < it->second.expires) {
      const bool allow = it->second.allow;
      return {false, allow, allow ? HookOutcome::cached_allowed : HookOutcome::cached_denied};
    }
    cache_.erase(it);
  }
  // A slow hook must not collect every connection's wait: beyond the bound, answer now.
  if (in_flight_ >= options_.max_in_flight) return fail_policy(true);
  ++in_flight_;
  return {true, false, HookOutcome::denied};
}

HookDecision AdmissionPolicy::finish(const PublicKey& key, HookAction action,
                                     const std::optional<HookAnswer>& answer, TimePoint now) {
  if (in_flight_ > 0) --in_flight_;
  if (!answer) return fail_policy(false);  // a failure is never cached: the next one asks again
  const auto ttl = std::min(answer->cache_for.value_or(options_.cache), options_.cache);
  if (ttl > milliseconds::zero()) store(key, action, {answer->allow, now + ttl}, now);
  return {false, answer->allow, answer->allow ? HookOutcome::allowed : HookOutcome::denied};
}

HookDecision AdmissionPolicy::fail_policy(bool busy) const {
  if (options_.fail_open) {
    return {false, true, busy ? HookOutcome::busy_open : HookOutcome::failed_open};
  }
  return {false, false, busy ? HookOutcome::busy_closed : HookOutcome::failed_closed};
}

void AdmissionPolicy::store(const PublicKey& key, HookAction action, Entry entry, TimePoint now) {
  if (options_.cache_entries == 0) return;
  if (cache_.size() >= options_.cache_entries && !cache_.contains({key, action})) {
    std::erase_if(cache_, [now](const auto& item) { return item.second.expires <= now; });
    if (cache_.size() >= options_.cache_entries) cache_.erase(cache_.begin());
  }
  cache_[{key, action}] = entry;
}

}  // namespace strelay
