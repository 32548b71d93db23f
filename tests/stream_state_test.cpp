// Tests for common/stream_state: the end-to-end stream's rules, sans-io, with time passed in.
// (The coroutine driver has its loopback tests in stream_test.cpp; the randomized model of two
// streams talking is stream_state_model_test.cpp.)
#include "common/stream_state.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/errors.hpp"

using namespace strelay;
using namespace std::chrono_literals;

namespace {

using Kind = StreamState::WriterStep::Kind;
const StreamState::TimePoint t0{};

struct Sent {
  FrameKind kind;
  std::vector<std::uint8_t> body;
};

std::vector<std::uint8_t> bytes_of(std::string_view text) {
  return {text.begin(), text.end()};
}

// Runs the writer until it waits or finishes, as the driver would with sends that succeed.
std::vector<Sent> drain(StreamState& s, StreamState::TimePoint now, Kind* last = nullptr) {
  std::vector<Sent> out;
  for (int i = 0; i < 1000; ++i) {
    const auto step = s.writer_step(now);
    if (step.kind != Kind::send) {
      if (last != nullptr) *last = step.kind;
      return out;
    }
    out.push_back({step.frame, {step.body.begin(), step.body.end()}});
    s.on_sent({});
  }
  FAIL("the writer never stopped sending");
  return out;
}

// A stream whose first ping is already sent (every stream starts with one).
StreamState started(StreamConfig config = {}) {
  StreamState s(t0, config);
  const auto first = drain(s, t0);
  REQUIRE(first.size() == 1);
  CHECK(first[0].kind == FrameKind::ping);
  return s;
}

std::string read_all(StreamState& s) {
  std::string out;
  std::array<std::uint8_t, 7> buffer{};
  while (auto r = s.try_read(buffer)) {
    if (r->error || r->bytes == 0) break;
    out.append(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r->bytes));
  }
  return out;
}

// One read of at most 4 bytes.
std::optional<ReadResult> read4(StreamState& s) {
  std::array<std::uint8_t, 4> buffer{};
  return s.try_read(buffer);
}

}  // namespace

TEST_CASE("a stream pings once at the start, for an early round-trip time") {
  StreamState s(t0);
  const auto sent = drain(s, t0);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].kind == FrameKind::ping);
  CHECK(sent[0].body.size() == ping_token_bytes);
  const auto result = s.on_frame(FrameKind::pong, sent[0].body, t0 + 30ms);
  REQUIRE(result.rtt.has_value());
  CHECK(*result.rtt == 30ms);
  CHECK(s.stats().rtt == 30ms);
}

TEST_CASE("data arrives in order; an empty data frame is the end of data") {
  auto s = started();
  CHECK_FALSE(read4(s).has_value());  // nothing yet: wait
  CHECK(s.on_frame(FrameKind::data, bytes_of("hello "), t0).keep_reading);
  CHECK(s.on_frame(FrameKind::data, bytes_of("world"), t0).keep_reading);
  CHECK(read_all(s) == "hello world");
  CHECK(s.stats().bytes_received == 11);
  CHECK(s.on_frame(FrameKind::data, {}, t0).keep_reading);  // pings may still come
  const auto r = read4(s);
  REQUIRE(r.has_value());
  CHECK(r->eof());
  // Our own direction is still open after the peer's half-close.
  const auto data = bytes_of("reply");
  CHECK_FALSE(s.begin_write(data).has_value());
  const auto sent = drain(s, t0);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].body == data);
  CHECK(s.write_result() == std::error_code{});
}

TEST_CASE("data after the end of data, or a control frame, is a protocol error") {
  auto s = started();
  SUBCASE("data after the end of data") {
    CHECK(s.on_frame(FrameKind::data, {}, t0).keep_reading);
    CHECK_FALSE(s.on_frame(FrameKind::data, bytes_of("x"), t0).keep_reading);
  }
  SUBCASE("a control frame") {
    CHECK_FALSE(s.on_frame(FrameKind::control, bytes_of("x"), t0).keep_reading);
  }
  CHECK(s.failure() == errc::protocol_error);
  CHECK_FALSE(s.wants_frame());
  CHECK(s.writer_step(t0).kind == Kind::finish);
  const auto plan = s.finish();
  CHECK(plan.send_close);
  CHECK(plan.reason == CloseReason::protocol_error);
  CHECK(s.on_terminated() == errc::protocol_error);
}

