#include "strelay/front.hpp"

#include <sys/socket.h>

#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common/coro.hpp"
#include "strelay/carrier.hpp"
#include "strelay/proxy_protocol.hpp"
#include "strelay/rendezvous.hpp"
#include "strelay/server.hpp"
#include "strelay/web_root.hpp"
#include "strelay/websocket.hpp"

namespace strelay {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using Request = http::request<http::empty_body>;

namespace {

// The bytes that tell the carriers apart ("PROXY " and the v2 signature are the longest).
constexpr std::size_t first_bytes = 12;

constexpr std::string_view plain_answer =
    "This is a strelay relay. Nodes connect here over TCP, or over WebSocket at ";

CarrierRefusal bridge_refusal(WebSocketBridge::End end) {
  switch (end) {
    case WebSocketBridge::End::text_message: return CarrierRefusal::text_message;
    case WebSocketBridge::End::protocol_error: return CarrierRefusal::protocol_error;
    case WebSocketBridge::End::too_big: return CarrierRefusal::too_big;
    default: return CarrierRefusal::stalled;
  }
}

class Front : public std::enable_shared_from_this<Front> {
 public:
  Front(Server& server, FrontEntry entry)
      : server_(server),
        settings_(server.settings()),
        socket_(std::move(entry.socket)),
        admitted_(std::move(entry.admitted)),
        connection_(std::move(entry.connection)),
        pending_(server.metrics().pending_handshakes),
        deadline_(entry.deadline),
        websocket_only_(entry.websocket_only),
        watchdog_(socket_.get_executor(), server.clock()) {
    peer_ = entry.remote.address();
    peer_port_ = entry.remote.port();
    client_ = peer_;
    trusted_ = !admitted_.has_value();
  }

  asio::awaitable<void> run();
  asio::any_io_executor executor() { return socket_.get_executor(); }
  // After run(): whatever was not handed on is closed and released now, not at the deadline.
  void finish() {
    watchdog_.cancel();
    close_now();
    handed_off_ = true;
    pending_.release();
    connection_.release();
    admitted_.reset();
  }

 private:
  enum class Prefix { proxied, not_proxy, done };

  asio::awaitable<int> peek(std::span<std::uint8_t> into);
  asio::awaitable<Prefix> read_prefix();
  asio::awaitable<void> after_first_bytes(std::span<const std::uint8_t> first);
  asio::awaitable<void> serve_http();
  asio::awaitable<bool> answer_web(const Request& req);
  asio::awaitable<void> upgrade(Request req, std::string_view after_request);
  asio::awaitable<void> write_plain(http::status status, unsigned version, std::string body,
                                    std::string_view allow = {});
  void to_session(tcp::socket socket, Carrier carrier);
  bool admit();
  void refuse(CarrierRefusal reason, std::string_view detail = {});
  void arm_watchdog();
  void close_now();
  LogTags tags() const { return {}; }
  std::string source() const { return client_.to_string(); }

  Server& server_;
  std::shared_ptr<const ServerSettings> settings_;
  tcp::socket socket_;
  std::optional<WebSocketBridge::Stream> ws_;
  std::optional<Admission::Admitted> admitted_;
  GaugeHold connection_;
  GaugeHold pending_;
  TimePoint deadline_;
  bool websocket_only_ = false;
  RelayTimer watchdog_;
  bool expired_ = false;
  bool handed_off_ = false;
  boost::asio::ip::address peer_;  // the TCP peer
  unsigned short peer_port_ = 0;
  boost::asio::ip::address client_;     // the source for limits and logs
  bool trusted_ = false;                // peer_ is a trusted proxy
  bool proxied_ = false;                // a PROXY header named client_
  std::vector<std::uint8_t> consumed_;  // read before knowing what they were: an HTTP start
};

void Front::arm_watchdog() {
  watchdog_.expires_at(deadline_);
  watchdog_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (ec || self->handed_off_) return;
    self->expired_ = true;
    self->close_now();
  });
}

void Front::close_now() {
  boost::system::error_code ignored;
  if (ws_) {
    ws_->next_layer().close(ignored);
  } else {
    socket_.close(ignored);
  }
}

void Front::refuse(CarrierRefusal reason, std::string_view detail) {
  server_.metrics().carrier_refusals_total.inc(reason);
  server_.log().info("carrier_refused", tags(),
                     {{"reason", metric_label(reason)}, {"source", source()}, {"detail", detail}});
  close_now();
}

