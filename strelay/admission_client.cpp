#include "strelay/admission_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <stdexcept>

#include "common/coro.hpp"

namespace strelay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {

HookUrl parse_or_throw(const std::string& text) {
  std::string error;
  auto url = try_parse_hook_url(text, error);
  if (!url) throw std::invalid_argument("--admission-url: " + error);
  return *url;
}

// Resolve, connect, POST, read: the steps of one question, each failing with its error code.
asio::awaitable<boost::system::error_code> post_json(
    const HookUrl& url, const std::string& body, std::chrono::milliseconds timeout,
    http::response_parser<http::string_body>& out) {
  auto executor = co_await asio::this_coro::executor;
  tcp::resolver resolver(executor);
  auto [resolve_error, endpoints] =
      co_await resolver.async_resolve(url.host, url.port, await_tuple);
  if (resolve_error) co_return resolve_error;
  beast::tcp_stream stream(executor);
  // Beast's own deadline too: it closes the socket even where cancellation does not reach.
  stream.expires_after(timeout);
  auto [connect_error, endpoint] = co_await stream.async_connect(endpoints, await_tuple);
  if (connect_error) co_return connect_error;
  http::request<http::string_body> request{http::verb::post, url.target, 11};
  request.set(http::field::host, url.host);
  request.set(http::field::user_agent, "strelay/" STRELAY_VERSION);
  request.set(http::field::content_type, "application/json");
  request.set(http::field::connection, "close");
  request.body() = body;
  request.prepare_payload();
  auto [write_error, written] = co_await http::async_write(stream, request, await_tuple);
  if (write_error) co_return write_error;
  beast::flat_buffer buffer;
  auto [read_error, read] = co_await http::async_read(stream, buffer, out, await_tuple);
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return read_error;
}

}  // namespace

AdmissionHook::AdmissionHook(AdmissionHookOptions options, Clock& clock, Metrics& metrics,
                             Logger& log)
    : options_(options),
      url_(parse_or_throw(options.url)),
      clock_(clock),
      metrics_(metrics),
      log_(log),
      policy_(options) {}

asio::awaitable<HookDecision> AdmissionHook::ask(PublicKey key, HookAction action,
                                                 asio::ip::address source) {
  HookDecision decision;
  {
    std::lock_guard lock(mutex_);
    decision = policy_.begin(key, action, clock_.now());
  }
  if (decision.ask) {
    GaugeHold in_flight(metrics_.admission_hook_in_flight);
    const auto answer = co_await exchange(hook_request_body(key, action, source.to_string()));
    std::lock_guard lock(mutex_);
    decision = policy_.finish(key, action, answer, clock_.now());
  }
  metrics_.admission_hook_total.inc(decision.outcome);
  log_.debug("admission_hook", LogTags{0, key},
             {{"action", to_string(action)},
              {"outcome", metric_label(decision.outcome)},
              {"source", source.to_string()}});
  co_return decision;
}

asio::awaitable<std::optional<HookAnswer>> AdmissionHook::exchange(std::string body) {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor, options_.timeout);
  http::response_parser<http::string_body> response;
  response.body_limit(admission_hook_answer_bytes);
  // The whole exchange races the timeout: the loser is cancelled, its socket closed.
  auto raced =
      co_await (post_json(url_, body, options_.timeout, response) || timer.async_wait(await_tuple));
  std::string why;
  if (raced.index() == 1) {
    why = "timeout";
  } else if (const auto ec = std::get<0>(raced)) {
    why = ec.message();
  } else if (auto answer = parse_hook_answer(response.get().result_int(), response.get().body())) {
    co_return answer;
  } else {
    why = "unusable answer (status " + std::to_string(response.get().result_int()) + ")";
  }
  log_.warn("admission_hook_failed", {}, {{"error", why}});
  co_return std::nullopt;
}

}  // namespace strelay
