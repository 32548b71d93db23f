#include "strelay/http.hpp"

#include <sodium.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <system_error>

#include "common/base64url.hpp"
#include "strelay/config.hpp"
#include "strelay/sources.hpp"
#include "strelay/status_page.hpp"

namespace strelay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
// Reading /proc/self/fd is O(open fds); scrapes closer together than this share one reading.
constexpr auto process_stats_max_age = std::chrono::seconds(1);
// A refused connection waits at most this long for its request, so a /healthz can be told
// apart; one at a time (the descriptor budget's one extra HTTP connection), others at once.
constexpr auto refusal_read_wait = std::chrono::milliseconds(500);
// After an accept error (EMFILE, ENFILE), wait this long before accepting again.
constexpr auto accept_backoff = std::chrono::milliseconds(100);

constexpr std::string_view healthz_response =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nCache-Control: "
    "no-store\r\n"
    "Connection: close\r\n\r\nok\n";

constexpr std::string_view busy_response =
    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    "Retry-After: 1\r\nConnection: close\r\n\r\nbusy\n";

}  // namespace

struct HttpServer::State {
  State(asio::any_io_executor executor, Metrics& m, StatusInfo i, Logger& l, HttpLimits lim)
      : limits(lim),
        strand(asio::make_strand(executor)),
        acceptor(strand),
        sample_timer(strand),
        metrics(m),
        logger(l),
        info(std::make_shared<const StatusInfo>(std::move(i))) {}

  HttpLimits limits;
  asio::strand<asio::any_io_executor> strand;
  tcp::acceptor acceptor;           // strand
  asio::steady_timer sample_timer;  // strand
  Metrics& metrics;
  Logger& logger;
  SampleRing samples;  // own mutex

  std::mutex info_mutex;  // guards info
  std::shared_ptr<const StatusInfo> info;

  // Owned by the strand:
  struct Conn {
    SourceKey source;
    beast::tcp_stream* stream = nullptr;
    bool waiting = true;  // waiting for its client (a request not yet read): may be closed first
  };
  bool stopped = false;
  std::size_t open_connections = 0;      // sessions running, for the connection cap
  std::set<beast::tcp_stream*> streams;  // their streams, closed by stop()
  std::map<std::uint64_t, Conn> conns;   // by age, oldest first
  std::map<SourceKey, std::size_t> per_source;
  std::uint64_t next_conn = 0;
  bool refusing = false;  // a refused connection is waiting for its request
  ProcessStats process{};
  std::chrono::steady_clock::time_point process_read{};

  std::shared_ptr<const StatusInfo> status_info() {
    std::lock_guard lock(info_mutex);
    return info;
  }

  const ProcessStats& process_stats() {
    const auto now = std::chrono::steady_clock::now();
    if (process_read == std::chrono::steady_clock::time_point{} ||
        now - process_read >= process_stats_max_age) {
      process = read_process_stats();
      process_read = now;
    }
    return process;
  }
};