// Admission for a connection from a trusted proxy, once its client is known; others were
// admitted at accept.
bool Front::admit() {
  if (admitted_) return true;
  admitted_ = server_.admit(client_);
  return admitted_.has_value();
}

// Waits until bytes are there and copies them without taking them off the socket. 0: EOF
// before any byte; -1: an error or the deadline.
asio::awaitable<int> Front::peek(std::span<std::uint8_t> into) {
  // The first look is without waiting: bytes that came with the connection, before its
  // socket joined the (edge-triggered) reactor, would not wake a wait.
  for (bool first = true;; first = false) {
    if (!first) {
      auto [ec] = co_await socket_.async_wait(tcp::socket::wait_read, await_tuple);
      if (ec) {
        server_.log().debug("peek_failed", tags(), {{"error", std::error_code(ec)}});
        co_return -1;
      }
    }
    const auto n =
        ::recv(socket_.native_handle(), into.data(), into.size(), MSG_PEEK | MSG_DONTWAIT);
    if (n >= 0) co_return static_cast<int>(n);
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      server_.log().debug("peek_failed", tags(), {{"errno", errno}});
      co_return -1;
    }
  }
}

asio::awaitable<void> Front::run() {
  auto self = shared_from_this();
  arm_watchdog();
  std::array<std::uint8_t, first_bytes> first{};
  const int n = co_await peek(first);
  if (n <= 0) {
    if (expired_) {
      // Silent to the end: the handshake deadline, counted as a Session would count it.
      server_.metrics().handshakes_total.inc(HandshakeOutcome::timeout);
      server_.log().debug("handshake_failed", tags(),
                          {{"stage", "deadline"}, {"step", "first_bytes"}});
    } else {
      // Connected and left without a byte: a load balancer's TCP check, not a failed handshake.
      server_.metrics().health_checks_total.inc();
    }
    close_now();
    co_return;
  }
  const auto kind = classify_first_bytes(std::span(first).first(static_cast<std::size_t>(n)));
  if (kind == FirstBytes::need_more || kind == FirstBytes::proxy) {
    const auto prefix = co_await read_prefix();
    if (prefix == Prefix::done) co_return;
    if (prefix == Prefix::not_proxy) {
      // Bytes such as "POST" that began like a PROXY header: an HTTP request, or garbage.
      if (consumed_.empty() || consumed_[0] < 'A' || consumed_[0] > 'Z') {
        refuse(CarrierRefusal::bad_request, "neither strelay, HTTP nor a PROXY header");
        co_return;
      }
      co_await serve_http();
      co_return;
    }
    // A PROXY header was consumed: look at what follows it.
    const int m = co_await peek(first);
    if (m <= 0) {
      if (!expired_)
        server_.metrics().health_checks_total.inc();  // a balancer's check with a header
      close_now();
      co_return;
    }
    co_await after_first_bytes(std::span(first).first(1));
    co_return;
  }
  co_await after_first_bytes(std::span(first).first(static_cast<std::size_t>(n)));
}

asio::awaitable<void> Front::after_first_bytes(std::span<const std::uint8_t> first) {
  if (first[0] >= 'A' && first[0] <= 'Z') {
    co_await serve_http();
    co_return;
  }
  if (websocket_only_) {
    refuse(CarrierRefusal::bad_request, "a WebSocket-only address");
    co_return;
  }
  if (!admit()) {
    close_now();  // counted and logged by admission, as at accept
    co_return;
  }
  to_session(std::move(socket_), Carrier::tcp);
}

