// A topic's blinded id for one relay (docs/protocol.md 4.9), as common/topic.cpp computes it:
// BLAKE2b-256 keyed with the relay's public key over "strelay v1 topic" 0x00 name. A node never
// sends the name itself; the same name is a different id on every relay.
import { sodium } from './sodium.js';

export const max_topic_name_bytes = 256;
const context = new TextEncoder().encode('strelay v1 topic\0');

// name: a string (its UTF-8 bytes) or a Uint8Array, 1 to 256 bytes. relay_key: 32 bytes.
export function topic_id(relay_key, name) {
  const bytes = typeof name === 'string' ? new TextEncoder().encode(name) : name;
  if (!(bytes instanceof Uint8Array) || bytes.length === 0 || bytes.length > max_topic_name_bytes) {
    throw new TypeError('a topic name is 1 to 256 bytes');
  }
  if (!(relay_key instanceof Uint8Array) || relay_key.length !== 32) {
    throw new TypeError("a topic id needs the relay's 32-byte key");
  }
  const message = new Uint8Array(context.length + bytes.length);
  message.set(context, 0);
  message.set(bytes, context.length);
  return sodium().crypto_generichash(32, message, relay_key);
}
