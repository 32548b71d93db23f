#include "strelay/rendezvous.hpp"

#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

#include "strelay/server.hpp"

namespace strelay {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

Rendezvous::~Rendezvous() {
  if (waiting_ && waiting_->fd >= 0) ::close(waiting_->fd);
}

void Rendezvous::arrive(ConnId side, int fd, ConnectionHold hold, asio::any_io_executor executor) {
  std::optional<Arrived> first;
  {
    std::lock_guard lock(mutex_);
    if (abandoned_) {
      ::close(fd);  // the other end is gone: this node sees the pipe close
      return;
    }
    if (!waiting_) {
      waiting_ = Arrived{side, fd, std::move(hold)};
      return;
    }
    first = std::move(waiting_);
    waiting_.reset();
  }
  start_tunnel(std::move(*first), Arrived{side, fd, std::move(hold)}, std::move(executor));
}

void Rendezvous::abandon(ConnId side) {
  std::optional<Arrived> waiting;
  {
    std::lock_guard lock(mutex_);
    abandoned_ = true;
    waiting = std::move(waiting_);
    waiting_.reset();
  }
  if (waiting && waiting->fd >= 0) ::close(waiting->fd);
  server_.log().info("pairing_abandoned", LogTags{side, peer_of(side)});
}

void Rendezvous::start_tunnel(Arrived first, Arrived second, asio::any_io_executor executor) {
  Arrived& connector = first.side == pairing_.connector ? first : second;
  Arrived& acceptor = first.side == pairing_.connector ? second : first;
  // Both descriptors go onto this worker: a tunnel runs on one thread, without locks.
  tcp::socket a(executor);
  tcp::socket b(executor);
  boost::system::error_code ec;
  a.assign(tcp::v6(), std::exchange(connector.fd, -1), ec);  // the protocol only tags the socket
  b.assign(tcp::v6(), std::exchange(acceptor.fd, -1), ec);
  auto settings = server_.settings();
  auto tunnel = std::make_shared<Tunnel>(std::move(a), std::move(b), settings->tunnel,
                                         &server_.tunnel_observer());
  server_.track(tunnel);
  Server& server = server_;
  const Paired pairing = pairing_;
  asio::co_spawn(
      executor,
      [tunnel, &server, pairing, holds = std::make_shared<std::pair<ConnectionHold, ConnectionHold>>(
                                     std::move(connector.hold), std::move(acceptor.hold))]()
          -> asio::awaitable<void> {
        GaugeHold live(server.metrics().tunnels);
        server.log().info("tunnel_open", LogTags{pairing.connector, pairing.connector_key},
                          {{"listener", pairing.listener_key}, {"acceptor_conn", pairing.acceptor}});
        const auto result = co_await tunnel->run();
        server.untrack(tunnel.get());  // its close was counted before its sockets closed
        server.log().info("tunnel_closed", LogTags{pairing.connector, pairing.connector_key},
                          {{"reason", metric_label(result.reason)},
                           {"bytes_to_listener", result.bytes[0]},
                           {"bytes_to_connector", result.bytes[1]},
                           {"spliced", result.spliced}});
      },
      asio::detached);
}

}  // namespace strelay
