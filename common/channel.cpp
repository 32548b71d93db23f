#include "common/channel.hpp"

#include <algorithm>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <stdexcept>

#include "common/coro.hpp"
#include "common/errors.hpp"
#include "common/preamble.hpp"

namespace strelay {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

struct IoResult {
  std::error_code error;
  std::size_t bytes = 0;
};

// The peer going away, in any of the ways TCP reports it, is one outcome: aborted.
std::error_code map_io_error(const boost::system::error_code& error) {
  if (error == asio::error::eof || error == asio::error::connection_reset ||
      error == asio::error::broken_pipe || error == asio::error::connection_aborted) {
    return errc::aborted;
  }
  return error;
}

// Inside a handshake, a deadline is the handshake's, and a malformed frame is a failed handshake.
std::error_code handshake_error(std::error_code error) {
  if (error == errc::timeout) return errc::handshake_timeout;
  if (error == errc::frame_too_large || error == errc::protocol_error) {
    return errc::handshake_failed;
  }
  return error;
}

Deadline saturating_add(Deadline start, Clock::duration limit) {
  return limit >= Deadline::max() - start ? Deadline::max() : start + limit;
}

void set_no_delay(tcp::socket& socket) {
  boost::system::error_code ignored;  // an option we cannot set is not worth failing over
  socket.set_option(tcp::no_delay(true), ignored);
}

// One read_some raced against an absolute deadline. A parallel group (rather than `||`) hands
// back both results, so bytes that arrive just as the timer fires are kept, never dropped: a
// timeout loses nothing and the caller may resume.
// Without a deadline (Deadline::max(): the relay keeps a handshake's deadline with one
// watchdog, and a listener's reader has none) the read is not raced: no timer, no parallel
// group, which were most of a join's allocations (docs/performance.md, issue 17.3).
asio::awaitable<IoResult> read_some_until(tcp::socket& socket, std::span<std::uint8_t> room,
                                          Deadline deadline) {
  if (deadline == Deadline::max()) {
    auto [error, n] =
        co_await socket.async_read_some(asio::buffer(room.data(), room.size()), await_tuple);
    if (n > 0) co_return IoResult{{}, n};
    co_return IoResult{map_io_error(error), 0};
  }
  if (Clock::now() >= deadline) co_return IoResult{errc::timeout, 0};
  asio::steady_timer timer(socket.get_executor(), deadline);
  auto [order, read_error, n, timer_error] =
      co_await asio::experimental::make_parallel_group(
          socket.async_read_some(asio::buffer(room.data(), room.size()), asio::deferred),
          timer.async_wait(asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  (void)timer_error;
  if (n > 0) co_return IoResult{{}, n};
  if (order[0] == 1) co_return IoResult{errc::timeout, 0};
  co_return IoResult{map_io_error(read_error), 0};
}

// Writes all of `bytes` before the deadline. A timeout may leave a partial frame on the wire,
// so the caller treats any error as the end of its send side.
asio::awaitable<std::error_code> write_all_until(tcp::socket& socket,
                                                 std::span<const std::uint8_t> bytes,
                                                 Deadline deadline) {
  if (deadline == Deadline::max()) {  // not raced, as in read_some_until
    auto [error, n] =
        co_await asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()), await_tuple);
    if (n == bytes.size()) co_return std::error_code{};
    co_return map_io_error(error);
  }
  if (Clock::now() >= deadline) co_return errc::timeout;
  asio::steady_timer timer(socket.get_executor(), deadline);
  auto [order, write_error, n, timer_error] =
      co_await asio::experimental::make_parallel_group(
          asio::async_write(socket, asio::buffer(bytes.data(), bytes.size()), asio::deferred),
          timer.async_wait(asio::deferred))
          .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
  (void)timer_error;
  if (n == bytes.size()) co_return std::error_code{};
  if (order[0] == 1) co_return errc::timeout;
  co_return map_io_error(write_error);
}

asio::awaitable<std::error_code> read_exact_until(tcp::socket& socket, std::span<std::uint8_t> out,
                                                  Deadline deadline) {
  std::size_t got = 0;
  while (got < out.size()) {
    auto result = co_await read_some_until(socket, out.subspan(got), deadline);
    if (result.error) co_return result.error;
    got += result.bytes;
  }
  co_return std::error_code{};
}

// The per-frame limit of a channel: the rest of a frame is due frame_limit after its first byte.
struct FrameTiming {
  Clock::duration limit;
  Deadline started{};
  bool expired = false;  // the last timeout was this limit, not the caller's deadline
};

// Reads until `decoder` holds one whole frame, never past it (prepare() bounds every read).
asio::awaitable<std::error_code> read_frame_until(tcp::socket& socket, FrameDecoder& decoder,
                                                  Deadline deadline, FrameTiming* timing) {
  while (!decoder.complete()) {
    if (decoder.state() == FrameDecoder::State::failed) co_return decoder.error();
    Deadline until = deadline;
    bool frame_bound = false;
    if (timing != nullptr && decoder.mid_frame()) {
      const Deadline frame_end = saturating_add(timing->started, timing->limit);
      frame_bound = frame_end < until;
      until = std::min(until, frame_end);
    }
    // Bytes already in the kernel may be taken in one read (they are real, not claimed). A
    // frame that fits the decoder's first buffer gets all its room at once anyway: no ioctl.
    std::size_t waiting = 0;
    if (decoder.state() == FrameDecoder::State::body && decoder.capacity() < decoder.announced() &&
        decoder.announced() > frame_buffer_first_bytes) {
      boost::system::error_code ignored;
      waiting = socket.available(ignored);
    }
    const bool starting = !decoder.mid_frame();
    const auto result = co_await read_some_until(socket, decoder.prepare(waiting), until);
    if (result.bytes > 0) {
      if (starting && timing != nullptr) timing->started = Clock::now();
      decoder.commit(result.bytes);
      continue;
    }
    if (timing != nullptr) timing->expired = result.error == errc::timeout && frame_bound;
    co_return result.error;
  }
  co_return std::error_code{};
}

// Tells a client of another version which version we speak: our preamble, a FIN, then what
// the client still sends (its msg1) is read and discarded until it closes, so that our close
// does not turn into a reset that could destroy the reply in flight.
asio::awaitable<void> reply_preamble_and_drain(tcp::socket& socket, Deadline deadline) {
  if (co_await write_all_until(socket, current_preamble, deadline)) co_return;
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  const Deadline until = std::min(deadline, saturating_add(Clock::now(), preamble_reply_linger));
  std::array<std::uint8_t, 256> sink{};
  for (;;) {
    const auto result = co_await read_some_until(socket, sink, until);
    if (result.error) co_return;
  }
}

}  // namespace

