#include "strelay/rendezvous.hpp"

#include <sys/socket.h>
#include <unistd.h>

namespace strelay {

SocketHandle::SocketHandle(boost::asio::ip::tcp::socket& socket) {
  boost::system::error_code ec;
  const auto local = socket.local_endpoint(ec);
  if (!ec && local.address().is_v4()) family_ = boost::asio::ip::tcp::v4();
  fd_ = socket.release(ec);
  if (ec) fd_ = -1;
}

SocketHandle& SocketHandle::operator=(SocketHandle&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
    family_ = other.family_;
  }
  return *this;
}

boost::asio::ip::tcp::socket SocketHandle::attach(const boost::asio::any_io_executor& executor) {
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
