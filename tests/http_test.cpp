// Tests for strelay/http and strelay/status_page: a real server on 127.0.0.1:0, driven by plain
// blocking sockets with receive timeouts, so every wait is bounded.
#include "strelay/http.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <future>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "strelay/status_page.hpp"

using namespace strelay;
using namespace std::chrono_literals;
using boost::asio::ip::tcp;

namespace {

StatusInfo test_info() {
  StatusInfo info;
  info.version = "0.1.0";
  info.public_key = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg";
  // A hostile-looking ticket: the page must show it as text, never as markup.
  info.ticket_json =
      R"({"publicKey":"A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg","address":"<script>alert(1)</script>:1"})";
  info.qr_svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"qr-test\"></svg>";
  info.listen_addresses = {"127.0.0.1:4567"};
  info.start_time = std::chrono::system_clock::now();
  info.limits = {{"handshake_timeout_seconds", 10}};
  return info;
}

// A server on 127.0.0.1:0 with one io thread; run_for bounds the thread's life.
struct Server {
  boost::asio::io_context ioc;
  Metrics metrics;
  std::vector<std::string> log_lines;
  std::mutex log_mutex;
  Logger logger{Logger::Options{.sink = [this](std::string_view l) {
    std::lock_guard lock(log_mutex);
    log_lines.emplace_back(l);
  }}};
  std::unique_ptr<HttpServer> http;
  std::thread thread;

  explicit Server(HttpLimits limits = {}) {
    http = std::make_unique<HttpServer>(
        ioc.get_executor(), tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0), metrics,
        test_info(), logger, limits);
    http->start();
    thread = std::thread([this] { ioc.run_for(60s); });
  }
  ~Server() {
    http->stop();
    thread.join();
  }
  std::uint16_t port() const { return http->local_endpoint().port(); }
};

