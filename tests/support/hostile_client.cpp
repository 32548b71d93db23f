#include "support/hostile_client.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>
#include <unordered_map>

#include "common/base64url.hpp"
#include "common/preamble.hpp"

namespace strelay::test {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- SecretLedger

std::mutex SecretLedger::mutex_;
std::vector<SecretLedger::Entry> SecretLedger::entries_;

namespace {

std::string hex(std::span<const std::uint8_t> bytes, bool upper) {
  static constexpr char lower_digits[] = "0123456789abcdef";
  static constexpr char upper_digits[] = "0123456789ABCDEF";
  const char* digits = upper ? upper_digits : lower_digits;
  std::string out;
  for (auto b : bytes) {
    out.push_back(digits[b >> 4]);
    out.push_back(digits[b & 0xf]);
  }
  return out;
}

std::string base64_standard(std::span<const std::uint8_t> bytes) {
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::char_traits<char>::length(out.c_str()));
  return out;
}

}  // namespace

void SecretLedger::add(std::string_view label, std::span<const std::uint8_t> bytes) {
  Entry entry{std::string(label), {}};
  const auto half = bytes.first(bytes.size() / 2);
  for (auto part : {bytes, half}) {
    entry.forms.push_back(hex(part, false));
    entry.forms.push_back(hex(part, true));
    entry.forms.push_back(to_base64url(part));
    // A padded standard base64 of the whole; of the half only the part before any padding.
    auto b64 = base64_standard(part);
    while (!b64.empty() && b64.back() == '=') b64.pop_back();
    entry.forms.push_back(b64.substr(0, b64.size() - b64.size() % 4));
  }
  std::lock_guard lock(mutex_);
  entries_.push_back(std::move(entry));
}

std::vector<SecretLedger::Entry> SecretLedger::entries() {
  std::lock_guard lock(mutex_);
  return entries_;
}

std::size_t SecretLedger::size() {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

// One hash lookup per position of the text (the ledger holds thousands of secrets after a
// flood, the log megabytes): the first 16 characters of every form are the keys.
std::string SecretLedger::find_in(const std::string& text) {
  constexpr std::size_t key_chars = 16;
  std::lock_guard lock(mutex_);
  std::unordered_map<std::string_view, std::vector<std::pair<const Entry*, const std::string*>>>
      by_prefix;
  for (const auto& e : entries_) {
    for (const auto& form : e.forms) {
      if (form.size() >= key_chars)
        by_prefix[std::string_view(form).substr(0, key_chars)].emplace_back(&e, &form);
    }
  }
  const std::string_view all(text);
  for (std::size_t i = 0; i + key_chars <= all.size(); ++i) {
    const auto it = by_prefix.find(all.substr(i, key_chars));
    if (it == by_prefix.end()) continue;
    for (const auto& [entry, form] : it->second) {
      if (all.substr(i, form->size()) == *form) return entry->label;
    }
  }
  return {};
}

// ---------------------------------------------------------------- the client

namespace {

void remember(std::string_view label, std::span<const std::uint8_t> bytes) {
  SecretLedger::add(label, bytes);
}

std::chrono::milliseconds left_until(Clock::time_point until) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()));
}

}  // namespace

HostileClient::HostileClient(const RelayAddress& relay, Hooks hooks, std::string source)
    : relay_(relay),
      hooks_(hooks),
      identity_(Identity::generate()),
      public_key_(identity_->public_key()) {
  remember("hostile client's node seed", identity_->seed());
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_in from{};
  from.sin_family = AF_INET;
  ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(relay.endpoint.port());
  ::inet_pton(AF_INET, relay.endpoint.address().to_string().c_str(), &to.sin_addr);
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::bind(fd_, reinterpret_cast<const sockaddr*>(&from), sizeof from) != 0 ||
      ::connect(fd_, reinterpret_cast<const sockaddr*>(&to), sizeof to) != 0) {
    close();
  }
}

HostileClient::~HostileClient() {
  close();
}

const Identity& HostileClient::identity() const {
  REQUIRE_MESSAGE(identity_, "the hostile client's identity was released");
  return *identity_;
}

void HostileClient::set_identity(Identity identity) {
  identity_ = std::move(identity);
  public_key_ = identity_->public_key();
  remember("hostile client's node seed", identity_->seed());
}

