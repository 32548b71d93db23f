#include "common/messages.hpp"

#include <capnp/any.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <array>
#include <optional>

#include "common/errors.hpp"
#include "relay.capnp.h"

namespace strelay {

namespace {

template <class T>
using Result = boost::system::result<T, std::error_code>;

constexpr std::size_t word_bytes = sizeof(capnp::word);
constexpr std::size_t max_message_words = max_control_message_bytes / word_bytes;
static_assert(max_control_message_bytes % word_bytes == 0);
// Our messages are a few words; a first segment this large means encode() never splits one.
constexpr unsigned encode_segment_words = 64;

static_assert(static_cast<std::uint16_t>(schema::RefuseReason::NOT_FOUND) ==
              static_cast<std::uint16_t>(RefuseReason::not_found));
static_assert(static_cast<std::uint16_t>(schema::RefuseReason::NOT_ALLOWED) ==
              static_cast<std::uint16_t>(RefuseReason::not_allowed));
constexpr std::uint16_t last_refuse_reason = static_cast<std::uint16_t>(RefuseReason::not_allowed);

std::error_code protocol_error() {
  return make_error_code(errc::protocol_error);
}

// The only place in strelay that sets ReaderOptions. Cap'n Proto's defaults (64 MiB of
// traversal, nesting 64) are made for trusted bulk data. Ours is a hostile peer's 4 KiB control
// message, so: a traversal limit of 2048 words (4x the largest message; it also catches
// "amplification", many pointers to the same bytes, and lists of 2^29 zero-size elements, which
// Cap'n Proto charges one word per element) and a nesting limit of 8 (our messages nest 2 deep;
// it also stops pointer cycles and deep recursion in validate_pointer below).
capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions options;
  options.traversalLimitInWords = capnp_traversal_limit_words;
  options.nestingLimit = capnp_nesting_limit;
  return options;
}

std::uint32_t load_le32(std::span<const std::uint8_t> bytes) {
  return static_cast<std::uint32_t>(bytes[0]) | static_cast<std::uint32_t>(bytes[1]) << 8 |
         static_cast<std::uint32_t>(bytes[2]) << 16 | static_cast<std::uint32_t>(bytes[3]) << 24;
}

void validate_struct(capnp::AnyStruct::Reader s);

// Follows every pointer of the message, known fields or not, under the reader limits: a bad
// pointer, a cycle, deep nesting or an amplified list anywhere throws kj::Exception here, so no
// hostile content hides in fields this version ignores. Recursion depth <= the nesting limit.
void validate_pointer(capnp::AnyPointer::Reader pointer) {
  switch (pointer.getPointerType()) {
    case capnp::PointerType::NULL_: return;
    case capnp::PointerType::STRUCT: validate_struct(pointer.getAs<capnp::AnyStruct>()); return;
    case capnp::PointerType::LIST: {
      const auto list = pointer.getAs<capnp::AnyList>();
      if (list.getElementSize() == capnp::ElementSize::POINTER) {
        for (auto element : list.as<capnp::List<capnp::AnyPointer>>()) validate_pointer(element);
      } else if (list.getElementSize() == capnp::ElementSize::INLINE_COMPOSITE) {
        for (auto element : list.as<capnp::List<capnp::AnyStruct>>()) validate_struct(element);
      }
      return;  // other element sizes are plain data
    }
    case capnp::PointerType::CAPABILITY: break;  // control messages carry no capabilities
  }
  KJ_FAIL_REQUIRE("unexpected capability pointer in a control message");
}

void validate_struct(capnp::AnyStruct::Reader s) {
  for (auto pointer : s.getPointerSection()) validate_pointer(pointer);
}

std::optional<PublicKey> read_key(capnp::Data::Reader data) {
  return PublicKey::from_bytes(std::span<const std::uint8_t>(data.begin(), data.size()));
}

// RejectConnection names a key the relay already holds (a pending connector's, which its own
// handshake authenticated), and the relay only compares it byte for byte: it needs 32 bytes,
// not the point check, so a flood of them costs a lookup, not a scalar multiplication each.
std::optional<PublicKey> read_key_bytes(capnp::Data::Reader data) {
  if (data.size() != key_bytes) return std::nullopt;
  std::array<std::uint8_t, key_bytes> raw{};
  std::copy(data.begin(), data.end(), raw.begin());
  return PublicKey(raw);
}

// An end-to-end msg1: exactly 32 bytes, or empty for none. It is only stored, forwarded and
// compared, so it needs no other check.
std::optional<std::optional<E2eMsg1>> read_msg1(capnp::Data::Reader data) {
  if (data.size() == 0) return std::optional<E2eMsg1>{};
  if (data.size() != handshake_msg1_bytes) return std::nullopt;
  E2eMsg1 raw{};
  std::copy(data.begin(), data.end(), raw.begin());
  return std::optional<E2eMsg1>{raw};
}

// A topic id: exactly 32 opaque bytes (the relay only compares them).
std::optional<TopicId> read_topic(capnp::Data::Reader data) {
  if (data.size() != std::tuple_size_v<TopicId>) return std::nullopt;
  TopicId raw{};
  std::copy(data.begin(), data.end(), raw.begin());
  return raw;
}

std::optional<RefuseReason> read_reason(schema::RefuseReason reason) {
  const auto raw = static_cast<std::uint16_t>(reason);
  if (raw > last_refuse_reason) return std::nullopt;  // an enumerant we do not know
  return static_cast<RefuseReason>(raw);
}

Result<NodeMessage> to_value(schema::NodeMessage::Reader root) {
  std::optional<PublicKey> key;
  switch (root.which()) {
    case schema::NodeMessage::LISTEN: return NodeMessage{Listen{root.getListen().getEarlyE2e()}};
    case schema::NodeMessage::CONNECT: {
      const auto m = root.getConnect();
      const auto msg1 = read_msg1(m.getE2eMsg1());
      if (msg1 && (key = read_key(m.getTarget()))) return NodeMessage{Connect{*key, *msg1}};
      return protocol_error();
    }
    case schema::NodeMessage::ACCEPT: {
      const auto m = root.getAccept();
      const auto msg1 = read_msg1(m.getE2eMsg1());
      if (msg1 && (key = read_key(m.getFrom()))) return NodeMessage{Accept{*key, *msg1}};
      return protocol_error();
    }
    case schema::NodeMessage::REJECT_CONNECTION:
      if ((key = read_key_bytes(root.getRejectConnection().getFrom()))) {
        return NodeMessage{RejectConnection{*key}};
      }
      return protocol_error();
    case schema::NodeMessage::STANDBY:
      (void)root.getStandby();  // only to check that it is a struct; it has no fields yet
      return NodeMessage{Standby{}};
    case schema::NodeMessage::JOIN_TOPIC:
      if (const auto topic = read_topic(root.getJoinTopic().getTopicId())) {
        return NodeMessage{JoinTopic{*topic}};
      }
      return protocol_error();
    case schema::NodeMessage::LEAVE_TOPIC:
      if (const auto topic = read_topic(root.getLeaveTopic().getTopicId())) {
        return NodeMessage{LeaveTopic{*topic}};
      }
      return protocol_error();
  }
  return protocol_error();  // a union member this version does not know
}

Result<RelayMessage> to_value(schema::RelayMessage::Reader root) {
  std::optional<PublicKey> key;
  switch (root.which()) {
    case schema::RelayMessage::LISTEN_OK:
      (void)root.getListenOk();  // only to check that it is a struct; it has no fields yet
      return RelayMessage{ListenOk{}};
    case schema::RelayMessage::INCOMING_CONNECTION: {
      const auto m = root.getIncomingConnection();
      const auto msg1 = read_msg1(m.getE2eMsg1());
      if (msg1 && (key = read_key(m.getFrom()))) {
        return RelayMessage{IncomingConnection{*key, *msg1}};
      }
      return protocol_error();
    }
    case schema::RelayMessage::CONNECTED: {
      const auto m = root.getConnected();
      if ((key = read_key(m.getPeer()))) return RelayMessage{Connected{*key, m.getEarlyE2e()}};
      return protocol_error();
    }
    case schema::RelayMessage::REFUSED: {
      if (const auto reason = read_reason(root.getRefused().getReason())) {
        return RelayMessage{Refused{*reason}};
      }
      return protocol_error();
    }
    case schema::RelayMessage::TOPIC_JOINED: {
      const auto m = root.getTopicJoined();
      const auto topic = read_topic(m.getTopicId());
      if (topic && m.getIntroduced() <= m.getMembers()) {
        return RelayMessage{TopicJoined{*topic, m.getMembers(), m.getIntroduced()}};
      }
      return protocol_error();
    }
    case schema::RelayMessage::INTRODUCTION: {
      const auto m = root.getIntroduction();
      const auto topic = read_topic(m.getTopicId());
      if (topic && (key = read_key(m.getPeer()))) return RelayMessage{Introduction{*topic, *key}};
      return protocol_error();
    }
    case schema::RelayMessage::TOPIC_REFUSED: {
      const auto m = root.getTopicRefused();
      const auto topic = read_topic(m.getTopicId());
      const auto reason = read_reason(m.getReason());
      if (topic && reason) return RelayMessage{TopicRefused{*topic, *reason}};
      return protocol_error();
    }
    case schema::RelayMessage::TOPIC_LEFT:
      if (const auto topic = read_topic(root.getTopicLeft().getTopicId())) {
        return RelayMessage{TopicLeft{*topic}};
      }
      return protocol_error();
  }
  return protocol_error();  // a union member this version does not know
}

// Every check that needs no parsing comes first, then one bounded copy into an aligned
// buffer on the stack (Cap'n Proto reads words in place), then the checked reader.
template <class Root, class Value>
Result<Value> decode(std::span<const std::uint8_t> bytes) {
  if (bytes.size() > max_control_message_bytes) return protocol_error();
  if (bytes.size() < word_bytes || bytes.size() % word_bytes != 0) return protocol_error();
  const std::size_t words = bytes.size() / word_bytes;
  // Header: (segment count - 1) as u32 LE, then each segment's size in words. Our messages
  // are tiny, so exactly one segment is required: no far-pointer games across segments, and
  // "no trailing bytes" is then one comparison.
  if (load_le32(bytes.subspan(0, 4)) != 0) return protocol_error();
  if (load_le32(bytes.subspan(4, 4)) != words - 1) return protocol_error();

  std::array<capnp::word, max_message_words> buffer;
  const auto aligned = kj::arrayPtr(buffer.data(), words);
  std::copy(bytes.begin(), bytes.end(), aligned.asBytes().begin());
  try {
    capnp::FlatArrayMessageReader reader(aligned, reader_options());
    if (reader.getEnd() != aligned.end()) return protocol_error();  // trailing bytes
    validate_pointer(reader.getRoot<capnp::AnyPointer>());
    return to_value(reader.getRoot<Root>());
  } catch (const kj::Exception&) {
    // Cap'n Proto reports malformed input as kj::Exception; the detail is the attacker's.
    return protocol_error();
  }
}

std::vector<std::uint8_t> to_bytes(capnp::MessageBuilder& builder) {
  const auto words = capnp::messageToFlatArray(builder);
  const auto bytes = words.asBytes();
  return {bytes.begin(), bytes.end()};
}

capnp::Data::Reader key_data(const PublicKey& key) {
  return {key.bytes().data(), key.bytes().size()};
}

capnp::Data::Reader msg1_data(const E2eMsg1& msg1) {
  return {msg1.data(), msg1.size()};
}

capnp::Data::Reader topic_data(const TopicId& topic) {
  return {topic.data(), topic.size()};
}

// A struct of exactly `data_words` and `pointers`, the smallest that holds the fields set, in
// a scratch message; the root's setX(reader) copies it at that size. initX() would write the
// schema's full size, so every Connect would grow by a null pointer and every Listen by a word
// of zeros: a message without the optional fields must stay byte for byte the old one.
template <class T>
typename T::Builder sized(capnp::MallocMessageBuilder& scratch, unsigned data_words,
                          unsigned pointers) {
  return scratch.getRoot<capnp::AnyPointer>()
      .initAsAnyStruct(static_cast<std::uint16_t>(data_words), static_cast<std::uint16_t>(pointers))
      .template as<T>();
}

// A struct whose first field is a key, then an optional msg1.
template <class T, class SetKey>
typename T::Reader keyed(capnp::MallocMessageBuilder& scratch, const PublicKey& key,
                         const std::optional<E2eMsg1>& msg1, SetKey set_key) {
  auto s = sized<T>(scratch, 0, msg1 ? 2 : 1);
  set_key(s, key_data(key));
  if (msg1) s.setE2eMsg1(msg1_data(*msg1));
  return s.asReader();
}

}  // namespace