// The start of the stream when it may be a PROXY header: consumes exactly the header (or
// the proper prefix of one seen so far), never a byte after it.
asio::awaitable<Front::Prefix> Front::read_prefix() {
  std::vector<std::uint8_t> candidate;
  std::array<std::uint8_t, proxy_header_max_bytes> peeked{};
  for (;;) {
    const std::size_t room =
        proxy_header_max_bytes - std::min(consumed_.size(), proxy_header_max_bytes);
    const int n = room == 0 ? 0 : co_await peek(std::span(peeked).first(room));
    if (n <= 0) {
      if (expired_) {
        refuse(CarrierRefusal::deadline);
      } else {
        refuse(CarrierRefusal::bad_proxy_header, "the stream ended inside a PROXY header");
      }
      co_return Prefix::done;
    }
    candidate = consumed_;
    candidate.insert(candidate.end(), peeked.begin(), peeked.begin() + n);
    if (!trusted_ && classify_first_bytes(candidate) == FirstBytes::proxy) {
      refuse(CarrierRefusal::untrusted_proxy_header, "a PROXY header from an address not trusted");
      co_return Prefix::done;
    }
    const auto header = parse_proxy_header(candidate);
    if (header.status == ProxyStatus::not_proxy) co_return Prefix::not_proxy;
    if (header.status == ProxyStatus::invalid) {
      refuse(CarrierRefusal::bad_proxy_header, header.error);
      co_return Prefix::done;
    }
    const std::size_t take = header.status == ProxyStatus::complete
                                 ? header.length - consumed_.size()
                                 : static_cast<std::size_t>(n);
    std::vector<std::uint8_t> taken(take);
    auto [ec, got] = co_await asio::async_read(socket_, asio::buffer(taken), await_tuple);
    if (ec) {
      refuse(expired_ ? CarrierRefusal::deadline : CarrierRefusal::bad_proxy_header);
      co_return Prefix::done;
    }
    if (header.status == ProxyStatus::complete) {
      consumed_.clear();
      proxied_ = header.source.has_value();
      if (header.source) client_ = *header.source;
      if (!admit()) {
        close_now();
        co_return Prefix::done;
      }
      co_return Prefix::proxied;
    }
    consumed_.insert(consumed_.end(), taken.begin(), taken.end());
  }
}

void Front::to_session(tcp::socket socket, Carrier carrier) {
  handed_off_ = true;
  watchdog_.cancel();
  pending_.release();  // the Session holds its own from here
  server_.metrics().carrier_sessions_total.inc(carrier);
  const tcp::endpoint client(client_, client_ == peer_ ? peer_port_ : 0);
  const ConnId id = server_.start_session(
      std::move(socket), client,
      ConnectionHold{std::move(*admitted_), std::move(connection_), deadline_});
  if (!server_.log().enabled(LogLevel::info)) return;  // source() is a string built per join
  server_.log().info(
      "connection_open", LogTags{id, std::nullopt},
      {{"carrier", metric_label(carrier)}, {"source", source()}, {"via_proxy", trusted_}});
}

asio::awaitable<void> Front::write_plain(http::status status, unsigned version, std::string body,
                                         std::string_view allow) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::server, "strelay");
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  if (!allow.empty()) res.set(http::field::allow, allow);
  if (status == http::status::upgrade_required) {
    res.set(http::field::upgrade, "websocket");
    res.set(http::field::connection, "Upgrade, close");
  }
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  auto [ec, n] = co_await http::async_write(socket_, res, await_tuple);
  if (ec) co_return;
  // A close with unread bytes would be a reset that destroys the answer on its way: say we
  // are done, and read (discarding, bounded by the deadline) until the client closes too.
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  std::array<std::uint8_t, 4096> sink{};
  for (std::size_t drained = 0; drained < 64 * 1024;) {
    auto [rec, got] = co_await socket_.async_read_some(asio::buffer(sink), await_tuple);
    if (rec) break;
    drained += got;
  }
}