// Every close reason the peer can send, before and after its end of data: what a read returns,
// what a write returns and how the stream ends.
TEST_CASE("the peer's close reason decides reads, writes and the outcome") {
  for (const auto reason : all_close_reasons) {
    if (reason == CloseReason::aborted) continue;  // local only: never in a close frame
    for (const bool after_eof : {false, true}) {
      CAPTURE(std::string(to_string(reason)));
      CAPTURE(after_eof);
      auto s = started();
      CHECK(s.on_frame(FrameKind::data, bytes_of("last"), t0).keep_reading);
      if (after_eof) CHECK(s.on_frame(FrameKind::data, {}, t0).keep_reading);
      s.on_receive_end(errc::channel_closed, reason);
      const bool clean = reason == CloseReason::normal && after_eof;
      const std::error_code as_code = to_error_code(reason, CloseOrigin::peer);
      // What arrived before the close is still read.
      CHECK(read_all(s) == "last");
      const auto r = read4(s);
      REQUIRE(r.has_value());
      if (after_eof) {
        CHECK(r->eof());  // reads end at the end of data; the close decides the outcome
      } else if (reason == CloseReason::normal) {
        CHECK(r->error == errc::channel_closed);  // a close is never mistaken for an eof
      } else {
        CHECK(r->error == as_code);
      }
      const auto write = s.begin_write(bytes_of("more"));
      REQUIRE(write.has_value());
      CHECK(*write ==
            (reason == CloseReason::normal ? make_error_code(errc::channel_closed) : as_code));
      CHECK(s.writer_step(t0).kind == Kind::finish);
      const auto plan = s.finish();
      CHECK(plan.reason == CloseReason::normal);  // we answer with our own close{normal}
      const auto outcome = s.on_terminated();
      if (clean) {
        CHECK_FALSE(outcome);
      } else if (reason == CloseReason::normal) {
        CHECK(outcome == errc::channel_closed);
      } else {
        CHECK(outcome == as_code);
      }
    }
  }
}

TEST_CASE("a friend's end-to-end close{not_allowed} is not the relay's allowlist") {
  auto s = started();
  s.on_receive_end(errc::channel_closed, CloseReason::not_allowed);
  const auto r = read4(s);
  REQUIRE(r.has_value());
  CHECK(r->error == errc::not_a_friend);
  CHECK(r->error != errc::not_allowed);
  CHECK(s.on_terminated() == errc::not_a_friend);
  CHECK(to_error_code(CloseReason::not_allowed, CloseOrigin::relay) == errc::not_allowed);
}

TEST_CASE("a clean end: both ends of data, then the peer's close{normal}") {
  auto s = started();
  CHECK(s.begin_end_of_data() == std::nullopt);  // waits for the writer
  const auto sent = drain(s, t0);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].kind == FrameKind::data);
  CHECK(sent[0].body.empty());
  CHECK(s.end_of_data_result() == std::error_code{});
  CHECK(s.begin_write(bytes_of("x")) == make_error_code(errc::channel_closed));
  CHECK(s.on_frame(FrameKind::data, {}, t0).keep_reading);
  s.request_close(CloseReason::normal, {});
  Kind last{};
  CHECK(drain(s, t0, &last).empty());
  CHECK(last == Kind::finish);
  const auto plan = s.finish();
  CHECK(plan.send_close);
  CHECK(plan.linger);
  CHECK(plan.reason == CloseReason::normal);
  s.on_receive_end(errc::channel_closed, CloseReason::normal);
  CHECK_FALSE(s.on_terminated());
}