void HostileClient::close() {
  if (fd_ >= 0) ::close(std::exchange(fd_, -1));
}

void HostileClient::reset() {
  if (fd_ < 0) return;
  const linger abort_now{1, 0};
  ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &abort_now, sizeof abort_now);
  close();
}

void HostileClient::fin() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool HostileClient::write_all(std::span<const std::uint8_t> bytes) {
  while (!bytes.empty()) {
    if (fd_ < 0) return false;
    const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes = bytes.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

// Applies the hooks to one message: corruption, then the stall cut, then the drip.
bool HostileClient::write_message(std::span<const std::uint8_t> original) {
  const int index = next_message_++;
  std::vector<std::uint8_t> bytes(original.begin(), original.end());
  if (hooks_.corrupt && hooks_.corrupt->message == index && hooks_.corrupt->byte < bytes.size()) {
    bytes[hooks_.corrupt->byte] ^= hooks_.corrupt->mask;
  }
  std::span<const std::uint8_t> out(bytes);
  if (hooks_.stall_after) {
    const auto room = *hooks_.stall_after > sent_total_ ? *hooks_.stall_after - sent_total_ : 0;
    out = out.first(std::min(room, out.size()));
  }
  sent_total_ += out.size();
  if (!hooks_.drip) return write_all(out);
  const auto step = std::max<std::size_t>(1, hooks_.drip->bytes);
  for (std::size_t at = 0; at < out.size(); at += step) {
    if (at > 0) std::this_thread::sleep_for(hooks_.drip->every);
    if (!write_all(out.subspan(at, std::min(step, out.size() - at)))) return false;
  }
  return true;
}

bool HostileClient::read_exact(std::span<std::uint8_t> out, Clock::time_point until) {
  timed_out_ = false;
  std::size_t got = 0;
  bool extended = false;
  while (got < out.size()) {
    if (fd_ < 0) return false;
    pollfd p{fd_, POLLIN, 0};
    const auto left = left_until(until);
    if (left.count() == 0 && got > 0 && !extended) {
      // Begun, so finished: a deadline that falls inside a frame would drop its first bytes
      // and leave the stream out of step (the next read would take a body for a length).
      until = Clock::now() + std::chrono::seconds(5);
      extended = true;
      continue;
    }
    if (left.count() == 0) {
      timed_out_ = true;
      return false;
    }
    if (::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100))) <= 0) continue;
    const auto n = ::recv(fd_, out.data() + got, out.size() - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    got += static_cast<std::size_t>(n);
    received_total_ += static_cast<std::size_t>(n);
  }
  return true;
}

std::vector<std::uint8_t> HostileClient::send_preamble_and_msg1(
    std::optional<std::array<std::uint8_t, key_bytes>> msg1_override) {
  std::array<std::uint8_t, key_bytes> secret{};
  randombytes_buf(secret.data(), secret.size());
  remember("hostile client's ephemeral secret", secret);
  e_.emplace(DhKeyPair::from_secret(secret));
  sodium_memzero(secret.data(), secret.size());
  symmetric_.emplace(handshake_protocol_name, Cipher::chachapoly);
  symmetric_->mix_hash(current_preamble);
  symmetric_->mix_hash(relay_.key.bytes());  // <- s
  const auto e_pub = msg1_override ? *msg1_override : e_->public_key();
  symmetric_->mix_hash(e_pub);  // -> e
  symmetric_->mix_hash({});     // its empty payload
  std::vector<std::uint8_t> preamble(current_preamble.begin(), current_preamble.end());
  std::vector<std::uint8_t> msg1{0, static_cast<std::uint8_t>(key_bytes)};
  msg1.insert(msg1.end(), e_pub.begin(), e_pub.end());
  write_message(preamble);
  write_message(msg1);
  preamble.insert(preamble.end(), msg1.begin(), msg1.end());
  return preamble;
}