std::vector<std::uint8_t> encode(const NodeMessage& message) {
  capnp::MallocMessageBuilder builder(encode_segment_words);
  capnp::MallocMessageBuilder scratch(encode_segment_words);
  auto root = builder.initRoot<schema::NodeMessage>();
  std::visit(
      [&root, &scratch](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, Listen>) {
          auto s = sized<schema::Listen>(scratch, m.early_e2e ? 1 : 0, 0);
          if (m.early_e2e) s.setEarlyE2e(true);
          root.setListen(s.asReader());
        }
        if constexpr (std::is_same_v<T, Connect>) {
          root.setConnect(keyed<schema::Connect>(scratch, m.target, m.e2e_msg1,
                                                 [](auto& s, auto key) { s.setTarget(key); }));
        }
        if constexpr (std::is_same_v<T, Accept>) {
          root.setAccept(keyed<schema::Accept>(scratch, m.from, m.e2e_msg1,
                                               [](auto& s, auto key) { s.setFrom(key); }));
        }
        if constexpr (std::is_same_v<T, RejectConnection>) {
          root.initRejectConnection().setFrom(key_data(m.from));
        }
        if constexpr (std::is_same_v<T, Standby>) root.initStandby();
        if constexpr (std::is_same_v<T, JoinTopic>) {
          root.initJoinTopic().setTopicId(topic_data(m.topic));
        }
        if constexpr (std::is_same_v<T, LeaveTopic>) {
          root.initLeaveTopic().setTopicId(topic_data(m.topic));
        }
      },
      message);
  return to_bytes(builder);
}