namespace {

using State = HttpServer::State;

std::string make_nonce() {
  std::array<std::uint8_t, 16> bytes{};
  randombytes_buf(bytes.data(), bytes.size());
  return to_base64url(bytes);
}

Response text_response(const Request& req, http::status status, std::string_view content_type,
                       std::string body) {
  Response res{status, req.version()};
  res.set(http::field::server, "strelay");
  res.set(http::field::content_type, content_type);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

// The relay ticket as a file to save (the status page links it); 404 without --public-address.
Response ticket_download(const Request& req, const StatusInfo& info) {
  if (info.ticket_json.empty()) {
    return text_response(req, http::status::not_found, "text/plain",
                         "no ticket: strelay runs without --public-address\n");
  }
  auto res = text_response(req, http::status::ok, "application/json", info.ticket_json + "\n");
  res.set(http::field::content_disposition, "attachment; filename=\"relay.relay\"");
  return res;
}

Response route(State& s, const Request& req) {
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    auto res =
        text_response(req, http::status::method_not_allowed, "text/plain", "method not allowed\n");
    res.set(http::field::allow, "GET, HEAD");
    return res;
  }
  std::string_view target = req.target();
  target = target.substr(0, target.find('?'));  // a query string is ignored, not an error
  if (target == "/healthz") return text_response(req, http::status::ok, "text/plain", "ok\n");
  if (target == ticket_download_path) return ticket_download(req, *s.status_info());
  if (target != "/" && target != "/metrics" && target != "/status" && target != "/samples") {
    return text_response(req, http::status::not_found, "text/plain", "not found\n");
  }
  const auto info = s.status_info();
  const auto samples = s.samples.snapshot();
  const StatusView view{s.metrics, *info, s.process_stats(), compute_rates(samples),
                        std::chrono::system_clock::now()};
  if (target == "/metrics") {
    return text_response(req, http::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                         render_prometheus(view));
  }
  if (target == "/status")
    return text_response(req, http::status::ok, "application/json", render_status_json(view));
  if (target == "/samples") {
    return text_response(req, http::status::ok, "application/json", render_samples_json(samples));
  }
  const auto nonce = make_nonce();
  auto res = text_response(req, http::status::ok, "text/html; charset=utf-8",
                           render_status_page(view, samples, nonce));
  res.set("Content-Security-Policy", status_page_csp(nonce));
  res.set("Referrer-Policy", "no-referrer");
  res.set(http::field::x_frame_options, "DENY");
  return res;
}

// The answer to a request that could not be read, or nothing when the connection just ends.
std::optional<http::status> status_for_read_error(const beast::error_code& ec) {
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    return http::status::request_header_fields_too_large;
  }
  if (ec == http::error::body_limit) return http::status::payload_too_large;
  if (&ec.category() == &http::make_error_code(http::error::bad_target).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return http::status::bad_request;  // a parse error
  }
  return std::nullopt;  // EOF, timeout, reset, shutdown
}

asio::awaitable<void> serve(std::shared_ptr<State> s, tcp::socket socket, std::uint64_t id) {
  beast::tcp_stream stream(std::move(socket));
  s->streams.insert(&stream);
  s->conns.at(id).stream = &stream;
  struct Unregister {
    State& s;
    beast::tcp_stream* stream;
    std::uint64_t id;
    ~Unregister() {
      s.streams.erase(stream);
      const auto it = s.conns.find(id);
      if (it == s.conns.end()) return;
      if (--s.per_source[it->second.source] == 0) s.per_source.erase(it->second.source);
      s.conns.erase(it);
    }
  } unregister{*s, &stream, id};
  auto& waiting = s->conns.at(id).waiting;

  // Capped so that one connection holds a bounded amount of memory whatever it sends.
  beast::flat_buffer buffer(2 * http_max_header_bytes);
  for (std::size_t served = 0; served < http_max_requests_per_connection && !s->stopped; ++served) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(http_max_header_bytes));
    parser.body_limit(static_cast<std::uint64_t>(http_max_body_bytes));
    stream.expires_after(s->limits.request_deadline);  // one deadline for the header and the body
    waiting = true;
    auto [read_ec, header_n] = co_await http::async_read_header(stream, buffer, parser, use_tuple);
    // Beast applies its header_limit to the request line and the fields separately; counting
    // the bytes the header took makes the limit exact for the whole header section.
    if (!read_ec && header_n > http_max_header_bytes) read_ec = http::error::header_limit;
    if (!read_ec && !parser.is_done()) {
      auto [body_ec, body_n] = co_await http::async_read(stream, buffer, parser, use_tuple);
      read_ec = body_ec;
    }
    if (read_ec) {
      if (const auto status = status_for_read_error(read_ec); status && !s->stopped) {
        Request dummy{http::verb::get, "/", 11};
        auto res = text_response(dummy, *status, "text/plain",
                                 std::string(http::obsolete_reason(*status)) + "\n");
        res.keep_alive(false);
        stream.expires_after(s->limits.request_deadline);
        co_await http::async_write(stream, res, use_tuple);
      }
      break;
    }
    waiting = false;  // answering: not closed to make room
    auto res = route(*s, parser.get());
    const bool keep =
        parser.get().keep_alive() && served + 1 < http_max_requests_per_connection && !s->stopped;
    res.keep_alive(keep);
    if (parser.get().method() == http::verb::head) {
      const auto length = res.body().size();
      res.body().clear();
      res.content_length(length);
    }
    stream.expires_after(s->limits.request_deadline);
    auto [write_ec, write_n] = co_await http::async_write(stream, res, use_tuple);
    if (write_ec || !keep) break;
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  stream.close();
}