// A blocking client socket whose reads give up after two seconds.
class Client {
 public:
  // From `source` (any 127.0.0.0/8 address): per-source limits apply to it.
  explicit Client(std::uint16_t port, const char* source = "127.0.0.1") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    timeval tv{2, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    REQUIRE(::inet_pton(AF_INET, source, &from.sin_addr) == 1);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }
  void send(std::string_view data) {
    while (!data.empty()) {
      const auto n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return;  // the server may close early (e.g. after a 431); the reply tells
      data.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  // Everything until EOF, a reset, or the two-second timeout.
  std::string read_all() {
    std::string out;
    char buf[4096];
    for (int i = 0; i < 10'000; ++i) {
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
  }
  // True when the server closed the connection (EOF or reset) within the timeout.
  bool closed_by_peer() {
    char c;
    const auto n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

struct Reply {
  int status = 0;
  std::string head;
  std::string body;
  std::string header(const std::string& name) const {
    const std::regex re("\r\n" + name + ": ([^\r]*)\r\n", std::regex::icase);
    std::smatch m;
    return std::regex_search(head, m, re) ? std::string(m[1]) : std::string();
  }
};

Reply parse_reply(const std::string& raw) {
  Reply r;
  const auto end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.rfind("HTTP/1.1 ", 0) != 0) return r;
  r.status = std::stoi(raw.substr(9, 3));
  r.head = raw.substr(0, end + 2);
  r.body = raw.substr(end + 4);
  return r;
}

Reply request(std::uint16_t port, const std::string& method, const std::string& target,
              const std::string& extra_headers = {}, const char* source = "127.0.0.1") {
  Client c(port, source);
  REQUIRE(c.connected());
  c.send(method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
         extra_headers + "\r\n");
  return parse_reply(c.read_all());
}

std::string get_request_of_size(std::size_t header_bytes) {
  std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: ";
  const std::size_t fixed = head.size() + 4;  // "\r\n\r\n" after the pad value
  REQUIRE(header_bytes > fixed);
  return head + std::string(header_bytes - fixed, 'p') + "\r\n\r\n";
}

}  // namespace

TEST_CASE("healthz, metrics, status, samples and the page answer with the right types") {
  Server server;
  server.metrics.connections.set(7);
  server.metrics.handshakes_total.inc(HandshakeOutcome::ok, 3);

  const auto health = request(server.port(), "GET", "/healthz");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");

  const auto metrics = request(server.port(), "GET", "/metrics");
  CHECK(metrics.status == 200);
  CHECK(metrics.header("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
  CHECK(metrics.body.find("\nstrelay_connections 7\n") != std::string::npos);
  CHECK(metrics.body.find("strelay_handshakes_total{outcome=\"ok\"} 3") != std::string::npos);

  const auto status = request(server.port(), "GET", "/status?pretty=1");
  CHECK(status.status == 200);
  CHECK(status.header("Content-Type") == "application/json");
  const auto j = nlohmann::json::parse(status.body);
  CHECK(j["public_key"] == "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg");
  CHECK(j["gauges"]["connections"] == 7);

  const auto samples = request(server.port(), "GET", "/samples");
  CHECK(samples.status == 200);
  const auto s = nlohmann::json::parse(samples.body);
  CHECK(s["samples"].size() >= 1);  // one is taken at start

  const auto page = request(server.port(), "GET", "/");
  CHECK(page.status == 200);
  CHECK(page.header("Content-Type") == "text/html; charset=utf-8");
  CHECK(page.body.rfind("<!doctype html>", 0) == 0);
  CHECK(page.body.find("A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg") != std::string::npos);
  CHECK(page.body.find("id=\"qr-test\"") != std::string::npos);
  // Escaped, not executed; and no external assets.
  CHECK(page.body.find("<script>alert(1)") == std::string::npos);
  CHECK(page.body.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(page.body.find("src=\"http") == std::string::npos);
  CHECK(page.body.find("href=\"http") == std::string::npos);
  // The script's nonce is the one the CSP allows.
  const auto csp = page.header("Content-Security-Policy");
  std::smatch m;
  REQUIRE(std::regex_search(csp, m, std::regex("'nonce-([A-Za-z0-9_-]+)'")));
  CHECK(page.body.find("<script nonce=\"" + std::string(m[1]) + "\">") != std::string::npos);
  CHECK(csp.find("default-src 'none'") != std::string::npos);
  CHECK(page.body.find("<noscript><meta http-equiv=\"refresh\"") != std::string::npos);
}

TEST_CASE("unknown paths get 404, other methods 405, and HEAD gets headers only") {
  Server server;
  CHECK(request(server.port(), "GET", "/nope").status == 404);
  CHECK(request(server.port(), "GET", "/metrics/../etc/passwd").status == 404);
  const auto post = request(server.port(), "POST", "/metrics", "Content-Length: 0\r\n");
  CHECK(post.status == 405);
  CHECK(post.header("Allow") == "GET, HEAD");
  const auto head = request(server.port(), "HEAD", "/healthz");
  CHECK(head.status == 200);
  CHECK(head.header("Content-Length") == "3");
  CHECK(head.body.empty());
}

TEST_CASE("a connection serves several requests with keep-alive") {
  Server server;
  Client c(server.port());
  REQUIRE(c.connected());
  c.send(
      "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: "
      "close\r\n\r\n");
  const auto raw = c.read_all();
  std::size_t count = 0;
  for (auto pos = raw.find("HTTP/1.1 200 OK"); pos != std::string::npos;
       pos = raw.find("HTTP/1.1 200 OK", pos + 1)) {
    ++count;
  }
  CHECK(count == 2);
}

TEST_CASE("request headers are limited: at the limit served, one byte over refused with 431") {
  Server server;
  {
    Client c(server.port());
    c.send(get_request_of_size(http_max_header_bytes));
    CHECK(parse_reply(c.read_all()).status == 200);
  }
  {
    Client c(server.port());
    c.send(get_request_of_size(http_max_header_bytes + 1));
    CHECK(parse_reply(c.read_all()).status == 431);
  }
}

TEST_CASE("request bodies are limited: at the limit read, one byte over refused with 413") {
  Server server;
  const auto with_body = [](std::size_t n) {
    return "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
           std::to_string(n) + "\r\n\r\n" + std::string(n, 'b');
  };
  {
    Client c(server.port());
    c.send(with_body(http_max_body_bytes));
    CHECK(parse_reply(c.read_all()).status == 200);
  }
  {
    Client c(server.port());
    c.send(with_body(http_max_body_bytes + 1));
    CHECK(parse_reply(c.read_all()).status == 413);
  }
}

TEST_CASE("garbage gets 400 and the connection is closed") {
  Server server;
  Client c(server.port());
  c.send("HELLO\x01 there\r\n\r\n");
  CHECK(parse_reply(c.read_all()).status == 400);
}

TEST_CASE("a client that sends nothing, or half a request, is cut off at the deadline") {
  Server server(HttpLimits{.request_deadline = 300ms});
  Client idle(server.port());
  Client slow(server.port());
  slow.send("GET /healthz HTTP/1.1\r\nHost: x\r\n");  // and never the blank line
  CHECK(idle.closed_by_peer());                       // well before the client's own 2 s timeout
  CHECK(slow.closed_by_peer());
  CHECK(request(server.port(), "GET", "/healthz").status == 200);  // still serving
}

TEST_CASE("at the connection cap the next client gets a clean 503, and a freed slot is reused") {
  Server server(HttpLimits{.max_per_source = 1000});
  std::vector<std::unique_ptr<Client>> idle;
  for (std::size_t i = 0; i < http_max_connections; ++i) {
    idle.push_back(std::make_unique<Client>(server.port()));
    REQUIRE(idle.back()->connected());
  }
  // The accept loop takes connections in order, so the first 64 hold every slot (all from one
  // source: nobody lighter to make room for).
  const auto refused = request(server.port(), "GET", "/metrics");
  CHECK(refused.status == 503);
  CHECK(refused.body == "busy\n");
  CHECK(refused.header("Connection") == "close");

  idle.pop_back();  // free one slot; the server notices the EOF and lets the next one in
  int status = 0;
  for (int attempt = 0; attempt < 100 && status != 200; ++attempt) {
    status = request(server.port(), "GET", "/healthz").status;
    if (status != 200) std::this_thread::sleep_for(20ms);
  }
  CHECK(status == 200);
}

TEST_CASE("a smaller connection cap is honoured at max and max+1") {
  Server server(HttpLimits{.max_connections = 2});
  Client a(server.port());
  Client b(server.port());
  REQUIRE(a.connected());
  REQUIRE(b.connected());
  CHECK(request(server.port(), "GET", "/metrics").status == 503);
}

// ---------------------------------------------------------------- issue 14.4

TEST_CASE(
    "per-source cap: 8 idle connections from one address are held, the 9th gets 503 and is "
    "counted, and scrapes from elsewhere are served") {
  Server server;  // the defaults: 64 in all, 8 per source
  std::vector<std::unique_ptr<Client>> idle;
  for (std::size_t i = 0; i < http_max_per_source; ++i) {
    idle.push_back(std::make_unique<Client>(server.port(), "127.0.4.1"));
    REQUIRE(idle.back()->connected());
  }
  std::this_thread::sleep_for(100ms);                                               // all accepted
  CHECK(request(server.port(), "GET", "/metrics", {}, "127.0.4.1").status == 503);  // max + 1
  CHECK(server.metrics.limit_hits_total.get(LimitReason::http_per_source) == 1);
  // The review's case: 25 scrapes from elsewhere, all served while the attacker holds its share.
  for (int i = 0; i < 25; ++i)
    CHECK(request(server.port(), "GET", "/metrics", {}, "127.0.4.2").status == 200);
}

TEST_CASE(
    "a full endpoint closes the heaviest source's idle connection for a newcomer from a lighter "
    "source") {
  Server server;
  std::vector<std::unique_ptr<Client>> idle;
  // 8 sources x 8 idle connections fill all 64 slots.
  for (int s = 0; s < 8; ++s) {
    const auto source = "127.0.5." + std::to_string(s + 1);
    for (std::size_t i = 0; i < http_max_per_source; ++i) {
      idle.push_back(std::make_unique<Client>(server.port(), source.c_str()));
      REQUIRE(idle.back()->connected());
    }
  }
  std::this_thread::sleep_for(100ms);
  const auto served = request(server.port(), "GET", "/metrics", {}, "127.0.5.100");
  CHECK(served.status == 200);
  CHECK(server.metrics.limit_hits_total.get(LimitReason::http_idle_closed) == 1);
  // The one closed was an idle connection of a source holding 8: the very first one.
  CHECK(idle.front()->closed_by_peer());
}

TEST_CASE("/healthz is answered 200 even when the connection is refused for the cap") {
  Server server(HttpLimits{.max_connections = 2, .max_per_source = 1000});
  Client a(server.port());
  Client b(server.port());
  REQUIRE(a.connected());
  REQUIRE(b.connected());
  std::this_thread::sleep_for(100ms);
  const auto healthz = request(server.port(), "GET", "/healthz");
  CHECK(healthz.status == 200);
  CHECK(healthz.body == "ok\n");
  CHECK(request(server.port(), "GET", "/metrics").status == 503);
}

TEST_CASE("binding an address in use fails with one line naming the address") {
  Server server;
  boost::asio::io_context ioc;
  Metrics metrics;
  const tcp::endpoint taken(boost::asio::ip::make_address("127.0.0.1"), server.port());
  try {
    HttpServer second(ioc.get_executor(), taken, metrics, test_info());
    FAIL("the second bind succeeded");
  } catch (const std::system_error& e) {
    const std::string what = e.what();
    CHECK(what.find("cannot listen for HTTP on 127.0.0.1:" + std::to_string(server.port())) == 0);
    CHECK(what.find('\n') == std::string::npos);
    CHECK(e.code() == std::errc::address_in_use);
  }
}

TEST_CASE("stop closes the listener and open connections, and the io thread finishes") {
  auto server = std::make_unique<Server>();
  const auto port = server->port();
  Client idle(port);
  REQUIRE(idle.connected());
  CHECK(request(port, "GET", "/healthz").status == 200);
  server->http->stop();
  CHECK(idle.closed_by_peer());
  // With the acceptor, the timer and every session gone, run() returns on its own.
  auto done = std::async(std::launch::async, [&] { server->thread.join(); });
  CHECK(done.wait_for(5s) == std::future_status::ready);
  done.wait();
  server->thread = std::thread([] {});  // ~Server joins again
  CHECK_FALSE(Client(port).connected());
}

TEST_CASE("new status info shows on /status") {
  Server server;
  auto info = test_info();
  info.limits = {{"handshake_timeout_seconds", 3}};
  server.http->set_status_info(info);
  const auto j = nlohmann::json::parse(request(server.port(), "GET", "/status").body);
  CHECK(j["limits"]["handshake_timeout_seconds"] == 3);
}

TEST_CASE("the status page escapes and formats") {
  CHECK(html_escape("<a href=\"x\">&'") == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(1536) == "1.5 KiB");
  CHECK(format_bytes(3.0 * 1024 * 1024 * 1024) == "3.0 GiB");
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(125) == "2m 5s");
  CHECK(format_duration(3 * 3600 + 60) == "3h 1m");
  CHECK(format_duration(93784) == "1d 2h 3m");
}

TEST_CASE("the page renders server-side numbers and the chart without JavaScript") {
  Metrics m;
  m.tunnels.set(4);
  m.limit_hits_total.inc(LimitReason::connect_rate, 12);
  const auto info = test_info();
  std::vector<MetricsSample> samples;
  for (std::int64_t i = 0; i < 3; ++i) {
    MetricsSample s;
    s.unix_ms = 1'000'000 + i * 5000;
    s.relayed_bytes_total = static_cast<std::uint64_t>(i) * 5 * 1024 * 1024;
    s.connections = i + 1;
    samples.push_back(s);
  }
  const StatusView view{m, info, ProcessStats{5, 1024, 1 << 20}, compute_rates(samples),
                        info.start_time};
  const auto page = render_status_page(view, samples, "NONCE");
  CHECK(page.find("data-k=\"gauges.tunnels\" data-f=\"n\">4<") != std::string::npos);
  CHECK(page.find("data-k=\"counters.limit_hits_total.connect_rate\" data-f=\"n\">12<") !=
        std::string::npos);
  CHECK(page.find("1.0 MiB/s") != std::string::npos);  // 5 MiB per 5 s
  std::smatch match;
  REQUIRE(std::regex_search(page, match, std::regex("id=\"l2\" class=\"l2\" points=\"([^\"]*)\"")));
  CHECK(std::count(match[1].first, match[1].second, ',') ==
        4);  // one point per sample, and one for now
  CHECK(page.find("<script nonce=\"NONCE\">") != std::string::npos);
}

TEST_CASE("the QR code is inlined as SVG markup without its XML declaration") {
  Metrics m;
  auto info = test_info();
  info.qr_svg =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
      "id=\"qr-test\"></svg>\n";
  const StatusView view{m, info, ProcessStats{}, Rates{}, info.start_time};
  const auto page = render_status_page(view, {}, "NONCE");
  CHECK(page.find("<div class=\"qr\"><svg xmlns=\"http://www.w3.org/2000/svg\" id=\"qr-test\">") !=
        std::string::npos);
  CHECK(page.find("<?xml") == std::string::npos);
  SUBCASE("no ticket, no QR code") {
    info.ticket_json.clear();
    const StatusView bare{m, info, ProcessStats{}, Rates{}, info.start_time};
    const auto plain = render_status_page(bare, {}, "NONCE");
    CHECK(plain.find("class=\"qr\"") == std::string::npos);
    CHECK(plain.find("--public-address") != std::string::npos);
  }
}

TEST_CASE("the ticket downloads as relay.relay, and is 404 without --public-address") {
  Server server;
  const auto info = test_info();
  const auto got = request(server.port(), "GET", "/relay.relay");
  CHECK(got.status == 200);
  CHECK(got.header("Content-Disposition") == "attachment; filename=\"relay.relay\"");
  CHECK(got.body == info.ticket_json + "\n");
  auto bare = info;
  bare.ticket_json.clear();
  server.http->set_status_info(bare);
  const auto missing = request(server.port(), "GET", "/relay.relay");
  CHECK(missing.status == 404);
  CHECK(missing.body.find("--public-address") != std::string::npos);
}

TEST_CASE("the page links the ticket file, shows limits as numbers and the chart's axis values") {
  Metrics m;
  auto info = test_info();
  info.limits = {{"min_handshake_timeout_seconds", 0.5}, {"tunnel_socket_buffers", 0, "clamp"}};
  std::vector<MetricsSample> samples;
  for (std::int64_t i = 0; i < 3; ++i) {
    MetricsSample s;
    s.unix_ms = 1'000'000 + i * 5000;
    s.relayed_bytes_total = static_cast<std::uint64_t>(i) * 10 * 1024 * 1024;  // 2 MiB/s
    s.connections = 8;
    samples.push_back(s);
  }
  const StatusView view{m, info, ProcessStats{}, compute_rates(samples), info.start_time};
  const auto page = render_status_page(view, samples, "NONCE");
  CHECK(page.find("<a href=\"/relay.relay\" download=\"relay.relay\">") != std::string::npos);
  CHECK(page.find("<td>min_handshake_timeout_seconds</td><td class=\"n\">0.5</td>") !=
        std::string::npos);
  CHECK(page.find("<td>tunnel_socket_buffers</td><td class=\"n\">clamp</td>") != std::string::npos);
  // The scale's top and middle, both axes, and the time axis.
  CHECK(page.find("id=\"a1t\">2.0 MiB/s</text>") != std::string::npos);
  CHECK(page.find("id=\"a1m\">1.0 MiB/s</text>") != std::string::npos);
  CHECK(page.find("id=\"a2t\">8</text>") != std::string::npos);
  CHECK(page.find("id=\"a2m\">4</text>") != std::string::npos);
  CHECK(page.find(">-10 min</text>") != std::string::npos);
  CHECK(page.find(">-5 min</text>") != std::string::npos);
  CHECK(page.find(">now</text>") != std::string::npos);
}