std::optional<std::vector<std::uint8_t>> HostileClient::read_msg2(ms limit) {
  const auto until = Clock::now() + limit;
  std::array<std::uint8_t, 2> length{};
  if (!read_exact(length, until)) return std::nullopt;
  const std::size_t n = std::size_t{length[0]} << 8 | length[1];
  if (n != handshake_msg2_bytes) return std::nullopt;
  std::vector<std::uint8_t> body(n);
  if (!read_exact(body, until)) return std::nullopt;
  next_message_ = std::max(next_message_, 2);
  if (hooks_.corrupt && hooks_.corrupt->message == 2 && hooks_.corrupt->byte >= 2 &&
      hooks_.corrupt->byte - 2 < body.size()) {
    body[hooks_.corrupt->byte - 2] ^= hooks_.corrupt->mask;
  }
  next_message_ = 3;
  return body;
}

std::error_code HostileClient::consume_msg2(std::span<const std::uint8_t> body) {
  if (!symmetric_ || !e_ || body.size() != handshake_msg2_bytes) return errc::handshake_failed;
  const auto re = body.first<key_bytes>();
  symmetric_->mix_hash(re);  // <- e
  DhOutput ee;
  if (!e_->dh(re, ee)) return errc::handshake_failed;
  remember("hostile client's ee DH output", ee.span());
  symmetric_->mix_key(ee.span());  // ee
  const auto h = symmetric_->handshake_hash();
  Signature sig{};
  if (!symmetric_->decrypt_and_hash(body.subspan(key_bytes), sig))
    return errc::relay_identity_mismatch;
  std::vector<std::uint8_t> signed_bytes(responder_signature_context.begin(),
                                         responder_signature_context.end());
  signed_bytes.insert(signed_bytes.end(), h.begin(), h.end());
  if (!relay_.key.verify(signed_bytes, sig)) return errc::relay_identity_mismatch;  // sig
  e_->wipe();
  return {};
}

namespace {

// S + L (mod 2^256) in the upper half of a signature: a non-canonical twin of a valid one.
void malleate(Signature& sig) {
  static constexpr std::array<std::uint8_t, 32> group_order{
      0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
      0xa2, 0xde, 0xf9, 0xde, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};
  unsigned carry = 0;
  for (std::size_t i = 0; i < 32; ++i) {
    const unsigned sum = sig[32 + i] + group_order[i] + carry;
    sig[32 + i] = static_cast<std::uint8_t>(sum);
    carry = sum >> 8;
  }
}

}  // namespace

std::vector<std::uint8_t> HostileClient::send_msg3(std::span<const std::uint8_t> payload,
                                                   const Msg3Options& options) {
  if (!symmetric_) return {};
  const auto s = options.identity_bytes ? *options.identity_bytes : public_key_.bytes();
  std::vector<std::uint8_t> body(handshake_msg3_min_bytes + payload.size());
  auto rest = std::span(body);
  bool ok = symmetric_->encrypt_and_hash(s, rest.first(key_bytes + aead_tag_bytes));  // -> s
  rest = rest.subspan(key_bytes + aead_tag_bytes);
  std::string context(initiator_signature_context);
  if (options.forgery == SignatureForgery::responder_role) context = responder_signature_context;
  if (options.forgery == SignatureForgery::other_version)
    context = "strelay v2 handshake: initiator signature";
  std::vector<std::uint8_t> signed_bytes(context.begin(), context.end());
  const auto& h = symmetric_->handshake_hash();
  signed_bytes.insert(signed_bytes.end(), h.begin(), h.end());
  Signature sig = (options.signer ? *options.signer : identity()).sign(signed_bytes);  // sig
  if (options.forgery == SignatureForgery::all_zero) sig.fill(0);
  if (options.forgery == SignatureForgery::malleated) malleate(sig);
  ok = ok && symmetric_->encrypt_and_hash(sig, rest.first(signature_bytes + aead_tag_bytes));
  rest = rest.subspan(signature_bytes + aead_tag_bytes);
  ok = ok && symmetric_->encrypt_and_hash(payload, rest);
  if (!ok) return {};
  std::vector<std::uint8_t> wire{static_cast<std::uint8_t>(body.size() >> 8),
                                 static_cast<std::uint8_t>(body.size())};
  wire.insert(wire.end(), body.begin(), body.end());
  write_message(wire);
  auto [c1, c2] = symmetric_->split();
  transport_.emplace(std::move(c1), std::move(c2));
  symmetric_.reset();
  return body;
}

bool HostileClient::handshake(const NodeMessage& request, ms limit) {
  const auto payload = encode(request);
  return handshake_with_payload(payload, limit);
}