TEST_CASE("our close: reads end, the peer's close{normal} makes it clean, silence does not") {
  auto s = started();
  s.request_close(CloseReason::timeout, "bored");
  const auto r = read4(s);
  REQUIRE(r.has_value());
  CHECK(r->error == errc::channel_closed);
  CHECK(s.writer_step(t0).kind == Kind::finish);
  const auto plan = s.finish();
  CHECK(plan.reason == CloseReason::timeout);
  CHECK(plan.detail == "bored");
  SUBCASE("the peer answers with close{normal}") {
    s.on_receive_end(errc::channel_closed, CloseReason::normal);
    CHECK_FALSE(s.on_terminated());
  }
  SUBCASE("the peer answers with an EOF") {
    s.on_receive_end(errc::aborted, CloseReason::aborted);
    CHECK(s.failure() == std::error_code{});    // after our close an EOF is no failure...
    CHECK(s.on_terminated() == errc::aborted);  // ...but no close came back
  }
  SUBCASE("a second close changes nothing") {
    s.request_close(CloseReason::normal, {});
    CHECK(s.finish().reason == CloseReason::timeout);
  }
}

TEST_CASE("a tunnel that ends without a close is aborted, and nothing more is sent") {
  auto s = started();
  s.on_receive_end(errc::aborted, CloseReason::aborted);
  CHECK(s.failure() == errc::aborted);
  CHECK(s.writer_step(t0).kind == Kind::finish);
  const auto plan = s.finish();
  CHECK_FALSE(plan.send_close);
  CHECK_FALSE(plan.linger);
  CHECK(s.on_terminated() == errc::aborted);
}

TEST_CASE("a frame that fails to authenticate ends the stream and says so") {
  auto s = started();
  CHECK(s.on_frame(FrameKind::data, bytes_of("good"), t0).keep_reading);
  s.on_receive_end(errc::decrypt_failed, CloseReason::normal);
  CHECK(read_all(s) == "good");  // what authenticated before is delivered
  const auto r = read4(s);
  REQUIRE(r.has_value());
  CHECK(r->error == errc::decrypt_failed);
  CHECK(s.writer_step(t0).kind == Kind::finish);
  const auto plan = s.finish();
  CHECK(plan.send_close);
  CHECK(plan.reason == CloseReason::protocol_error);
  CHECK(plan.detail == "a frame failed to authenticate");
  CHECK(s.on_terminated() == errc::decrypt_failed);
}

TEST_CASE("our own close of the socket, seen by the reader, is no failure") {
  auto s = started();
  s.on_receive_end(std::make_error_code(std::errc::operation_canceled), CloseReason::normal);
  CHECK_FALSE(s.failure());
}

TEST_CASE("a failed send ends the stream without a close") {
  auto s = started();
  const auto data = bytes_of("abc");
  CHECK_FALSE(s.begin_write(data).has_value());
  const auto step = s.writer_step(t0);
  REQUIRE(step.kind == Kind::send);
  s.on_sent(errc::timeout);  // the write-stall deadline
  CHECK(s.write_result() == make_error_code(errc::timeout));
  CHECK(s.stats().bytes_sent == 0);
  CHECK(s.writer_step(t0).kind == Kind::finish);
  CHECK_FALSE(s.finish().send_close);
  CHECK(s.on_terminated() == errc::timeout);
}

TEST_CASE("a write goes out in frames of at most one frame body") {
  auto s = started();
  std::vector<std::uint8_t> data(2 * max_frame_body_bytes + 10, 0x5a);
  CHECK_FALSE(s.begin_write(data).has_value());
  CHECK_THROWS_AS(s.begin_write(data), std::logic_error);  // one writer at a time
  CHECK_THROWS_AS(s.begin_end_of_data(), std::logic_error);
  std::vector<std::size_t> sizes;
  for (int i = 0; i < 3; ++i) {
    CHECK_FALSE(s.write_result().has_value());
    const auto step = s.writer_step(t0);
    REQUIRE(step.kind == Kind::send);
    CHECK(step.frame == FrameKind::data);
    sizes.push_back(step.body.size());
    s.on_sent({});
  }
  CHECK(sizes == std::vector<std::size_t>{max_frame_body_bytes, max_frame_body_bytes, 10});
  CHECK(s.write_result() == std::error_code{});
  CHECK(s.stats().bytes_sent == data.size());
  CHECK(s.begin_write({}) == std::error_code{});  // nothing to write: no frame (it would be eof)
  CHECK(s.writer_step(t0).kind == Kind::wait);
}