// Over a connection cap: a short answer written without waiting (it fits any socket buffer),
// then close. The client sees a clean refusal, and no coroutine or timer is spent on it. The
// answer is 503, except to a request for /healthz that has already arrived: that gets its 200.
void refuse(tcp::socket socket) {
  boost::system::error_code ec;
  socket.non_blocking(true, ec);
  std::array<char, 4096> first{};
  const std::size_t n = socket.read_some(asio::buffer(first), ec);
  const std::string_view request(first.data(), ec ? 0 : n);
  const bool healthz = request.starts_with("GET /healthz ") ||
                       request.starts_with("GET /healthz?") ||
                       request.starts_with("HEAD /healthz ");
  const auto answer = healthz ? healthz_response : busy_response;
  ec = {};
  socket.write_some(asio::buffer(answer.data(), answer.size()), ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  // Closing with unread bytes makes the kernel send a reset, which can destroy the answer still
  // in flight; so read (without waiting) whatever the client has sent already, a bounded amount.
  std::array<char, 4096> sink{};
  for (int i = 0; i < 16 && !ec; ++i) socket.read_some(asio::buffer(sink), ec);
  socket.close(ec);
}

void log_failure(Logger& logger, std::string_view what, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    logger.error("http_internal_error", {}, {{"where", what}, {"error", x.what()}});
  }
}

// Refuses after waiting (briefly) for the request, so that a /healthz gets its 200.
asio::awaitable<void> refuse_when_read(std::shared_ptr<State> s, tcp::socket socket) {
  using namespace asio::experimental::awaitable_operators;
  asio::steady_timer wait(s->strand, refusal_read_wait);
  co_await (socket.async_wait(tcp::socket::wait_read, use_tuple) || wait.async_wait(use_tuple));
  refuse(std::move(socket));
}

// A refusal: with a short wait for the request when none is waiting already, else at once.
void refuse_connection(const std::shared_ptr<State>& s, tcp::socket socket) {
  if (s->refusing) {
    refuse(std::move(socket));
    return;
  }
  s->refusing = true;
  asio::co_spawn(s->strand, refuse_when_read(s, std::move(socket)), [s](std::exception_ptr e) {
    s->refusing = false;
    log_failure(s->logger, "refusal", e);
  });
}

// All slots taken: the heaviest source's oldest connection that waits for its client is closed
// for a newcomer from a lighter source. False when there is none (then the newcomer is refused).
bool close_for(State& s, const SourceKey& newcomer) {
  const SourceKey* heaviest = nullptr;
  std::size_t most = 0;
  for (const auto& [source, count] : s.per_source) {
    if (count > most) heaviest = &source, most = count;
  }
  const auto it = s.per_source.find(newcomer);
  const std::size_t mine = it == s.per_source.end() ? 0 : it->second;
  if (heaviest == nullptr || mine + 1 >= most) return false;
  for (auto& [id, conn] : s.conns) {
    if (conn.source == *heaviest && conn.waiting && conn.stream != nullptr) {
      boost::system::error_code ignored;
      conn.stream->socket().close(ignored);  // its serve() ends and gives the slot back
      conn.waiting = false;                  // never chosen twice
      return true;
    }
  }
  return false;
}

