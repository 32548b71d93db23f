// Readiness and status for systemd (Type=notify), through libsystemd's sd_notify(3).
//
// Under systemd, NOTIFY_SOCKET names a datagram socket; strelay sends on it:
//   READY=1     once every --laddr socket listens (and the HTTP endpoint, when set, too), so
//               `systemctl start` returns only when nodes can connect;
//   STOPPING=1  when SIGTERM starts the drain;
//   STATUS=...  one human line, shown by `systemctl status`: at start, after a reload, and
//               every notify_status_interval with the live counters.
// Without NOTIFY_SOCKET (a terminal, nohup, a container) every call is a no-op that returns
// false, so the daemon calls these unconditionally.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace strelay {

class Server;
struct Metrics;

// How often the STATUS= line is refreshed while running.
inline constexpr auto notify_status_interval = std::chrono::seconds(10);

// True when the process was started with NOTIFY_SOCKET set (by systemd, or by a test).
bool notify_enabled();

// The datagram text for each state; kept apart from the sending so tests can read it.
// A newline in `status` would start another assignment, so it becomes a space.
std::string ready_message(std::string_view status);
std::string stopping_message(std::string_view status);
std::string status_message(std::string_view status);

// Sends `message` with sd_notify(). Returns true when it was delivered, false when not under
// systemd or when the send failed (strelay keeps running either way: readiness is advisory).
bool notify(std::string_view message);

// "12 connections, 3 listeners, 2 tunnels, 1.5 MiB relayed"
std::string status_line(const Metrics& metrics);

// Wires the server to systemd: STOPPING=1 when the drain starts, STATUS= every
// notify_status_interval until then. A no-op without NOTIFY_SOCKET. Call before server.run().
void start_notify(Server& server);

}  // namespace strelay