TEST_CASE("a write given up mid-frame is not counted, and a new write starts afresh") {
  auto s = started();
  const auto first = bytes_of("first");
  CHECK_FALSE(s.begin_write(first).has_value());
  REQUIRE(s.writer_step(t0).kind == Kind::send);
  s.cancel_write();  // the application's write() was destroyed while its frame was on its way
  const auto second = bytes_of("second");
  CHECK_FALSE(s.begin_write(second).has_value());
  s.on_sent({});  // the first write's frame completes
  CHECK(s.stats().bytes_sent == 0);
  CHECK_FALSE(s.write_result().has_value());  // the second write is still waiting
  const auto step = s.writer_step(t0);
  REQUIRE(step.kind == Kind::send);
  CHECK(std::vector<std::uint8_t>(step.body.begin(), step.body.end()) == second);
  s.on_sent({});
  CHECK(s.write_result() == std::error_code{});
  CHECK(s.stats().bytes_sent == second.size());
}

TEST_CASE("pings are answered before data, every one, oldest first") {
  auto s = started();
  const auto data = bytes_of("data");
  CHECK_FALSE(s.begin_write(data).has_value());
  PingToken a{}, b{};
  a[0] = 1;
  b[0] = 2;
  CHECK(s.on_frame(FrameKind::ping, a, t0).keep_reading);
  CHECK(s.on_frame(FrameKind::ping, b, t0).keep_reading);
  const auto sent = drain(s, t0);
  REQUIRE(sent.size() == 3);
  CHECK(sent[0].kind == FrameKind::pong);
  CHECK(sent[0].body == std::vector<std::uint8_t>(a.begin(), a.end()));
  CHECK(sent[1].kind == FrameKind::pong);
  CHECK(sent[1].body == std::vector<std::uint8_t>(b.begin(), b.end()));
  CHECK(sent[2].kind == FrameKind::data);
}

TEST_CASE("a peer that pings past max_pongs_due without reading is a protocol error") {
  auto s = started();
  const PingToken token{};
  for (std::size_t i = 0; i < max_pongs_due; ++i) {
    REQUIRE(s.on_frame(FrameKind::ping, token, t0).keep_reading);
  }
  CHECK_FALSE(s.on_frame(FrameKind::ping, token, t0).keep_reading);
  CHECK(s.failure() == errc::protocol_error);
}

// The keepalive rules end to end, in simulated time (these were real-time loopback tests).
TEST_CASE("keepalive: pings after each interval of silence; a silent peer is gone and told") {
  StreamConfig config;
  config.keepalive_interval = 50ms;
  config.dead_peer_timeout = 300ms;
  auto s = started(config);
  StreamState::WriterStep step = s.writer_step(t0);
  CHECK(step.kind == Kind::wait);
  CHECK(step.until == t0 + 50ms);
  CHECK(drain(s, t0 + 49ms).empty());
  SUBCASE("a peer that answers keeps the stream up for ever") {
    for (auto at = t0 + 50ms; at < t0 + 3s; at += 51ms) {  // an interval after each pong
      const auto sent = drain(s, at);
      REQUIRE(sent.size() == 1);
      CHECK(sent[0].kind == FrameKind::ping);
      const auto rtt = s.on_frame(FrameKind::pong, sent[0].body, at + 1ms).rtt;
      CHECK(rtt == 1ms);
    }
    CHECK_FALSE(s.failure());
  }
  SUBCASE("a silent peer: a ping each interval, then gone at the dead-peer timeout") {
    int pings = 0;
    Kind last{};
    for (auto at = t0 + 50ms; at < t0 + 300ms; at += 50ms) {
      const auto sent = drain(s, at, &last);
      CHECK(last == Kind::wait);
      pings += static_cast<int>(sent.size());
    }
    CHECK(pings == 5);
    CHECK_FALSE(s.failure());
    CHECK(drain(s, t0 + 300ms, &last).empty());
    CHECK(last == Kind::finish);
    CHECK(s.failure() == errc::peer_gone);
    const auto plan = s.finish();
    CHECK(plan.send_close);
    CHECK(plan.reason == CloseReason::dead_peer);
    const auto r = read4(s);
    REQUIRE(r.has_value());
    CHECK(r->error == errc::peer_gone);
  }
}

