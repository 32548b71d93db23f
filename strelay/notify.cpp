#include "strelay/notify.hpp"

#include <systemd/sd-daemon.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>

#include "strelay/server.hpp"
#include "strelay/status_page.hpp"

namespace strelay {

namespace asio = boost::asio;

namespace {

std::string assignment(std::string_view prefix, std::string_view status) {
  std::string out(prefix);
  if (!status.empty()) {
    out += out.empty() ? "STATUS=" : "\nSTATUS=";
    for (char c : status) out.push_back(c == '\n' ? ' ' : c);
  }
  return out;
}

}  // namespace

bool notify_enabled() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  return socket != nullptr && *socket != '\0';
}

std::string ready_message(std::string_view status) {
  return assignment("READY=1", status);
}
std::string stopping_message(std::string_view status) {
  return assignment("STOPPING=1", status);
}
std::string status_message(std::string_view status) {
  return assignment("", status);
}

bool notify(std::string_view message) {
  if (!notify_enabled() || message.empty()) return false;
  // sd_notify wants a C string; 0: leave NOTIFY_SOCKET set (a reload may notify again).
  const std::string text(message);
  return ::sd_notify(0, text.c_str()) > 0;
}

std::string status_line(const Metrics& m) {
  return std::to_string(m.connections.get()) + " connections, " +
         std::to_string(m.listeners.get()) + " listeners, " + std::to_string(m.tunnels.get()) +
         " tunnels, " + format_bytes(static_cast<double>(m.bytes_relayed_total.total())) +
         " relayed";
}

void start_notify(Server& server) {
  if (!notify_enabled()) return;
  server.on_drain(
      [&server] { notify(stopping_message("draining: " + status_line(server.metrics()))); });
  auto loop = [&server]() -> asio::awaitable<void> {
    asio::steady_timer timer(co_await asio::this_coro::executor);
    for (;;) {
      timer.expires_after(notify_status_interval);
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (server.draining()) co_return;
      notify(status_message("serving: " + status_line(server.metrics())));
    }
  };
  asio::co_spawn(server.control_executor(), std::move(loop), asio::detached);
}

}  // namespace strelay
