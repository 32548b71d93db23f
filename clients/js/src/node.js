// The library's API (docs/node-library.md, "The JavaScript library"; common/node.*): a Node
// listens on its relays, accepts its friends' streams, and connects to friends with failover
// over their relays.
//
// Events (Node extends EventTarget):
//   'relay'     detail {relay, state, retryInMs?, error?, rtt?}
//   'incoming'  detail {stream, relay}: a friend's stream, after the end-to-end handshake
//   'refused'   detail {peer, reason}: a stranger's connect, refused
//   'topicJoined'  detail {topic, relay, members, introduced}
//   'topicRefused' detail {topic, relay, reason, error?}: reason 'overloaded', 'rate_limited',
//                  'not_allowed', or 'unsupported' (a relay that predates topics)
//   'introduction' detail {topic, peer, relay, newcomer}: once per peer, topic and relay
//                  listener connection; newcomer: it answers this node's own join
import { StrelayError } from './errors.js';
import { ByteReader, tcp_carrier, websocket_carrier, default_websocket_url } from './carrier.js';
import { RelayLink, open_relay_channel, await_pairing, initiate, respond, with_deadline } from './relay_link.js';
import { Stream } from './stream.js';
import { Topics, checked_topic_name } from './node_topics.js';
import { checked_relay_ticket } from './tickets.js';
import { equal_bytes, is_valid_identity_key, publicKeyToString } from './keys.js';
import {
  end_to_end_domain, CloseReason, node_connect_timeout_ms, node_outcome_timeout_ms,
  handshake_deadline_ms, node_max_queued_streams,
} from './protocol.js';

// How much an attempt's error tells the user (common/node.cpp): the highest wins.
function telling(code, stage) {
  if (code === 'rejected') return 6;
  if (stage === 'end_to_end') return 5;
  if (['not_found', 'timeout', 'peer_gone'].includes(code)) return 4;
  if (stage === 'outcome') return 3;
  if (code !== 'relay_unreachable') return 2;
  return 1;
}

function as_strelay_error(e) {
  return e instanceof StrelayError ? e : new StrelayError('internal', String(e?.message ?? e));
}

const relay_id = (relay) => `${publicKeyToString(relay.publicKey)}@${relay.address}`;

