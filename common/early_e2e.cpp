#include "common/early_e2e.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "common/errors.hpp"
#include "common/frame.hpp"
#include "common/stream.hpp"

namespace strelay {

namespace asio = boost::asio;
using namespace asio::experimental::awaitable_operators;

namespace {

constexpr auto tuple_awaitable = asio::as_tuple(asio::use_awaitable);

// Reads exactly out.size() bytes, or fails: handshake_timeout at the deadline, aborted when the
// peer goes. A handshake read that fails ends the handshake, so a cancelled read loses nothing.
asio::awaitable<std::error_code> read_exact(tcp::socket& socket, std::span<std::uint8_t> out,
                                            Deadline deadline) {
  asio::steady_timer timer(socket.get_executor(), deadline);
  auto result =
      co_await (asio::async_read(socket, asio::buffer(out.data(), out.size()), tuple_awaitable) ||
                timer.async_wait(tuple_awaitable));
  if (result.index() == 1) co_return errc::handshake_timeout;
  const auto [error, n] = std::get<0>(result);
  if (error || n != out.size()) co_return errc::aborted;
  co_return std::error_code{};
}

// One handshake message: its 2-byte length, checked against [min, max] before the body is read.
asio::awaitable<std::error_code> read_message(tcp::socket& socket, std::size_t min, std::size_t max,
                                              Deadline deadline, std::vector<std::uint8_t>& body) {
  std::array<std::uint8_t, length_prefix_bytes> header{};
  if (auto error = co_await read_exact(socket, header, deadline)) co_return error;
  const auto announced = static_cast<std::size_t>((header[0] << 8) | header[1]);
  if (announced < min || announced > max) co_return errc::handshake_failed;
  body.resize(announced);
  co_return co_await read_exact(socket, body, deadline);
}

asio::awaitable<std::error_code> write_all(tcp::socket& socket, std::span<const std::uint8_t> bytes,
                                           Deadline deadline) {
  asio::steady_timer timer(socket.get_executor(), deadline);
  auto result = co_await (
      asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()), tuple_awaitable) ||
      timer.async_wait(tuple_awaitable));
  if (result.index() == 1) co_return errc::handshake_timeout;
  if (std::get<0>(std::get<0>(result))) co_return errc::aborted;
  co_return std::error_code{};
}

}  // namespace

E2eMsg1 early_msg1(InitiatorHandshake& handshake) {
  const auto body = handshake.create_msg1();
  E2eMsg1 msg1{};
  std::copy(body.begin(), body.end(), msg1.begin());
  return msg1;
}

asio::awaitable<std::error_code> finish_early_connect(tcp::socket& socket,
                                                      InitiatorHandshake& handshake,
                                                      Deadline deadline,
                                                      std::optional<Channel>& out) {
  std::vector<std::uint8_t> msg2;
  if (auto error = co_await read_message(socket, handshake_msg2_bytes, handshake_msg2_bytes,
                                         deadline, msg2)) {
    co_return error;
  }
  // The responder is the peer, not a relay: a wrong key is the peer's mismatch. We stop here,
  // before our identity is sent.
  if (auto error = handshake.consume_msg2(msg2)) {
    co_return error == errc::relay_identity_mismatch ? make_error_code(errc::peer_identity_mismatch)
                                                     : error;
  }
  std::vector<std::uint8_t> wire;
  (void)try_append_frame(wire, handshake.create_msg3({}));
  if (auto error = co_await write_all(socket, wire, deadline)) co_return error;
  out.emplace(std::move(socket), handshake.finish());
  co_return std::error_code{};
}

bool take_early_msg1(ResponderHandshake& handshake, const E2eMsg1& msg1) {
  return !handshake.consume_msg1(msg1);
}

std::vector<std::uint8_t> early_msg2(ResponderHandshake& handshake) {
  std::vector<std::uint8_t> wire;
  (void)try_append_frame(wire, handshake.create_msg2());
  return wire;
}

asio::awaitable<std::error_code> send_early_msg2(tcp::socket& socket,
                                                 std::span<const std::uint8_t> bytes,
                                                 Deadline deadline) {
  co_return co_await write_all(socket, bytes, deadline);
}

asio::awaitable<std::error_code> finish_early_accept(
    tcp::socket& socket, ResponderHandshake& handshake, const PublicKey& announced,
    const std::function<bool(const PublicKey&)>& is_friend, Deadline deadline,
    std::optional<Channel>& out) {
  std::vector<std::uint8_t> msg3;
  if (auto error = co_await read_message(socket, handshake_msg3_min_bytes, max_frame_bytes,
                                         deadline, msg3)) {
    co_return error;
  }
  std::vector<std::uint8_t> payload;
  if (auto error = handshake.consume_msg3(msg3, payload)) co_return error;
  std::optional<Channel> channel;
  channel.emplace(std::move(socket), handshake.finish());
  co_return co_await admit_initiator(channel, payload, announced, is_friend, deadline, out);
}

}  // namespace strelay