bool HostileClient::handshake_with_payload(std::span<const std::uint8_t> payload, ms limit) {
  if (!ok()) return false;
  send_preamble_and_msg1();
  const auto msg2 = read_msg2(limit);
  if (!msg2 || consume_msg2(*msg2)) return false;
  return !send_msg3(payload).empty();
}

std::vector<std::uint8_t> HostileClient::seal_next(FrameKind kind,
                                                   std::span<const std::uint8_t> body) {
  std::vector<std::uint8_t> out;
  if (transport_) (void)transport_->seal(kind, body, out);
  return out;
}

bool HostileClient::send_frame(FrameKind kind, std::span<const std::uint8_t> body) {
  const auto frame = seal_next(kind, body);
  if (frame.empty()) return false;
  return write_message(frame);
}

bool HostileClient::send_raw(std::span<const std::uint8_t> bytes) {
  return write_message(bytes);
}

bool HostileClient::send_ping(std::uint64_t token) {
  return send_pings(token, 1);
}

bool HostileClient::send_pings(std::uint64_t first, std::size_t count) {
  std::vector<std::uint8_t> all;
  for (std::uint64_t token = first; token < first + count; ++token) {
    std::array<std::uint8_t, ping_token_bytes> body{};
    for (std::size_t i = 0; i < body.size(); ++i)
      body[i] = static_cast<std::uint8_t>(token >> (8 * i));
    const auto frame = seal_next(FrameKind::ping, body);
    if (frame.empty()) return false;
    all.insert(all.end(), frame.begin(), frame.end());
  }
  return write_message(all);
}

HostileClient::Reply HostileClient::receive(ms limit, bool answer_pings) {
  const auto until = Clock::now() + limit;
  for (;;) {
    Reply out;
    std::array<std::uint8_t, 2> length{};
    if (!read_exact(length, until)) {
      out.what = timed_out_ ? Reply::What::timeout : Reply::What::eof;
      return out;
    }
    std::vector<std::uint8_t> frame(std::size_t{length[0]} << 8 | length[1]);
    // The length is in: the body follows it, even when `until` has just passed.
    if (!read_exact(frame, std::max(until, Clock::now() + std::chrono::seconds(5)))) {
      out.what = timed_out_ ? Reply::What::timeout : Reply::What::eof;
      return out;
    }
    Opened opened;
    if (!transport_ || transport_->open(frame, opened)) {
      out.what = Reply::What::failed;
      return out;
    }
    out.kind = opened.kind;
    out.body.assign(opened.body.begin(), opened.body.end());
    if (opened.kind == FrameKind::close) {
      out.what = Reply::What::closed;
      out.close_reason = opened.close_reason;
      return out;
    }
    if (opened.kind == FrameKind::ping && answer_pings) {
      send_frame(FrameKind::pong, out.body);
      continue;
    }
    out.what = Reply::What::frame;
    if (opened.kind == FrameKind::control) {
      auto decoded = try_decode_relay_message(out.body);
      if (decoded) out.message = *decoded;
    }
    return out;
  }
}

HostileClient::Reply HostileClient::next_message(ms limit) {
  const auto until = Clock::now() + limit;
  for (;;) {
    auto r = receive(left_until(until));
    if (r.what != Reply::What::frame || r.kind == FrameKind::control) return r;
  }
}

bool HostileClient::wait_closed(ms limit) {
  const auto until = Clock::now() + limit;
  for (;;) {
    if (fd_ < 0) return true;
    const auto left = left_until(until);
    pollfd p{fd_, POLLIN | POLLRDHUP, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
    if (ready > 0) {
      char buf[4096];
      const auto n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n == 0) return true;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
      if (n > 0) received_total_ += static_cast<std::size_t>(n);
    }
    if (left.count() == 0) return false;
  }
}

// ---------------------------------------------------------------- hostile Cap'n Proto