std::vector<std::uint8_t> encode(const RelayMessage& message) {
  capnp::MallocMessageBuilder builder(encode_segment_words);
  capnp::MallocMessageBuilder scratch(encode_segment_words);
  auto root = builder.initRoot<schema::RelayMessage>();
  std::visit(
      [&root, &scratch](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, ListenOk>) root.initListenOk();
        if constexpr (std::is_same_v<T, IncomingConnection>) {
          root.setIncomingConnection(keyed<schema::IncomingConnection>(
              scratch, m.from, m.e2e_msg1, [](auto& s, auto key) { s.setFrom(key); }));
        }
        if constexpr (std::is_same_v<T, Connected>) {
          auto s = sized<schema::Connected>(scratch, m.early_e2e ? 1 : 0, 1);
          s.setPeer(key_data(m.peer));
          if (m.early_e2e) s.setEarlyE2e(true);
          root.setConnected(s.asReader());
        }
        if constexpr (std::is_same_v<T, Refused>) {
          root.initRefused().setReason(static_cast<schema::RefuseReason>(m.reason));
        }
        if constexpr (std::is_same_v<T, TopicJoined>) {
          auto s = root.initTopicJoined();
          s.setTopicId(topic_data(m.topic));
          s.setMembers(m.members);
          s.setIntroduced(m.introduced);
        }
        if constexpr (std::is_same_v<T, Introduction>) {
          auto s = root.initIntroduction();
          s.setTopicId(topic_data(m.topic));
          s.setPeer(key_data(m.peer));
        }
        if constexpr (std::is_same_v<T, TopicRefused>) {
          auto s = root.initTopicRefused();
          s.setTopicId(topic_data(m.topic));
          s.setReason(static_cast<schema::RefuseReason>(m.reason));
        }
        if constexpr (std::is_same_v<T, TopicLeft>) {
          root.initTopicLeft().setTopicId(topic_data(m.topic));
        }
      },
      message);
  return to_bytes(builder);
}