// ---------------------------------------------------------------- Channel

Channel::Channel(tcp::socket socket, HandshakeResult keys)
    : socket_(std::move(socket)),
      transport_(std::move(keys.send), std::move(keys.recv)),
      peer_(keys.peer),
      session_id_(keys.session_id) {}

asio::awaitable<std::error_code> Channel::send(FrameKind kind, std::span<const std::uint8_t> body,
                                               Deadline deadline) {
  if (send_error_) co_return send_error_;
  if (sending_) throw std::logic_error("Channel::send: a second writer");
  if (auto error = transport_.seal(kind, body, send_buffer_)) co_return error;
  co_return co_await write_sealed(deadline);
}

asio::awaitable<std::error_code> Channel::send_close(CloseReason reason, std::string_view detail,
                                                     Deadline deadline) {
  if (send_error_) co_return send_error_;
  if (sending_) throw std::logic_error("Channel::send_close: a second writer");
  if (auto error = transport_.seal_close(reason, detail, send_buffer_)) co_return error;
  co_return co_await write_sealed(deadline);
}

asio::awaitable<std::error_code> Channel::write_sealed(Deadline deadline) {
  sending_ = true;
  const auto error = co_await write_all_until(socket_, send_buffer_, deadline);
  sending_ = false;
  if (error) send_error_ = error;  // a partial frame may be on the wire: nothing can follow it
  co_return error;
}

