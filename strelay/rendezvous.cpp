#include "strelay/rendezvous.hpp"

#include <sys/socket.h>
#include <unistd.h>

namespace strelay {

void SocketHandle::detach() {
  if (!live_) return;
  boost::system::error_code ec;
  const auto local = live_->local_endpoint(ec);
  if (!ec && local.address().is_v4()) family_ = boost::asio::ip::tcp::v4();
  fd_ = live_->release(ec);
  if (ec) fd_ = -1;
  live_.reset();
}

SocketHandle& SocketHandle::operator=(SocketHandle&& other) noexcept {
  if (this != &other) {
    reset();
    live_ = std::move(other.live_);
    other.live_.reset();
    fd_ = std::exchange(other.fd_, -1);
    family_ = other.family_;
  }
  return *this;
}

boost::asio::ip::tcp::socket SocketHandle::attach(const boost::asio::any_io_executor& executor) {
  namespace execution = boost::asio::execution;
  if (live_ && &boost::asio::query(live_->get_executor(), execution::context) ==
                   &boost::asio::query(executor, execution::context)) {
    auto socket = std::move(*live_);
    live_.reset();
    return socket;
  }
  detach();
  boost::asio::ip::tcp::socket socket(executor);
  boost::system::error_code ec;
  socket.assign(family_, fd_, ec);
  if (ec) {
    reset();  // the new socket never took it
  } else {
    fd_ = -1;
  }
  return socket;
}

void SocketHandle::reset() {
  live_.reset();  // closes it
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

Rendezvous::~Rendezvous() = default;  // a waiting end's socket closes with it

void Rendezvous::arrive(TunnelEnd end, boost::asio::any_io_executor executor) {
  std::optional<TunnelEnd> first;
  {
    std::lock_guard lock(mutex_);
    if (abandoned_)
      return;  // the other end is gone: `end` closes, and its node sees the pipe close
    if (!waiting_) {
      end.socket.detach();  // it waits for the other end, whose worker will run the tunnel
      waiting_ = std::move(end);
      return;
    }
    first = std::move(waiting_);
    waiting_.reset();
  }
  const bool first_is_connector = first->side == pairing_.connector;
  TunnelEnd& connector = first_is_connector ? *first : end;
  TunnelEnd& acceptor = first_is_connector ? end : *first;
  start_(pairing_, std::move(connector), std::move(acceptor), std::move(executor));
}

void Rendezvous::abandon(ConnId side) {
  std::optional<TunnelEnd> waiting;
  {
    std::lock_guard lock(mutex_);
    abandoned_ = true;
    waiting = std::move(waiting_);
    waiting_.reset();
  }
  waiting.reset();  // its socket closes
  log_.info("pairing_abandoned", LogTags{side, peer_of(side)});
}

}  // namespace strelay
