// common/topic: a topic's blinded id for one relay (docs/protocol.md 4.9). A node never sends a
// topic's name: it sends BLAKE2b-256 keyed with the relay's public key over
// "strelay v1 topic" 0x00 name, so the same name is a different id on every relay.
#pragma once

#include <cstddef>
#include <string_view>

#include "common/keys.hpp"
#include "common/messages.hpp"

namespace strelay {

inline constexpr std::size_t max_topic_name_bytes = 256;
// The hashed context, with its 0x00 separator (17 bytes).
inline constexpr std::string_view topic_context{"strelay v1 topic\0", 17};

// Throws std::invalid_argument for a name of 0 or more than max_topic_name_bytes bytes.
TopicId topic_id(const PublicKey& relay, std::string_view name);

}  // namespace strelay
