#include "common/keepalive.hpp"

#include <algorithm>

namespace strelay {

namespace {

PingToken token_of(std::span<const std::uint8_t> body) {
  PingToken token{};
  std::copy_n(body.begin(), std::min(body.size(), token.size()), token.begin());
  return token;
}

}  // namespace

Keepalive::Keepalive(Clock::time_point now, Clock::duration interval, Clock::duration dead_after)
    : interval_(interval), dead_after_(dead_after), last_received_(now) {}

Keepalive Keepalive::answering_only(Clock::time_point now) {
  Keepalive keepalive(now);
  keepalive.timers_ = false;
  return keepalive;
}

void Keepalive::start_timers(Clock::time_point now, Clock::duration interval,
                             Clock::duration dead_after) {
  interval_ = interval;
  dead_after_ = dead_after;
  last_received_ = std::max(last_received_, now);
  timers_ = true;
}

void Keepalive::on_frame_received(Clock::time_point now) {
  last_received_ = std::max(last_received_, now);
}

bool Keepalive::on_ping(std::span<const std::uint8_t> token, Clock::time_point now) {
  on_frame_received(now);
  if (pongs_.size() >= max_pongs_due) return false;
  pongs_.push_back(token_of(token));
  return true;
}

std::optional<Keepalive::Clock::duration> Keepalive::on_pong(std::span<const std::uint8_t> token,
                                                             Clock::time_point now) {
  on_frame_received(now);
  return pong_received(token_of(token), now);
}

Keepalive::Next Keepalive::take_due(Clock::time_point now) {
  // Death first: a peer silent for the whole timeout gets no more pongs or pings from us.
  if (poll(now) == Action::peer_dead) return {Due::dead, {}};
  if (!pongs_.empty()) {
    const PingToken token = pongs_.front();
    pongs_.erase(pongs_.begin());
    return {Due::pong, token};
  }
  if (ping_requested_ || (timers_ && now >= timer_wakeup())) {
    ping_requested_ = false;
    return {Due::ping, ping_sent(now)};
  }
  return {};
}

Keepalive::Clock::time_point Keepalive::next_wakeup() const {
  if (!pongs_.empty() || ping_requested_) return Clock::time_point::min();
  return timer_wakeup();
}

Keepalive::Clock::time_point Keepalive::timer_wakeup() const {
  if (!timers_) return Clock::time_point::max();
  const auto dead_at = last_received_ + dead_after_;
  // A ping sent during this silence defers the next one by an interval.
  const bool pinged = last_ping_.has_value() && *last_ping_ >= last_received_;
  const auto ping_at = (pinged ? *last_ping_ : last_received_) + interval_;
  return std::min(dead_at, ping_at);
}

Keepalive::Action Keepalive::poll(Clock::time_point now) const {
  if (!timers_) return Action::wait;
  if (now - last_received_ >= dead_after_) return Action::peer_dead;
  return now >= timer_wakeup() ? Action::send_ping : Action::wait;
}

PingToken Keepalive::ping_sent(Clock::time_point now) {
  last_ping_ = now;
  PingToken token{};
  const std::uint64_t value = next_token_++;
  for (std::size_t i = 0; i < token.size(); ++i) {
    token[i] = static_cast<std::uint8_t>(value >> (8 * (token.size() - 1 - i)));
  }
  outstanding_ = std::make_pair(token, now);
  return token;
}

std::optional<Keepalive::Clock::duration> Keepalive::pong_received(const PingToken& token,
                                                                   Clock::time_point now) {
  if (!outstanding_ || outstanding_->first != token) return std::nullopt;
  rtt_ = now - outstanding_->second;
  outstanding_.reset();
  return rtt_;
}

}  // namespace strelay