asio::awaitable<void> accept_loop(std::shared_ptr<State> s) {
  for (;;) {
    auto [ec, socket] = co_await s->acceptor.async_accept(use_tuple);
    if (s->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE and friends: the loop must survive them; back off and try again.
      s->logger.warn("http_accept_error", {},
                     {{"error", std::error_code(ec.value(), std::system_category())}});
      asio::steady_timer backoff(s->strand, accept_backoff);
      co_await backoff.async_wait(use_tuple);
      continue;
    }
    boost::system::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec);
    if (peer_ec) continue;  // already gone
    const auto source = SourceKey::from_address(peer.address());
    const auto held = s->per_source.find(source);
    if (held != s->per_source.end() && held->second >= s->limits.max_per_source) {
      s->metrics.limit_hits_total.inc(LimitReason::http_per_source);
      s->logger.warn("http_refused", {},
                     {{"reason", "too many HTTP connections from one source"},
                      {"source", source.to_string()},
                      {"limit", s->limits.max_per_source}});
      refuse_connection(s, std::move(socket));
      continue;
    }
    // The closed one's slot is given back when its serve() ends, a moment later: the newcomer
    // is admitted now, one over the cap at most (the descriptor budget's extra HTTP connection).
    const bool full = s->open_connections >= s->limits.max_connections;
    if (full && !(s->open_connections == s->limits.max_connections && close_for(*s, source))) {
      s->logger.warn(
          "http_refused", {},
          {{"reason", "too many HTTP connections"}, {"limit", s->limits.max_connections}});
      refuse_connection(s, std::move(socket));
      continue;
    }
    if (full) s->metrics.limit_hits_total.inc(LimitReason::http_idle_closed);
    ++s->open_connections;
    const auto id = s->next_conn++;
    s->conns.emplace(id, State::Conn{source, nullptr, true});
    ++s->per_source[source];
    asio::co_spawn(s->strand, serve(s, std::move(socket), id), [s](std::exception_ptr e) {
      --s->open_connections;  // completion handlers run on the strand too
      log_failure(s->logger, "session", e);
    });
  }
}

asio::awaitable<void> sample_loop(std::shared_ptr<State> s) {
  while (!s->stopped) {
    s->samples.push(take_sample(s->metrics, std::chrono::system_clock::now()));
    s->sample_timer.expires_after(status_sample_interval);
    auto [ec] = co_await s->sample_timer.async_wait(use_tuple);
    if (ec) co_return;
  }
}

}  // namespace

HttpServer::HttpServer(asio::any_io_executor executor, const tcp::endpoint& endpoint,
                       Metrics& metrics, StatusInfo info, Logger& logger, HttpLimits limits)
    : state_(
          std::make_shared<State>(std::move(executor), metrics, std::move(info), logger, limits)) {
  auto& acceptor = state_->acceptor;
  const auto fail = [&endpoint](const boost::system::error_code& ec) {
    throw std::system_error(std::error_code(ec.value(), std::system_category()),
                            "cannot listen for HTTP on " + endpoint_to_string(endpoint));
  };
  boost::system::error_code ec;
  if (acceptor.open(endpoint.protocol(), ec); ec) fail(ec);
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec); ec) fail(ec);
  if (acceptor.bind(endpoint, ec); ec) fail(ec);
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) fail(ec);
  local_endpoint_ = acceptor.local_endpoint(ec);
  if (ec) fail(ec);
}

HttpServer::~HttpServer() {
  stop();
}

void HttpServer::start() {
  auto s = state_;
  asio::co_spawn(s->strand, accept_loop(s),
                 [s](std::exception_ptr e) { log_failure(s->logger, "accept", e); });
  asio::co_spawn(s->strand, sample_loop(s),
                 [s](std::exception_ptr e) { log_failure(s->logger, "sampler", e); });
}

void HttpServer::stop() {
  auto s = state_;
  asio::dispatch(s->strand, [s] {
    if (s->stopped) return;
    s->stopped = true;
    boost::system::error_code ignored;
    s->acceptor.close(ignored);
    s->sample_timer.cancel();
    for (auto* stream : s->streams) stream->socket().close(ignored);
  });
}

void HttpServer::set_status_info(StatusInfo info) {
  auto fresh = std::make_shared<const StatusInfo>(std::move(info));
  std::lock_guard lock(state_->info_mutex);
  state_->info = std::move(fresh);
}

const SampleRing& HttpServer::samples() const {
  return state_->samples;
}

}  // namespace strelay
