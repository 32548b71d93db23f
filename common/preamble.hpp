// The preamble: the first 8 bytes a client sends, "strelay" || version.
//
// It lets a relay turn away what is not strelay (silently) and tell a client of another version
// which version it speaks (its own preamble, then close). The same 8 bytes start the Noise
// prologue of the handshake (common/handshake.hpp; end to end the label "end-to-end" follows
// them), so a preamble changed on the path breaks the handshake: a version downgrade cannot go
// unnoticed.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <system_error>

#include "common/protocol.hpp"

namespace strelay {

using Preamble = std::array<std::uint8_t, preamble_bytes>;

// "strelay" || version.
constexpr Preamble make_preamble(std::uint8_t version = protocol_version) {
  Preamble out{};
  for (std::size_t i = 0; i < preamble_magic.size(); ++i) out[i] = preamble_magic[i];
  out[preamble_magic.size()] = version;
  return out;
}

// What this build sends, and the start of the prologue of its handshakes.
inline constexpr Preamble current_preamble = make_preamble();

enum class PreambleStatus : std::uint8_t {
  ok,                   // strelay, our version
  bad_magic,            // not strelay at all
  unsupported_version,  // strelay, another version (see PreambleResult::version)
};

struct PreambleResult {
  PreambleStatus status = PreambleStatus::bad_magic;
  std::uint8_t version = 0;  // the version byte seen (meaningful unless bad_magic)

  // ok, errc::bad_magic or errc::unsupported_version.
  std::error_code error() const;
  friend bool operator==(const PreambleResult&, const PreambleResult&) = default;
};

PreambleResult parse_preamble(std::span<const std::uint8_t, preamble_bytes> bytes);

// What the relay does after reading a client's preamble.
enum class PreambleReply : std::uint8_t {
  proceed,                  // read msg1
  send_preamble_and_close,  // another version: send current_preamble, then close
  close_silently,           // not strelay: say nothing (do not help a scanner)
};
PreambleReply relay_reply_to(const PreambleResult& result);

// A client reads a 2-byte length before msg2. A relay of another version answers with its
// preamble instead; its first two bytes ("st" = 0x7374) can never announce msg2, whose length
// is always 112, so this tells the client to read 6 more bytes and parse a preamble.
constexpr bool starts_preamble_reply(std::span<const std::uint8_t, length_prefix_bytes> first) {
  return first[0] == preamble_magic[0] && first[1] == preamble_magic[1];
}

// A client that reads neither msg2's length nor a preamble reply has met another service at the
// relay's address (issue 20.4: reported as that, not as tampering). What answered, from its first
// bytes: errc::not_a_relay_http ("HTTP/"), not_a_relay_ssh ("SSH-"), not_a_relay_tls (a TLS
// alert or handshake record), else errc::not_a_relay. Compares as many bytes as are given.
std::error_code classify_foreign_reply(std::span<const std::uint8_t> first);

}  // namespace strelay