asio::awaitable<std::error_code> Channel::receive(Message& out, Deadline deadline) {
  out = Message{};
  if (recv_error_) co_return recv_error_;
  if (auto failure = transport_.failure()) co_return failure;
  if (transport_.peer_closed()) co_return errc::channel_closed;
  if (!decoder_.mid_frame()) release_idle_memory();

  FrameTiming timing{frame_limit_};
  if (decoder_.mid_frame()) timing.started = frame_started_;
  auto error = co_await read_frame_until(socket_, decoder_, deadline, &timing);
  frame_started_ = timing.started;
  if (error == errc::aborted) out.close_reason = CloseReason::aborted;
  // The caller's deadline is resumable (the decoder kept every byte); anything else is over.
  if (error && (error != errc::timeout || timing.expired)) recv_error_ = error;
  if (error) co_return error;

  Opened opened;
  error = transport_.open(decoder_.body(), opened);
  decoder_.next();  // the buffer (and so opened.body) stays valid until the next receive()
  if (error) co_return error;
  out.kind = opened.kind;
  out.body = opened.body;
  if (opened.kind != FrameKind::close) co_return std::error_code{};
  out.close_reason = opened.close_reason;
  out.close_detail = std::string(opened.close_detail);
  co_return errc::channel_closed;
}

void Channel::release_idle_memory() {
  const bool recv_large = decoder_.capacity() > idle_buffer_bytes;
  const bool send_large = !sending_ && send_buffer_.capacity() > idle_buffer_bytes;
  if (!recv_large && !send_large) return;
  // Bytes already waiting mean the peer is busy: keep the buffers for the next frame.
  boost::system::error_code ignored;
  if (socket_.available(ignored) > 0) return;
  if (recv_large) decoder_.release_memory();
  if (send_large) std::vector<std::uint8_t>().swap(send_buffer_);
}

tcp::socket Channel::release_socket() {
  if (decoder_.mid_frame()) throw std::logic_error("Channel::release_socket: mid-frame");
  return std::move(socket_);
}

void Channel::close() {
  boost::system::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
}

// ---------------------------------------------------------------- handshakes

asio::awaitable<std::error_code> connect_handshake(tcp::socket& socket, const Identity& self,
                                                   const PublicKey& expected_responder,
                                                   HandshakeLayer layer,
                                                   std::span<const std::uint8_t> first_payload,
                                                   Deadline deadline, std::optional<Channel>& out) {
  if (first_payload.size() > max_handshake_payload_bytes) co_return errc::frame_too_large;
  set_no_delay(socket);
  InitiatorHandshake handshake(self, expected_responder, layer);

  // 0, 1: preamble || msg1 in one write.
  std::vector<std::uint8_t> wire(current_preamble.begin(), current_preamble.end());
  (void)try_append_frame(wire, handshake.create_msg1());
  if (auto error = co_await write_all_until(socket, wire, deadline)) {
    co_return handshake_error(error);
  }

  // 2: msg2, unless the relay speaks another version and answers with its preamble instead.
  std::array<std::uint8_t, length_prefix_bytes> header{};
  if (auto error = co_await read_exact_until(socket, header, deadline)) {
    co_return handshake_error(error);
  }
  if (starts_preamble_reply(header)) {
    Preamble theirs{};
    std::copy(header.begin(), header.end(), theirs.begin());
    auto rest = std::span<std::uint8_t>(theirs).subspan(length_prefix_bytes);
    if (auto error = co_await read_exact_until(socket, rest, deadline)) {
      co_return handshake_error(error);
    }
    const auto parsed = parse_preamble(theirs);
    co_return parsed.status == PreambleStatus::ok ? make_error_code(errc::handshake_failed)
                                                  : parsed.error();
  }
  // A relay always announces msg2's fixed length; anything else at a relay's address is some
  // other service (HTTP, SSH, ...), which the user must hear about as such.
  const auto announced = static_cast<std::size_t>((header[0] << 8) | header[1]);
  if (layer == HandshakeLayer::hop && announced != handshake_msg2_bytes) {
    co_return classify_foreign_reply(header);
  }
  FrameDecoder decoder(handshake_msg2_bytes, handshake_msg2_bytes);
  decoder.feed(header);
  if (auto error = co_await read_frame_until(socket, decoder, deadline, nullptr)) {
    co_return handshake_error(error);
  }
  // A relay that is not the one pinned stops us here: it never learns who we are.
  if (auto error = handshake.consume_msg2(decoder.body())) co_return error;

  // 3: msg3 = our identity, our signature and the first request.
  wire.clear();
  (void)try_append_frame(wire, handshake.create_msg3(first_payload));
  if (auto error = co_await write_all_until(socket, wire, deadline)) {
    co_return handshake_error(error);
  }
  out.emplace(std::move(socket), handshake.finish());
  co_return std::error_code{};
}

