#include "common/topic.hpp"

#include <sodium.h>

#include <stdexcept>
#include <vector>

namespace strelay {

TopicId topic_id(const PublicKey& relay, std::string_view name) {
  if (name.empty() || name.size() > max_topic_name_bytes) {
    throw std::invalid_argument("a topic name is 1 to 256 bytes");
  }
  std::vector<unsigned char> message(topic_context.begin(), topic_context.end());
  message.insert(message.end(), name.begin(), name.end());
  TopicId id{};
  crypto_generichash(id.data(), id.size(), message.data(), message.size(), relay.bytes().data(),
                     relay.bytes().size());
  return id;
}

}  // namespace strelay
