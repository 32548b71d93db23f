// The node's topics (docs/protocol.md 4.9; docs/node-library.md "Topics in the JavaScript
// library"): which names the application joined, whether it opted in to the friend rule for
// each, and which peers each relay introduced on each. Sans-io: node.js wires it to the links
// (which send the blinded ids) and to the events.
import { to_base64url } from './base64url.js';
import { max_topic_name_bytes } from './topic.js';

// Per topic and relay, the introduced peers remembered (for the once-only delivery and the
// opt-in friend rule); beyond it the one introduced longest ago is forgotten. A relay admits
// 1024 members a topic, so only churn over a long stay reaches it.
export const max_remembered_introductions = 4096;

// The name as the library takes it: a string whose UTF-8 form is 1 to 256 bytes. A lone
// surrogate is refused rather than silently turned into U+FFFD, which would make two different
// strings the same topic.
export function checked_topic_name(name) {
  if (typeof name !== 'string') throw new TypeError('a topic name is a string');
  if (typeof name.isWellFormed === 'function' && !name.isWellFormed()) {
    throw new TypeError('a topic name must be well-formed Unicode text (it has a lone surrogate)');
  }
  const bytes = new TextEncoder().encode(name).length;
  if (bytes === 0 || bytes > max_topic_name_bytes) {
    throw new TypeError(`a topic name is 1 to ${max_topic_name_bytes} bytes of UTF-8, not ${bytes}`);
  }
  return name;
}

export class Topics {
  // name -> {accept_introduced, introduced: Map(relay id -> Map(key text -> {peer, delivered}))},
  // each relay's peers in the order of their last introduction. `delivered`: the application
  // heard of it on the relay's current listener connection.
  #joined = new Map();

  // Joins, or changes the friend rule of a topic already joined (its introductions are kept).
  join(name, accept_introduced) {
    const topic = this.#joined.get(name);
    if (topic) topic.accept_introduced = accept_introduced;
    else this.#joined.set(name, { accept_introduced, introduced: new Map() });
  }

  // Forgets the topic and everything introduced on it; false when it was not joined.
  leave(name) {
    return this.#joined.delete(name);
  }

  has(name) {
    return this.#joined.has(name);
  }

  names() {
    return [...this.#joined.keys()];
  }

  // An introduction of `peer` on `name` by the relay `relay_id`: true when the application is
  // to hear of it, false when the topic is not joined or the peer was introduced there on this
  // listener connection already (a relay introduces each pair once per join; a new listener
  // joins again, and its introductions are news, as in the C++ node).
  introduce(name, relay_id, peer) {
    const topic = this.#joined.get(name);
    if (!topic) return false;
    let peers = topic.introduced.get(relay_id);
    if (!peers) {
      peers = new Map();
      topic.introduced.set(relay_id, peers);
    }
    const key = to_base64url(peer);
    if (peers.get(key)?.delivered) return false;
    peers.delete(key);  // to the newest end
    if (peers.size >= max_remembered_introductions) peers.delete(peers.keys().next().value);
    peers.set(key, { peer, delivered: true });
    return true;
  }

  // The relay's listener connection ended: the relay forgot our memberships, and the next
  // listener's introductions are news. The peers stay accepted (opt-in) while the node is in
  // the topic.
  relay_lost(relay_id) {
    for (const topic of this.#joined.values()) {
      for (const entry of topic.introduced.get(relay_id)?.values() ?? []) entry.delivered = false;
    }
  }

  // Whether `peer` may connect by the opt-in rule: it was introduced on a topic the node is in
  // and joined with acceptIntroduced (on any of the node's relays: the key is what the
  // end-to-end handshake authenticates, as for a friend).
  accepts(peer) {
    const key = to_base64url(peer);
    for (const topic of this.#joined.values()) {
      if (!topic.accept_introduced) continue;
      for (const peers of topic.introduced.values()) {
        if (peers.has(key)) return true;
      }
    }
    return false;
  }

  // Drops what relays no longer used introduced (setRelays): their ids leave no trace.
  keep_relays(relay_ids) {
    for (const topic of this.#joined.values()) {
      for (const id of topic.introduced.keys()) {
        if (!relay_ids.has(id)) topic.introduced.delete(id);
      }
    }
  }
}