const char* to_string(AcceptStep step) {
  switch (step) {
    case AcceptStep::preamble: return "preamble";
    case AcceptStep::msg1: return "msg1";
    case AcceptStep::msg2: return "msg2";
    case AcceptStep::msg3: return "msg3";
    case AcceptStep::done: return "done";
  }
  return "unknown";
}

asio::awaitable<std::error_code> accept_handshake(tcp::socket& socket, const Identity& self,
                                                  HandshakeLayer layer, Deadline deadline,
                                                  std::optional<Channel>& out,
                                                  std::vector<std::uint8_t>& first_payload,
                                                  AcceptStep* reached) {
  AcceptStep ignored_step{};
  AcceptStep& step = reached != nullptr ? *reached : ignored_step;
  step = AcceptStep::preamble;
  first_payload.clear();
  // No TCP_NODELAY here: the relay's listening socket passes it on to every accepted socket,
  // and a node's stream socket had it from its connect_handshake (one system call less per
  // join; docs/performance.md, issue 17.2).

  // 0: the preamble. A client sends it with msg1: one read takes what has come of both, at
  // most up to msg1's last byte (the rest of msg1, if any, is read below). Two system calls
  // fewer per handshake than reading each part on its own (docs/performance.md, issue 17.3).
  std::array<std::uint8_t, preamble_bytes + length_prefix_bytes + handshake_msg1_bytes> first{};
  std::size_t got = 0;
  while (got < preamble_bytes) {
    const auto result = co_await read_some_until(socket, std::span(first).subspan(got), deadline);
    if (result.error) co_return handshake_error(result.error);
    got += result.bytes;
  }
  Preamble preamble{};
  std::copy_n(first.begin(), preamble_bytes, preamble.begin());
  const auto parsed = parse_preamble(preamble);
  switch (relay_reply_to(parsed)) {
    case PreambleReply::proceed: break;
    case PreambleReply::send_preamble_and_close:
      co_await reply_preamble_and_drain(socket, deadline);
      co_return parsed.error();
    case PreambleReply::close_silently: co_return parsed.error();
  }
  ResponderHandshake handshake(self, layer, preamble);

  // 1: msg1, whose length must be exactly that of an ephemeral key.
  step = AcceptStep::msg1;
  FrameDecoder decoder(handshake_msg1_bytes, handshake_msg1_bytes);
  decoder.feed(std::span(first).subspan(preamble_bytes, got - preamble_bytes));
  if (auto error = co_await read_frame_until(socket, decoder, deadline, nullptr)) {
    co_return handshake_error(error);
  }
  if (auto error = handshake.consume_msg1(decoder.body())) co_return error;

  // 2: msg2.
  step = AcceptStep::msg2;
  std::vector<std::uint8_t> wire;
  (void)try_append_frame(wire, handshake.create_msg2());
  if (auto error = co_await write_all_until(socket, wire, deadline)) {
    co_return handshake_error(error);
  }

  // 3: msg3, at least its fixed part; the payload is the first request.
  step = AcceptStep::msg3;
  decoder.next();
  decoder.set_limits(max_frame_bytes, handshake_msg3_min_bytes);
  if (auto error = co_await read_frame_until(socket, decoder, deadline, nullptr)) {
    co_return handshake_error(error);
  }
  if (auto error = handshake.consume_msg3(decoder.body(), first_payload)) co_return error;
  out.emplace(std::move(socket), handshake.finish());
  step = AcceptStep::done;
  co_return std::error_code{};
}

}  // namespace strelay
