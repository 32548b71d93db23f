#include "common/stream_state.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "common/errors.hpp"

namespace strelay {

namespace {

// What this side tells the peer when `failure` ends the stream.
CloseReason close_reason_for(std::error_code failure) {
  if (failure == errc::peer_gone) return CloseReason::dead_peer;
  if (failure == errc::timeout) return CloseReason::timeout;
  return CloseReason::protocol_error;
}

}  // namespace

// ---------------------------------------------------------------- ByteRing

void ByteRing::push(std::span<const std::uint8_t> in) {
  const std::size_t tail = (head_ + size_) % bytes_.size();
  const std::size_t first = std::min(in.size(), bytes_.size() - tail);
  std::memcpy(bytes_.data() + tail, in.data(), first);
  std::memcpy(bytes_.data(), in.data() + first, in.size() - first);
  size_ += in.size();
}

std::size_t ByteRing::take(std::span<std::uint8_t> out) {
  const std::size_t n = std::min(out.size(), size_);
  const std::size_t first = std::min(n, bytes_.size() - head_);
  std::memcpy(out.data(), bytes_.data() + head_, first);
  std::memcpy(out.data() + first, bytes_.data(), n - first);
  head_ = (head_ + n) % bytes_.size();
  size_ -= n;
  return n;
}

// ---------------------------------------------------------------- StreamState

StreamState::StreamState(TimePoint now, const StreamConfig& config)
    : keepalive_(now, config.keepalive_interval, config.dead_peer_timeout),
      rx_(std::max(config.receive_buffer_bytes, max_frame_body_bytes)) {
  keepalive_.request_ping();
}

bool StreamState::buffer_full() const {
  return rx_.free() < max_frame_body_bytes && !discarding_;
}

bool StreamState::wants_frame() const {
  return reading_ && !terminated_ && !buffer_full();
}

StreamState::FrameResult StreamState::on_frame(FrameKind kind, std::span<const std::uint8_t> body,
                                               TimePoint now) {
  keepalive_.on_frame_received(now);
  switch (kind) {
    case FrameKind::data:
      if (rx_eof_) break;  // data after the end of data
      if (body.empty()) {
        rx_eof_ = true;
      } else if (!discarding_) {
        rx_.push(body);
      }
      return {};
    case FrameKind::ping:
      if (!keepalive_.on_ping(body, now)) break;  // pings without reading our pongs
      return {};
    case FrameKind::pong: {
      FrameResult result;
      result.rtt = keepalive_.on_pong(body, now);
      if (result.rtt) stats_.rtt = result.rtt;
      return result;
    }
    default: break;  // control frames belong to the relay hop, never to a stream
  }
  fail(errc::protocol_error);
  reading_ = false;
  return {false, {}};
}

void StreamState::on_receive_end(std::error_code ec, CloseReason reason) {
  reading_ = false;
  if (ec == errc::channel_closed) {
    peer_closed_ = true;
    peer_reason_ = reason;
    if (!rx_eof_ || reason != CloseReason::normal) {
      rx_error_ = to_error_code(reason, CloseOrigin::peer);
    }
  } else if (ec == errc::aborted) {
    // After our own close, an EOF is the peer finishing too; before it, the tunnel broke.
    send_dead_ = true;
    if (!close_request_) fail(errc::aborted);
  } else if (ec != std::errc::operation_canceled) {  // not our own close of the socket
    fail(ec);  // decrypt_failed, protocol_error, frame_too_large, the per-frame deadline
  }
}

StreamState::WriterStep StreamState::writer_step(TimePoint now) {
  using Kind = WriterStep::Kind;
  const WriterStep finish_now{Kind::finish, FrameKind::data, {}, {}};
  if (failure_ || peer_closed_ || close_request_ || terminated_) return finish_now;
  // A reader held back by a full buffer has bytes waiting: the peer lives.
  if (reading_ && buffer_full()) keepalive_.on_frame_received(now);
  const auto due = keepalive_.take_due(now);
  switch (due.due) {
    case Keepalive::Due::dead: fail(errc::peer_gone); return finish_now;
    case Keepalive::Due::pong:
    case Keepalive::Due::ping:
      token_ = due.token;
      inflight_ = Inflight::control;
      return {Kind::send,
              due.due == Keepalive::Due::pong ? FrameKind::pong : FrameKind::ping,
              token_,
              {}};
    case Keepalive::Due::nothing: break;
  }
  if (tx_busy_) {
    const auto chunk = tx_.first(std::min(tx_.size(), max_frame_body_bytes));
    inflight_ = Inflight::data;
    inflight_bytes_ = chunk.size();
    inflight_generation_ = tx_generation_;
    return {Kind::send, FrameKind::data, chunk, {}};
  }
  if (eof_requested_ && !eof_sent_) {
    inflight_ = Inflight::end_of_data;
    return {Kind::send, FrameKind::data, {}, {}};
  }
  return {Kind::wait, FrameKind::data, {}, keepalive_.next_wakeup()};
}

void StreamState::on_sent(std::error_code ec) {
  const auto inflight = std::exchange(inflight_, Inflight::none);
  if (ec) {
    send_dead_ = true;
    fail(ec);
    return;
  }
  if (inflight == Inflight::end_of_data) eof_sent_ = true;
  // The application may have given up on its write meanwhile (a new write is another one).
  if (inflight == Inflight::data && tx_busy_ && inflight_generation_ == tx_generation_) {
    stats_.bytes_sent += inflight_bytes_;
    tx_ = tx_.subspan(inflight_bytes_);
    if (tx_.empty()) tx_busy_ = false;
  }
}

StreamState::Finish StreamState::finish() {
  discarding_ = true;
  Finish out;
  if (close_request_) {
    out.reason = close_request_->first;
    out.detail = close_request_->second;
  } else if (failure_) {
    out.reason = close_reason_for(failure_);
    if (failure_ == errc::decrypt_failed) out.detail = "a frame failed to authenticate";
  }
  out.send_close = !send_dead_;
  out.linger = !send_dead_;
  return out;
}

std::error_code StreamState::on_terminated() {
  terminated_ = true;
  reading_ = false;
  return outcome();
}

std::error_code StreamState::outcome() const {
  if (failure_) return failure_;
  if (!peer_closed_) return errc::aborted;  // no close came back before the socket ended
  if (peer_reason_ != CloseReason::normal) return to_error_code(peer_reason_, CloseOrigin::peer);
  if (!rx_eof_ && !close_request_) return errc::channel_closed;  // it stopped sending early
  return {};
}

std::error_code StreamState::send_state_error() const {
  if (failure_) return failure_;
  if (peer_closed_ && peer_reason_ != CloseReason::normal) {
    return to_error_code(peer_reason_, CloseOrigin::peer);
  }
  if (peer_closed_ || eof_requested_ || close_request_ || terminated_) return errc::channel_closed;
  return {};
}

void StreamState::fail(std::error_code error) {
  if (!failure_) failure_ = error;
}

// ---------------------------------------------------------------- the application

std::optional<ReadResult> StreamState::try_read(std::span<std::uint8_t> out) {
  if (!rx_.empty()) {
    const std::size_t n = rx_.take(out);
    stats_.bytes_received += n;
    return ReadResult{{}, n};
  }
  if (out.empty() || rx_eof_) return ReadResult{};
  if (rx_error_) return ReadResult{rx_error_, 0};
  if (failure_) return ReadResult{failure_, 0};
  if (terminated_ || close_request_) return ReadResult{errc::channel_closed, 0};
  return std::nullopt;
}

std::optional<std::error_code> StreamState::begin_write(std::span<const std::uint8_t> bytes) {
  if (auto error = send_state_error()) return error;
  if (bytes.empty()) return std::error_code{};  // an empty frame would mean end of data
  if (tx_busy_) throw std::logic_error("Stream::write: a second writer");
  tx_ = bytes;
  tx_busy_ = true;
  ++tx_generation_;
  return std::nullopt;
}

std::optional<std::error_code> StreamState::write_result() const {
  if (!tx_busy_) return std::error_code{};
  if (auto error = send_state_error()) return error;
  return std::nullopt;
}

void StreamState::cancel_write() {
  tx_busy_ = false;
  tx_ = {};
}

std::optional<std::error_code> StreamState::begin_end_of_data() {
  if (tx_busy_) throw std::logic_error("Stream::shutdown_send: during a write");
  if (!eof_requested_) {
    if (auto error = send_state_error()) return error;
    eof_requested_ = true;
  }
  return end_of_data_result();
}

std::optional<std::error_code> StreamState::end_of_data_result() const {
  if (eof_sent_) return std::error_code{};
  if (failure_) return failure_;
  if (terminated_ || peer_closed_ || close_request_) return make_error_code(errc::channel_closed);
  return std::nullopt;
}

void StreamState::request_close(CloseReason reason, std::string_view detail) {
  if (!terminated_ && !close_request_ && !failure_ && !peer_closed_) {
    close_request_.emplace(reason, std::string(detail));
  }
}

void StreamState::abort() {
  fail(errc::aborted);
}

}  // namespace strelay