asio::awaitable<void> Front::serve_http() {
  const auto& carrier = settings_->carrier;
  // Bytes taken off the socket while looking for a PROXY header ("POST" starts like "PROXY")
  // are the request's first bytes; usually there are none (the first bytes were only peeked).
  std::string pending(consumed_.begin(), consumed_.end());
  consumed_.clear();
  for (std::size_t served = 0; served < http_max_requests_per_connection; ++served) {
    // The request, blank line included, is at most max_request_bytes: read up to its blank
    // line into a buffer that holds no more (asio's not_found when it is full without one).
    // Beast's header_limit cannot say this byte for byte: it bounds the start line and the
    // fields each on their own, so a request some bytes over the bound passed.
    auto [ec, header_bytes] = co_await asio::async_read_until(
        socket_, asio::dynamic_buffer(pending, carrier.max_request_bytes), "\r\n\r\n", await_tuple);
    if (ec == asio::error::not_found) ec = http::error::header_limit;
    if (ec == asio::error::eof && pending.empty()) ec = http::error::end_of_stream;
    http::request_parser<http::empty_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(carrier.max_request_bytes));
    parser.body_limit(0);
    if (!ec) {
      const auto used = parser.put(asio::buffer(pending.data(), header_bytes), ec);
      pending.erase(0, used);
      // A request with a body (a chunked one) is not served here.
      if (!ec && !parser.is_done()) ec = http::error::body_limit;
    }
    if (ec) {
      if (expired_) {
        refuse(CarrierRefusal::deadline);
      } else if (ec == http::error::end_of_stream && served > 0) {
        close_now();  // a keep-alive connection the browser closed
      } else if (ec == http::error::header_limit) {
        co_await write_plain(http::status::request_header_fields_too_large, 11,
                             "request header too large\n");
        refuse(CarrierRefusal::header_too_large);
      } else {
        if (ec != http::error::end_of_stream && ec != asio::error::eof &&
            ec != asio::error::connection_reset) {
          co_await write_plain(http::status::bad_request, 11, "bad request\n");
        }
        refuse(CarrierRefusal::bad_request, ec.message());
      }
      co_return;
    }
    auto req = parser.release();
    std::string_view target = req.target();
    if (target.substr(0, target.find('?')) == carrier.websocket_path) {
      co_await upgrade(std::move(req), pending);
      co_return;
    }
    if (!co_await answer_web(req)) co_return;
    // Served; another request may follow on the same connection (a page and its assets). The
    // deadline runs from each request's start.
    deadline_ = server_.clock().now() + settings_->handshake_timeout;
    arm_watchdog();
  }
  close_now();
}

// A request at any other path: a static file, or a short plain answer. False: close.
asio::awaitable<bool> Front::answer_web(const Request& req) {
  const auto& carrier = settings_->carrier;
  auto& metrics = server_.metrics();
  if (req.method() != http::verb::get && req.method() != http::verb::head) {
    metrics.web_requests_total.inc(WebOutcome::method);
    co_await write_plain(http::status::method_not_allowed, req.version(), "method not allowed\n",
                         "GET, HEAD");
    close_now();
    co_return false;
  }
  if (carrier.web_root.empty()) {
    metrics.web_requests_total.inc(WebOutcome::plain);
    co_await write_plain(http::status::not_found, req.version(),
                         std::string(plain_answer) + carrier.websocket_path + ".\n");
    close_now();
    co_return false;
  }
  const auto file = find_web_file(carrier.web_root, req.target(), web_root_max_file_bytes);
  if (file.status != WebLookup::found) {
    const bool bad = file.status == WebLookup::bad_path;
    metrics.web_requests_total.inc(bad ? WebOutcome::bad_path : WebOutcome::not_found);
    co_await write_plain(bad ? http::status::forbidden : http::status::not_found, req.version(),
                         file.status == WebLookup::too_large ? "file too large to serve\n"
                         : bad                               ? "forbidden\n"
                                                             : "not found\n");
    close_now();
    co_return false;
  }
  http::response<http::file_body> res{http::status::ok, req.version()};
  beast::error_code ec;
  res.body().open(file.path.c_str(), beast::file_mode::scan, ec);
  if (ec) {
    metrics.web_requests_total.inc(WebOutcome::not_found);
    co_await write_plain(http::status::not_found, req.version(), "not found\n");
    close_now();
    co_return false;
  }
  metrics.web_requests_total.inc(WebOutcome::file);
  res.set(http::field::server, "strelay");
  res.set(http::field::content_type, file.content_type);
  res.set(http::field::cache_control, "no-cache");
  res.set("X-Content-Type-Options", "nosniff");
  res.keep_alive(req.keep_alive());
  res.prepare_payload();
  if (req.method() == http::verb::head) {
    http::response<http::empty_body> head{http::status::ok, req.version()};
    head.base() = res.base();
    head.content_length(file.size);
    auto [wec, n] = co_await http::async_write(socket_, head, await_tuple);
    if (wec || !req.keep_alive()) close_now();
    co_return !wec && req.keep_alive();
  }
  auto [wec, n] = co_await http::async_write(socket_, res, await_tuple);
  if (wec || !req.keep_alive()) close_now();
  co_return !wec && req.keep_alive();
}