namespace {

std::uint64_t struct_pointer(std::int32_t offset, std::uint16_t data_words,
                             std::uint16_t pointers) {
  return std::uint64_t{static_cast<std::uint32_t>(offset) << 2} | std::uint64_t{data_words} << 32 |
         std::uint64_t{pointers} << 48;
}

std::uint64_t list_pointer(std::int32_t offset, std::uint8_t element_size, std::uint32_t count) {
  return 1u | std::uint64_t{static_cast<std::uint32_t>(offset) << 2} |
         std::uint64_t{element_size} << 32 | std::uint64_t{count} << 35;
}

std::vector<std::uint8_t> flat(const std::vector<std::uint64_t>& segment,
                               std::uint32_t count_minus_one = 0) {
  std::vector<std::uint64_t> words{std::uint64_t{count_minus_one} |
                                   std::uint64_t{static_cast<std::uint32_t>(segment.size())} << 32};
  words.insert(words.end(), segment.begin(), segment.end());
  std::vector<std::uint8_t> out;
  for (auto w : words) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(w >> (8 * i)));
  }
  return out;
}

// A NodeMessage root (1 data word: the union's discriminant; 2 pointers: the body and one
// unknown field for `tail`), whose body is Listen (discriminant 0, an empty struct).
std::vector<std::uint64_t> listen_with_extra_pointer() {
  return {struct_pointer(0, 1, 2), 0, struct_pointer(-1, 0, 0), 0};
}

}  // namespace

std::vector<std::string> hostile_capnp_names() {
  return {"random_bytes", "segment_count_ffffffff", "out_of_range_pointer",
          "deep_nesting", "zero_size_list",         "trailing_bytes"};
}

std::vector<std::uint8_t> hostile_capnp(std::string_view name) {
  if (name == "random_bytes") {
    std::vector<std::uint8_t> out(200);
    randombytes_buf(out.data(), out.size());
    return out;
  }
  if (name == "segment_count_ffffffff") {
    auto out = flat({struct_pointer(0, 1, 1), 0, 0});
    std::fill(out.begin(), out.begin() + 4, 0xff);
    return out;
  }
  if (name == "out_of_range_pointer") return flat({struct_pointer(100000, 1, 1), 0, 0});
  if (name == "deep_nesting") {
    auto s = listen_with_extra_pointer();
    s[3] = struct_pointer(0, 0, 1);  // the unknown field: a chain of 100 one-pointer structs
    for (int i = 0; i < 100; ++i) s.push_back(i + 1 < 100 ? struct_pointer(0, 0, 1) : 0);
    return flat(s);
  }
  if (name == "zero_size_list") {
    auto s = listen_with_extra_pointer();
    s[3] = list_pointer(0, 0, (1u << 29) - 1);  // 2^29 - 1 Void elements, no bytes on the wire
    return flat(s);
  }
  if (name == "trailing_bytes") {
    auto out = encode(NodeMessage{Listen{}});
    out.insert(out.end(), 8, 0);
    return out;
  }
  return {};
}

std::vector<std::uint8_t> listen_payload() {
  return encode(NodeMessage{Listen{}});
}

std::vector<std::string> adversarial_flags(std::vector<std::string> extra) {
  // Out of the way unless `extra` sets it: the handshake rate, the per-source pending cap, and
  // the per-source and per-connection limits of issue 14 (the tests of those set their own).
  const std::vector<std::pair<std::string, std::string>> defaults{
      {"--handshake-rate", "100000"},
      {"--handshake-burst", "100000"},
      {"--max-pending-per-source", "1024"},
      {"--max-pending-per-prefix", "1024"},
      {"--max-connections-per-source", "100000"},
      {"--max-connections-per-prefix", "100000"},
      {"--max-listeners-per-source", "100000"},
      {"--max-pending-connects-per-source", "100000"},
      {"--max-pending-connects-per-target", "100000"},
      {"--connect-rate-per-source", "1000000"},
      {"--connect-burst-per-source", "1000000"},
      {"--control-rate", "1000000"},
      {"--control-burst", "1000000"}};
  std::vector<std::string> out;
  for (const auto& [flag, value] : defaults) {
    if (std::find(extra.begin(), extra.end(), flag) != extra.end()) continue;
    out.push_back(flag);
    out.push_back(value);
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

bool ended_with(const HostileClient::Reply& reply, CloseReason reason, bool or_eof) {
  using What = HostileClient::Reply::What;
  if (reply.what == What::closed) return reply.close_reason == reason;
  return or_eof && reply.what == What::eof;
}

}  // namespace strelay::test