TEST_CASE("backpressure: a full buffer stops the reader, and its waiting peer counts as alive") {
  StreamConfig config;
  config.receive_buffer_bytes = 1;  // rounds up to one frame body
  config.keepalive_interval = 50ms;
  config.dead_peer_timeout = 300ms;
  auto s = started(config);
  CHECK(s.wants_frame());
  std::vector<std::uint8_t> body(max_frame_body_bytes, 1);
  CHECK(s.on_frame(FrameKind::data, body, t0).keep_reading);
  CHECK_FALSE(s.wants_frame());  // no room for another whole frame: backpressure
  // Long past the dead-peer timeout, the peer is not gone: it is waiting for us to read.
  for (auto at = t0 + 50ms; at < t0 + 2s; at += 50ms) drain(s, at);
  CHECK_FALSE(s.failure());
  std::vector<std::uint8_t> out(100);
  REQUIRE(s.try_read(out).has_value());
  CHECK_FALSE(s.wants_frame());  // 100 bytes are not room for a frame
  std::vector<std::uint8_t> rest(max_frame_body_bytes);
  REQUIRE(s.try_read(rest).has_value());
  CHECK(s.wants_frame());
  SUBCASE("finishing drops what arrives, so a full buffer never holds up the end") {
    CHECK(s.on_frame(FrameKind::data, body, t0 + 2s).keep_reading);
    s.request_close(CloseReason::normal, {});
    CHECK(s.writer_step(t0 + 2s).kind == Kind::finish);
    s.finish();
    CHECK(s.wants_frame());
    CHECK(s.on_frame(FrameKind::data, body, t0 + 2s).keep_reading);
  }
}

TEST_CASE("abort fails the stream unless it already failed") {
  auto s = started();
  s.abort();
  CHECK(s.on_terminated() == errc::aborted);
  CHECK(s.terminated());
  CHECK_FALSE(s.wants_frame());
  auto t = started();
  t.on_receive_end(errc::decrypt_failed, CloseReason::normal);
  t.abort();
  CHECK(t.on_terminated() == errc::decrypt_failed);
}

TEST_CASE("close reasons: one name and one error code for every value") {
  std::vector<std::string> names;
  for (const auto reason : all_close_reasons) {
    const std::string name(to_string(reason));
    CAPTURE(name);
    CHECK(name != "unknown");
    CHECK(std::find(names.begin(), names.end(), name) == names.end());
    names.push_back(name);
    for (const auto origin : {CloseOrigin::relay, CloseOrigin::peer}) {
      const auto code = to_error_code(reason, origin);
      CHECK(code);  // a close is never a success
      CHECK(code.category() == strelay_category());
    }
  }
  CHECK(to_string(static_cast<CloseReason>(200)) == "unknown");
  // The table of docs/node-library.md ("Errors").
  const auto peer = [](CloseReason r) { return to_error_code(r, CloseOrigin::peer); };
  const auto relay = [](CloseReason r) { return to_error_code(r, CloseOrigin::relay); };
  CHECK(relay(CloseReason::not_allowed) == errc::not_allowed);
  CHECK(peer(CloseReason::not_allowed) == errc::not_a_friend);
  CHECK(relay(CloseReason::overloaded) == errc::overloaded);
  CHECK(peer(CloseReason::overloaded) == errc::overloaded);
  CHECK(relay(CloseReason::rate_limited) == errc::rate_limited);
  CHECK(peer(CloseReason::rate_limited) == errc::rate_limited);
  CHECK(peer(CloseReason::protocol_error) == errc::protocol_error);
  CHECK(peer(CloseReason::timeout) == errc::timeout);
  CHECK(peer(CloseReason::dead_peer) == errc::peer_gone);
  CHECK(peer(CloseReason::peer_gone) == errc::peer_gone);
  CHECK(peer(CloseReason::aborted) == errc::aborted);
  for (const auto done :
       {CloseReason::normal, CloseReason::replaced, CloseReason::stalled, CloseReason::internal}) {
    CHECK(peer(done) == errc::channel_closed);
    CHECK(relay(done) == errc::channel_closed);
  }
  // The relay's drain says so (issue 20.1: a listener reported "the peer closed the channel").
  CHECK(relay(CloseReason::shutdown) == errc::relay_shutting_down);
  CHECK(relay(CloseReason::shutdown).message().starts_with("relay shutting down"));
  CHECK(peer(CloseReason::shutdown) == errc::channel_closed);
}