// A request at the WebSocket path: the checks, the upgrade, then the bridge and a Session.
asio::awaitable<void> Front::upgrade(Request req, std::string_view after_request) {
  const auto& carrier = settings_->carrier;
  if (!websocket::is_upgrade(req)) {
    co_await write_plain(
        http::status::upgrade_required, req.version(),
        "this is the relay's WebSocket endpoint: connect with a WebSocket client\n");
    refuse(CarrierRefusal::not_websocket);
    co_return;
  }
  // Who sent this request: the PROXY header's client, or the TCP peer. Only a trusted sender
  // may say who the client is; from anyone else such a header is a lie or a mistake.
  const auto sender = client_;
  const std::string_view forwarded = req[http::field::forwarded];
  const std::string_view xff = req["X-Forwarded-For"];
  if (!forwarded.empty() || !xff.empty()) {
    if (!carrier.trusted_proxies.contains(sender)) {
      co_await write_plain(
          http::status::forbidden, req.version(),
          "X-Forwarded-For and Forwarded are accepted only from a trusted proxy\n");
      refuse(CarrierRefusal::untrusted_forwarded);
      co_return;
    }
    const auto named = forwarded_client(forwarded, xff, carrier.trusted_proxies);
    if (named.malformed) {
      co_await write_plain(http::status::bad_request, req.version(),
                           "malformed forwarding header\n");
      refuse(CarrierRefusal::bad_forwarded);
      co_return;
    }
    if (named.address) client_ = *named.address;
  }
  if (!origin_allowed(req[http::field::origin], carrier.allowed_origins)) {
    co_await write_plain(http::status::forbidden, req.version(), "origin not allowed\n");
    refuse(CarrierRefusal::bad_origin, std::string(req[http::field::origin].substr(0, 100)));
    co_return;
  }
  if (!after_request.empty()) {
    // Bytes after the request, before the answer: they would be lost in the upgrade.
    co_await write_plain(http::status::bad_request, req.version(),
                         "data before the upgrade was answered\n");
    refuse(CarrierRefusal::bad_request, "data before the upgrade");
    co_return;
  }
  if (!admit()) {
    co_await write_plain(http::status::service_unavailable, req.version(), "busy\n");
    refuse(CarrierRefusal::busy);
    co_return;
  }
  ws_.emplace(std::move(socket_));
  ws_->set_option(websocket::stream_base::decorator(
      [](websocket::response_type& res) { res.set(http::field::server, "strelay"); }));
  ws_->read_message_max(carrier.max_message_bytes);
  auto [ec] = co_await ws_->async_accept(req, await_tuple);
  if (ec) {
    refuse(expired_ ? CarrierRefusal::deadline : CarrierRefusal::bad_upgrade, ec.message());
    co_return;
  }
  handed_off_ = true;
  watchdog_.cancel();
  WebSocketBridge::Options options;
  options.buffer_bytes = carrier.bridge_buffer_bytes;
  options.max_message_bytes = carrier.max_message_bytes;
  options.write_stall = settings_->write_stall;
  std::shared_ptr<WebSocketBridge> bridge;
  tcp::socket end(socket_.get_executor());
  try {
    std::tie(bridge, end) =
        WebSocketBridge::make(std::move(*ws_), server_.clock(), options, &server_.metrics());
  } catch (const std::system_error& e) {
    server_.log().warn("websocket_failed", tags(), {{"error", e.code()}});
    co_return;  // out of descriptors: the WebSocket closes with this frame
  }
  ws_.reset();
  Server& server = server_;
  bridge->start([&server](WebSocketBridge::End end) {
    if (end != WebSocketBridge::End::normal && end != WebSocketBridge::End::aborted) {
      server.metrics().carrier_refusals_total.inc(bridge_refusal(end));
      server.log().info("websocket_closed", {}, {{"reason", to_string(end)}});
    }
  });
  to_session(std::move(end), Carrier::websocket);
}

}  // namespace

void start_front(Server& server, FrontEntry entry) {
  auto front = std::make_shared<Front>(server, std::move(entry));
  auto executor = front->executor();
  // The lambda owns the front until its coroutine ends: the coroutine starts later, on the
  // socket's worker, after this function has returned.
  auto body = [front]() -> asio::awaitable<void> {
    co_await front->run();
    front->finish();
  };
  asio::co_spawn(executor, std::move(body), [&server](std::exception_ptr error) {
    if (!error) return;
    // A bug, not a client's doing: log it and let the other connections go on.
    try {
      std::rethrow_exception(error);
    } catch (const std::exception& e) {
      server.log().error("front_failed", {}, {{"what", e.what()}});
    }
  });
}

}  // namespace strelay