export class Node extends EventTarget {
  // options: identity, relays (tickets), friends (keys, or a predicate), url(relay) -> the
  // WebSocket URL, carrier(relay) -> Promise<carrier> (overrides url), ws (options for the ws
  // package in Node, e.g. {ca}), timers: {connect_timeout_ms, outcome_timeout_ms,
  // handshake_timeout_ms, backoff: {initial_ms, cap_ms, stable_after_ms}, keepalive_ms,
  // dead_peer_ms, stream: {...}}.
  constructor({ identity, relays = [], friends = [], url, carrier, ws, timers = {} } = {}) {
    super();
    if (!identity || !is_valid_identity_key(identity.publicKey)) throw new TypeError('Node needs an identity');
    this.identity = identity;
    this.publicKey = identity.publicKey;
    this.#timers = {
      connect_timeout_ms: node_connect_timeout_ms, outcome_timeout_ms: node_outcome_timeout_ms,
      handshake_timeout_ms: handshake_deadline_ms, ...timers,
    };
    const make_url = url ?? ((relay) => default_websocket_url(relay.address));
    this.#make_carrier = carrier ?? ((relay) => websocket_carrier(make_url(relay), {
      ws_options: ws, timeout_ms: this.#timers.connect_timeout_ms,
    }));
    this.setRelays(relays);
    this.setFriends(friends);
  }

  #timers;
  #make_carrier;
  #relays = [];
  #is_friend = () => false;
  #links = new Map();  // relay id -> RelayLink
  #listening = false;
  #accepting = 0;
  #streams = new Set();
  #closed = false;
  #topics = new Topics();

  // The relays to listen on; while listening, links to relays no longer named are stopped and
  // new ones started (a relay still named keeps its connection).
  setRelays(relays) {
    this.#relays = relays.map(checked_relay_ticket);
    if (this.#listening) this.#sync_links();
  }

  // Who may connect: a list of keys, or a predicate (key) => boolean. Nobody by default.
  setFriends(friends) {
    if (typeof friends === 'function') {
      this.#is_friend = (key) => Boolean(friends(key));
    } else {
      const list = [...friends];
      this.#is_friend = (key) => list.some((friend) => equal_bytes(friend, key));
    }
  }

  listen() {
    if (this.#closed) throw new StrelayError('channel_closed', 'the node is closed');
    this.#listening = true;
    this.#sync_links();
  }

  // A stream to a friend: {publicKey, relays} (a friend ticket). Tries the relays in order;
  // rejects with the most telling StrelayError, whose .failures lists each relay's error.
  async connect(target) {
    if (this.#closed) throw new StrelayError('channel_closed', 'the node is closed');
    const peer = target?.publicKey;
    if (!is_valid_identity_key(peer)) throw new TypeError('connect() needs {publicKey, relays}');
    const relays = (target.relays ?? []).map(checked_relay_ticket);
    const failures = [];
    let best = null;
    let best_rank = 0;
    for (const relay of relays) {
      let stage = 'relay';
      try {
        const stream = await this.#connect_via(relay, peer, (s) => { stage = s; });
        return stream;
      } catch (e) {
        const error = as_strelay_error(e);
        failures.push({ relay, error });
        const rank = telling(error.code, stage);
        if (rank > best_rank) {
          best_rank = rank;
          best = error;
        }
        if (error.code === 'rejected') break;  // the peer said no: it would say it again
      }
    }
    const error = new StrelayError(best?.code ?? 'relay_unreachable',
        best ? best.message : 'no relay to try', { cause: best ?? undefined });
    error.failures = failures;
    throw error;
  }

  // Joins the topic `name` (1 to 256 bytes of UTF-8) on every relay the node listens on, with
  // each relay's blinded id (docs/protocol.md 4.9); a listener joins again after each ListenOk.
  // acceptIntroduced: a peer introduced on this topic may connect, as a friend may, for as long
  // as the node stays in it. Joining a topic again changes that option, and asks again the
  // relays that refused it.
  joinTopic(name, { acceptIntroduced = false } = {}) {
    if (this.#closed) throw new StrelayError('channel_closed', 'the node is closed');
    checked_topic_name(name);
    this.#topics.join(name, Boolean(acceptIntroduced));
    for (const link of this.#links.values()) link.join_topic(name);
  }

  // Leaves the topic on every relay and forgets who was introduced on it: those peers may no
  // longer connect (unless friends). Leaving a topic not joined does nothing.
  leaveTopic(name) {
    checked_topic_name(name);
    if (!this.#topics.leave(name)) return;
    for (const link of this.#links.values()) link.leave_topic(name);
  }

  // A stream to a peer of an 'introduction' event, through the relay that introduced it (the
  // ordinary connect and end-to-end handshake; the peer accepts if it opted in on the topic).
  connectIntroduced(introduction) {
    if (!is_valid_identity_key(introduction?.peer) || !introduction?.relay) {
      throw new TypeError("connectIntroduced() needs an 'introduction' event's detail {peer, relay}");
    }
    return this.connect({ publicKey: introduction.peer, relays: [introduction.relay] });
  }

  async close() {
    this.#closed = true;
    this.#listening = false;
    await Promise.all([...this.#links.values()].map((link) => link.stop()));
    this.#links.clear();
    await Promise.all([...this.#streams].map((stream) => stream.close()));
  }

  // ------------------------------------------------------------ internals

  async #connect_via(relay, peer, set_stage) {
    const hop = await open_relay_channel(relay, this.identity, { type: 'connect', target: peer }, {
      make_carrier: this.#make_carrier, timeout_ms: this.#timers.connect_timeout_ms,
    });
    try {
      set_stage('outcome');
      const paired = await with_deadline(await_pairing(hop), this.#timers.outcome_timeout_ms, 'timeout', () => hop.close());
      if (!equal_bytes(paired, peer)) throw new StrelayError('protocol_error', 'the relay paired us with another key');
      set_stage('end_to_end');
      const channel = await with_deadline(
          initiate(hop.carrier, hop.reader, { identity: this.identity, responder_key: peer,
                                              payload: new Uint8Array(0), domain: end_to_end_domain }),
          this.#timers.handshake_timeout_ms, 'timeout', () => hop.close());
      return this.#adopt(channel, relay);
    } catch (e) {
      hop.close();
      // Here the responder is the friend, not a relay: a wrong key is the peer's mismatch.
      if (e?.code === 'relay_identity_mismatch') throw new StrelayError('peer_identity_mismatch', 'the peer does not hold the key we dialled');
      throw e;
    }
  }

  #adopt(channel, relay) {
    const stream = new Stream(channel, this.#timers.stream);
    stream.relay = relay;
    this.#streams.add(stream);
    stream.addEventListener('close', () => this.#streams.delete(stream));
    return stream;
  }

  #sync_links() {
    const wanted = new Map(this.#relays.map((relay) => [relay_id(relay), relay]));
    this.#topics.keep_relays(new Set(wanted.keys()));
    for (const [id, link] of this.#links) {
      if (!wanted.has(id)) {
        link.stop();
        this.#links.delete(id);
      }
    }
    for (const [id, relay] of wanted) {
      if (this.#links.has(id)) continue;
      const link = new RelayLink(relay, this.identity, {
        make_carrier: this.#make_carrier,
        backoff: this.#timers.backoff,
        keepalive_ms: this.#timers.keepalive_ms,
        dead_peer_ms: this.#timers.dead_peer_ms,
        connect_timeout_ms: this.#timers.connect_timeout_ms,
        callbacks: {
          state: (state, extra = {}) => this.dispatchEvent(new CustomEvent('relay', { detail: { relay, state, ...extra } })),
          rtt: (rtt) => this.dispatchEvent(new CustomEvent('relay', { detail: { relay, state: 'connected', rtt } })),
          incoming: (from) => this.#incoming(relay, from),
          topics: () => this.#topics.names(),
          topic: (kind, name, detail) => this.#on_topic(relay, kind, name, detail),
          listener_lost: () => this.#topics.relay_lost(id),
        },
      });
      this.#links.set(id, link);
      link.start();
    }
  }

  // A link's topic answer. An introduction reaches the application once per peer, topic and
  // relay listener connection, never for a topic the node has left, nor of the node itself.
  #on_topic(relay, kind, name, detail) {
    if (!this.#topics.has(name)) return;
    if (kind === 'introduction') {
      if (equal_bytes(detail.peer, this.publicKey)) return;  // a relay that introduces us to us
      if (!this.#topics.introduce(name, relay_id(relay), detail.peer)) return;
    }
    this.dispatchEvent(new CustomEvent(kind, { detail: { topic: name, relay, ...detail } }));
  }

  // Who may connect: a friend, or a peer introduced on a topic joined with acceptIntroduced.
  #may_connect(key) {
    return this.#is_friend(key) || this.#topics.accepts(key);
  }

  #incoming(relay, from) {
    if (!this.#may_connect(from)) {
      this.dispatchEvent(new CustomEvent('refused', { detail: { peer: from, reason: 'not_allowed', relay } }));
      return 'reject';
    }
    // Bounded: beyond this many accepts in progress the connect stays pending at the relay,
    // whose TTL ends it (refused{timeout}); memory stays bounded whatever connectors do.
    if (this.#accepting >= node_max_queued_streams) return 'ignore';
    ++this.#accepting;
    this.#accept_via(relay, from).finally(() => { --this.#accepting; });
    return 'accept';
  }

  // Takes `from`'s pending connect on a new connection, then the end-to-end handshake as the
  // responder: the initiator must be `from` (announced by the relay twice) and a friend.
  async #accept_via(relay, from) {
    let hop = null;
    try {
      hop = await open_relay_channel(relay, this.identity, { type: 'accept', from }, {
        make_carrier: this.#make_carrier, timeout_ms: this.#timers.connect_timeout_ms,
      });
      const paired = await with_deadline(await_pairing(hop), this.#timers.connect_timeout_ms, 'timeout', () => hop.close());
      if (!equal_bytes(paired, from)) throw new StrelayError('protocol_error', 'the relay paired us with another key');
      const { channel, payload } = await with_deadline(
          respond(hop.carrier, hop.reader, { identity: this.identity, domain: end_to_end_domain }),
          this.#timers.handshake_timeout_ms, 'timeout', () => hop.close());
      let refusal = null;
      if (payload.length !== 0) refusal = ['protocol_error', CloseReason.protocol_error];
      else if (!equal_bytes(channel.peer, from)) refusal = ['peer_identity_mismatch', CloseReason.not_allowed];
      else if (!this.#may_connect(channel.peer)) refusal = ['not_allowed', CloseReason.not_allowed];
      if (refusal) {
        await channel.send_close(refusal[1]);
        channel.close();
        this.dispatchEvent(new CustomEvent('refused', { detail: { peer: channel.peer, reason: refusal[0], relay } }));
        return;
      }
      if (!this.#listening) {
        channel.close();
        return;
      }
      const stream = this.#adopt(channel, relay);
      this.dispatchEvent(new CustomEvent('incoming', { detail: { stream, relay } }));
    } catch (e) {
      hop?.close();
      this.dispatchEvent(new CustomEvent('accept_failed', { detail: { peer: from, relay, error: as_strelay_error(e) } }));
    }
  }
}
