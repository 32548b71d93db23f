// The HTTP endpoint on --metrics-addr (Boost.Beast, C++20 coroutines), separate from the relay
// port:
//
//   GET /         the HTML status page (strelay/status_page)
//   GET /metrics  Prometheus text, version 0.0.4
//   GET /status   JSON: version, key, ticket, uptime, addresses, gauges, counters, rates, limits
//   GET /samples  JSON: the last 10 minutes of samples, for the page's live chart
//   GET /healthz  200 "ok\n"
//   GET /relay.relay  the relay ticket as a download (404 without --public-address)
//   HEAD on each; 404 for other paths; 405 for other methods.
//
// Hardened for an address that may be reachable by strangers: request headers at most
// http_max_header_bytes (431 beyond), bodies at most http_max_body_bytes (413), each request
// must arrive within http_request_deadline (the same deadline bounds an idle keep-alive wait
// and each response write), at most http_max_connections at once, at most
// http_max_requests_per_connection per connection.
// Fair under attack (issue 14): one source address (IPv4 /32, IPv6 /64) holds at most
// max_per_source connections (the next gets a 503); when all slots are taken, a newcomer from
// a source holding fewer than the heaviest closes the heaviest source's oldest connection that
// is waiting for its client (idle keep-alive, or a request not yet complete); otherwise it
// gets a 503 and is closed. A refused connection whose request has already arrived and asks for
// /healthz gets its 200 instead, so a monitor does not see the relay down because scrapers
// (or an attacker) hold the slots. Nothing here blocks the
// relay: the server runs on its own strand of the executor it is given, and reads only atomics.
//
// Ownership: HttpServer owns its acceptor, its sampling timer, its sessions and the SampleRing,
// all inside a shared state that its coroutines keep alive until they finish; every one of them
// runs on the server's strand. `metrics` and `logger` must outlive the io_context's run (the
// daemon owns them), and the HttpServer must be destroyed before its io_context.
// set_status_info() and stop() may be called from any thread.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <memory>

#include "common/log.hpp"
#include "strelay/metrics.hpp"

namespace strelay {

// The knobs tests turn down; the daemon keeps the defaults from protocol.hpp.
struct HttpLimits {
  std::chrono::milliseconds request_deadline = http_request_deadline;
  std::size_t max_connections = http_max_connections;
  std::size_t max_per_source = http_max_per_source;
};

class HttpServer {
 public:
  // Opens, binds and listens at once. Throws std::system_error whose what() is one line naming
  // the address ("cannot listen for HTTP on 127.0.0.1:9090: Address already in use").
  // Port 0 binds a free port; local_endpoint() tells which.
  HttpServer(boost::asio::any_io_executor executor, const boost::asio::ip::tcp::endpoint& endpoint,
             Metrics& metrics, StatusInfo info, Logger& logger = process_logger(),
             HttpLimits limits = {});
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Starts the accept loop and the sampling timer (one sample now, then every
  // status_sample_interval). Call once.
  void start();
  // Closes the acceptor, every open HTTP connection and the timer. Idempotent, any thread;
  // the work happens on the server's strand, so the io_context must still run for it.
  void stop();

  boost::asio::ip::tcp::endpoint local_endpoint() const { return local_endpoint_; }
  // Replaces what /status and / show (e.g. new limits after a SIGHUP reload).
  void set_status_info(StatusInfo info);
  // The samples behind /samples and the chart.
  const SampleRing& samples() const;

  struct State;  // defined in http.cpp (keeps Beast out of this header)

 private:
  std::shared_ptr<State> state_;
  boost::asio::ip::tcp::endpoint local_endpoint_;
};

}  // namespace strelay