boost::system::result<NodeMessage, std::error_code> try_decode_node_message(
    std::span<const std::uint8_t> bytes) {
  return decode<schema::NodeMessage, NodeMessage>(bytes);
}

boost::system::result<RelayMessage, std::error_code> try_decode_relay_message(
    std::span<const std::uint8_t> bytes) {
  return decode<schema::RelayMessage, RelayMessage>(bytes);
}

CloseReason close_reason_for(RefuseReason reason) {
  switch (reason) {
    case RefuseReason::not_found:
    case RefuseReason::rejected:
    case RefuseReason::no_pending:
      return CloseReason::normal;  // an answer, not a fault: the Refused says which
    case RefuseReason::timeout: return CloseReason::timeout;
    case RefuseReason::peer_gone: return CloseReason::peer_gone;
    case RefuseReason::rate_limited: return CloseReason::rate_limited;
    case RefuseReason::overloaded: return CloseReason::overloaded;
    case RefuseReason::not_allowed: return CloseReason::not_allowed;
  }
  return CloseReason::internal;
}

std::error_code to_error_code(RefuseReason reason) {
  switch (reason) {
    case RefuseReason::not_found: return errc::not_found;
    case RefuseReason::rejected: return errc::rejected;
    case RefuseReason::timeout: return errc::timeout;
    case RefuseReason::peer_gone: return errc::peer_gone;
    case RefuseReason::rate_limited: return errc::rate_limited;
    case RefuseReason::overloaded: return errc::overloaded;
    case RefuseReason::no_pending: return errc::no_pending;
    case RefuseReason::not_allowed: return errc::not_allowed;
  }
  return errc::protocol_error;
}

const char* to_string(RefuseReason reason) {
  switch (reason) {
    case RefuseReason::not_found: return "not_found";
    case RefuseReason::rejected: return "rejected";
    case RefuseReason::timeout: return "timeout";
    case RefuseReason::peer_gone: return "peer_gone";
    case RefuseReason::rate_limited: return "rate_limited";
    case RefuseReason::overloaded: return "overloaded";
    case RefuseReason::no_pending: return "no_pending";
    case RefuseReason::not_allowed: return "not_allowed";
  }
  return "unknown";
}

}  // namespace strelay
