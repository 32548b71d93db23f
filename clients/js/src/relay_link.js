// Hop connections to a relay (docs/protocol.md 2-4; common/relay_link.*): open a carrier, run
// the preamble and the handshake with the first request in msg3, then exchange frames. A
// RelayLink keeps one listener connection up, reconnecting with backoff.
import { ByteReader } from './carrier.js';
import { read_frame, read_length, with_length_prefix } from './frame.js';
import { create_preamble, preamble_version } from './preamble.js';
import { InitiatorHandshake, ResponderHandshake } from './handshake.js';
import { Transport, close_body } from './transport.js';
import { StrelayError } from './errors.js';
import { concat } from './noise.js';
import { equal_bytes } from './keys.js';
import { Backoff } from './backoff.js';
import { encode_node_message, decode_relay_message } from './messages.js';
import { topic_id } from './topic.js';
import { to_base64url } from './base64url.js';
import {
  FrameKind, CloseReason, close_reason_names, hop_domain, handshake_msg1_bytes,
  handshake_msg2_bytes, handshake_msg3_min_bytes, max_frame_bytes, preamble_bytes,
  protocol_version, node_connect_timeout_ms, keepalive_interval_ms, dead_peer_timeout_ms,
  ping_token_bytes,
} from './protocol.js';

// Runs `promise` under a deadline: at the deadline, on_timeout() (which closes the carrier, so
// the pending read ends) and a rejection with `code`.
export function with_deadline(promise, ms, code, on_timeout = () => {}) {
  let timer;
  const deadline = new Promise((_, reject) => {
    timer = setTimeout(() => {
      on_timeout();
      reject(new StrelayError(code, `no answer within ${ms} ms`));
    }, ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

// An authenticated connection: a carrier, its reader and the transport keys. Frames are sealed
// in call order and written in the same order (the nonces are implicit).
export class Channel {
  constructor(carrier, reader, transport, peer, session_id) {
    this.carrier = carrier;
    this.reader = reader;
    this.transport = transport;
    this.peer = peer;
    this.session_id = session_id;
    this.tail = Promise.resolve();
    this.closed = false;
  }

  send(kind, body) {
    let frame;
    try {
      frame = this.transport.seal(kind, body);
    } catch (e) {
      return Promise.reject(e);
    }
    const write = this.tail.then(() => this.carrier.write(frame));
    this.tail = write.catch(() => {});
    return write;
  }

  send_close(reason, detail = '') {
    if (this.transport.close_sent) return Promise.resolve();
    return this.send(FrameKind.close, close_body(reason, detail)).catch(() => {});
  }

  // The next message; an EOF without a close is `aborted`. A close comes back as a message.
  async receive() {
    const body = await read_frame(this.reader, (length) => this.transport.check_length(length));
    if (body === null) throw new StrelayError('aborted', 'the connection ended without a close');
    return this.transport.open(body);
  }

  close() {
    this.closed = true;
    this.carrier.close();
  }
}

// The error a node reports for a relay's close reason (common/relay_link.cpp).
export function relay_close_error(reason) {
  switch (reason) {
    case CloseReason.not_allowed: return 'not_allowed';
    case CloseReason.protocol_error: return 'protocol_error';
    case CloseReason.overloaded: return 'overloaded';
    case CloseReason.rate_limited: return 'rate_limited';
    case CloseReason.timeout: return 'timeout';
    case CloseReason.dead_peer:
    case CloseReason.peer_gone: return 'peer_gone';
    default: return 'channel_closed';  // normal, replaced, shutdown
  }
}

// The initiator's side of a handshake on a carrier (hop or end to end). Sends the preamble and
// msg1 at once, checks msg2 against responder_key (stopping before msg3 when it is not the
// key's holder), then sends msg3 with the payload. Returns a Channel.
export async function initiate(carrier, reader, { identity, responder_key, payload, domain }) {
  const handshake = new InitiatorHandshake({ identity, responder_key, domain });
  const preamble = create_preamble();
  await carrier.write(concat(preamble, with_length_prefix(handshake.create_msg1())));
  const prefix = await reader.read_exact(2);
  if (prefix === null) throw new StrelayError('relay_unreachable', 'closed before its handshake message');
  if (prefix[0] === 0x73 && prefix[1] === 0x74) {  // "st": the responder's own preamble
    const rest = await reader.read_exact(preamble_bytes - 2);
    const version = rest === null ? null : preamble_version(concat(prefix, rest));
    throw new StrelayError(version === null ? 'handshake_failed' : 'unsupported_version',
        version === null ? 'the handshake failed' : `the peer speaks protocol version ${version}, not ${protocol_version}`);
  }
  if (read_length(prefix) !== handshake_msg2_bytes) throw new StrelayError('handshake_failed', 'the handshake failed');
  const msg2 = await reader.read_exact(handshake_msg2_bytes);
  if (msg2 === null) throw new StrelayError('aborted', 'the connection ended inside the handshake');
  handshake.consume_msg2(msg2);  // throws relay_identity_mismatch: msg3 is never sent
  await carrier.write(with_length_prefix(handshake.create_msg3(payload)));
  const { send, receive, session_id } = handshake.split();
  return new Channel(carrier, reader, new Transport({ send, receive }), responder_key, session_id);
}

// The responder's side (end to end: the listener). Returns {channel, payload}.
export async function respond(carrier, reader, { identity, domain }) {
  const fail = () => new StrelayError('handshake_failed', 'the handshake failed');
  const preamble = await reader.read_exact(preamble_bytes);
  const version = preamble === null ? null : preamble_version(preamble);
  if (version === null) throw fail();
  if (version !== protocol_version) {
    await carrier.write(create_preamble()).catch(() => {});
    throw new StrelayError('unsupported_version', `the peer speaks protocol version ${version}`);
  }
  const handshake = new ResponderHandshake({ identity, domain, preamble });
  const msg1 = await read_frame(reader, (n) => { if (n !== handshake_msg1_bytes) throw fail(); });
  if (msg1 === null) throw fail();
  handshake.consume_msg1(msg1);
  await carrier.write(with_length_prefix(handshake.create_msg2()));
  const msg3 = await read_frame(reader, (n) => {
    if (n < handshake_msg3_min_bytes || n > max_frame_bytes) throw fail();
  });
  if (msg3 === null) throw fail();
  const payload = handshake.consume_msg3(msg3);
  const { send, receive, session_id } = handshake.split();
  return { channel: new Channel(carrier, reader, new Transport({ send, receive }), handshake.peer, session_id), payload };
}

// Opens a hop connection to `relay` with `request` (a node message) in msg3. Before msg2,
// any failure means the relay could not be reached (admission control closes without a word).
// `signal` (an AbortSignal) abandons the attempt at once: the carrier is closed.
export async function open_relay_channel(relay, identity, request, { make_carrier, timeout_ms = node_connect_timeout_ms, signal }) {
  let carrier = null;
  const aborted = () => new StrelayError('relay_unreachable', `${relay.address}: the attempt was abandoned`);
  if (signal?.aborted) throw aborted();
  const on_abort = () => carrier?.close();
  signal?.addEventListener('abort', on_abort);
  const attempt = (async () => {
    carrier = await make_carrier(relay);
    if (signal?.aborted) throw aborted();
    const reader = new ByteReader(carrier);
    return initiate(carrier, reader, {
      identity, responder_key: relay.publicKey, payload: encode_node_message(request), domain: hop_domain,
    });
  })();
  try {
    return await with_deadline(attempt, timeout_ms, 'relay_unreachable', () => carrier?.close());
  } catch (e) {
    carrier?.close();
    attempt.catch(() => {});
    const kept = ['relay_identity_mismatch', 'unsupported_version', 'handshake_failed'];
    if (e instanceof StrelayError && kept.includes(e.code)) throw e;
    throw new StrelayError('relay_unreachable', `${relay.address}: ${e.message}`, { cause: e });
  } finally {
    signal?.removeEventListener('abort', on_abort);
  }
}

// A connector's or acceptor's wait for its outcome: the peer's key on Connected, else the
// refusal as a StrelayError. Nothing is read past the Connected frame.
export async function await_pairing(channel) {
  for (;;) {
    const message = await channel.receive();
    if (message.kind === FrameKind.close) {
      throw new StrelayError(relay_close_error(message.close_reason), `the relay closed (${close_reason_names[message.close_reason]})`);
    }
    if (message.kind === FrameKind.ping || message.kind === FrameKind.pong) continue;
    if (message.kind !== FrameKind.control) throw new StrelayError('protocol_error', 'an unexpected frame');
    const decoded = decode_relay_message(message.body);
    if (decoded.type === 'connected') return decoded.peer;
    if (decoded.type === 'refused') throw new StrelayError(decoded.reason, `the relay refused: ${decoded.reason}`);
    throw new StrelayError('protocol_error', `an unexpected ${decoded.type}`);
  }
}

// The relay answers that concern topics (docs/protocol.md 4.9).
const topic_answers = new Set(['topicJoined', 'introduction', 'topicRefused', 'topicLeft']);

// One relay's listener connection, kept up with backoff. callbacks: state(state, extra),
// incoming(from) -> 'accept' | 'reject' | 'ignore', rtt(ms), topics() -> the names to join
// after each ListenOk, topic(kind, name, detail) for 'topicJoined' {members, introduced},
// 'topicRefused' {reason, error?} and 'introduction' {peer, newcomer}, listener_lost() when a
// listener connection that had ListenOk ends.
export class RelayLink {
  constructor(relay, identity, { make_carrier, callbacks, backoff = {}, random,
                                 keepalive_ms = keepalive_interval_ms, dead_peer_ms = dead_peer_timeout_ms,
                                 connect_timeout_ms = node_connect_timeout_ms }) {
    this.relay = relay;
    this.identity = identity;
    this.make_carrier = make_carrier;
    this.callbacks = callbacks;
    this.backoff = new Backoff(backoff, random);
    this.keepalive_ms = keepalive_ms;
    this.dead_peer_ms = dead_peer_ms;
    this.connect_timeout_ms = connect_timeout_ms;
    this.stopped = false;
    this.channel = null;
    this.sleep_timer = null;
    this.wake_sleep = null;
    this.rtt = null;
    this.abort = new AbortController();  // stop() abandons a connection attempt in progress
    this.listening = false;              // between ListenOk and the connection's end
    // This connection's topics: topic id (base64url) -> {name, state, answering}, state
    // 'joining', 'joined' or 'refused'; answering: introductions still due for our own join.
    // Answers and introductions for any other id are ignored.
    this.topic_states = new Map();
    // The relay closed the listener on joinTopic (it predates topics): it is not asked again
    // for as long as this link lives.
    this.topics_unsupported = null;
  }

  start() {
    this.done = this.#run();
  }

  async stop() {
    this.stopped = true;
    this.abort.abort();
    this.channel?.close();
    clearTimeout(this.sleep_timer);
    this.wake_sleep?.();
    await this.done;
  }

  // Refuses every pending connect from `from` on the listener connection.
  reject(from) {
    this.channel?.send(FrameKind.control, encode_node_message({ type: 'rejectConnection', from })).catch(() => {});
  }

  // Joins `name` now when listening (unless it is joined or being joined on this connection);
  // otherwise the next ListenOk joins it with the others.
  join_topic(name) {
    if (this.topics_unsupported) {
      const error = this.topics_unsupported;
      queueMicrotask(() => this.callbacks.topic?.('topicRefused', name, { reason: 'unsupported', error }));
      return;
    }
    if (!this.listening) return;
    const state = this.topic_states.get(this.#topic_key(name))?.state;
    if (state !== 'joining' && state !== 'joined') this.#send_join(this.channel, name);
  }

  // Leaves `name` on this connection (forgetting it at once: what the relay still sends for it
  // is ignored); the next connection does not join it.
  leave_topic(name) {
    const id = topic_id(this.relay.publicKey, name);
    if (!this.topic_states.delete(to_base64url(id)) || !this.listening) return;
    this.channel.send(FrameKind.control, encode_node_message({ type: 'leaveTopic', topicId: id })).catch(() => {});
  }

  #topic_key(name) {
    return to_base64url(topic_id(this.relay.publicKey, name));
  }

  #send_join(channel, name) {
    const id = topic_id(this.relay.publicKey, name);
    this.topic_states.set(to_base64url(id), { name, state: 'joining', answering: 0 });
    channel.send(FrameKind.control, encode_node_message({ type: 'joinTopic', topicId: id })).catch(() => {});
  }

  // An answer about a topic. The relay answers joins in order, so the last answer is the state;
  // the application hears of a change, and of introductions only while joined. A TopicJoined is
  // followed at once by the `introduced` introductions that answer our join (we are the
  // newcomer); later ones are members who joined after us.
  #on_topic_answer(message) {
    const entry = this.topic_states.get(to_base64url(message.topicId));
    if (!entry) return;  // not joined here (or left): never reaches the application
    if (message.type === 'topicJoined') {
      entry.answering = message.introduced;
      if (entry.state === 'joined') return;
      entry.state = 'joined';
      this.callbacks.topic?.('topicJoined', entry.name, { members: message.members, introduced: message.introduced });
    } else if (message.type === 'topicRefused' && entry.state !== 'refused') {
      entry.state = 'refused';
      this.callbacks.topic?.('topicRefused', entry.name, { reason: message.reason });
    } else if (message.type === 'introduction' && entry.state === 'joined') {
      const newcomer = entry.answering > 0;
      if (newcomer) --entry.answering;
      this.callbacks.topic?.('introduction', entry.name, { peer: message.peer, newcomer });
    }
    // topicLeft answers a leave: that topic is forgotten already, or joined again since.
  }

  // A relay that closes with protocol_error while a join is unanswered predates topics
  // (docs/protocol.md 4.9, "Evolution"): each topic waiting is refused as 'unsupported', and
  // the link listens again without topics.
  #topics_refused_by_old_relay() {
    const waiting = [...this.topic_states.values()].filter((entry) => entry.state === 'joining');
    if (waiting.length === 0) return null;
    const error = new StrelayError('topics_unsupported',
        `${this.relay.address}: this relay does not support topics (it closed the listener on joinTopic); listening without them`);
    this.topics_unsupported = error;
    for (const entry of waiting) this.callbacks.topic?.('topicRefused', entry.name, { reason: 'unsupported', error });
    return error;
  }

  async #run() {
    while (!this.stopped) {
      this.callbacks.state('connecting');
      let up_since = null;
      let error;
      try {
        await this.#listen_once(() => { up_since = Date.now(); });
      } catch (e) {
        error = e instanceof StrelayError ? e : new StrelayError('internal', String(e?.message ?? e));
      }
      if (up_since !== null) this.backoff.connection_ended(Date.now() - up_since);
      if (this.stopped) break;
      const delay = this.backoff.next_delay();
      this.callbacks.state(state_for(error), { retryInMs: delay, error });
      await new Promise((resolve) => {
        this.wake_sleep = resolve;
        this.sleep_timer = setTimeout(resolve, delay);
      });
    }
    this.callbacks.state('closed');
  }

  async #listen_once(on_up) {
    const channel = await open_relay_channel(this.relay, this.identity, { type: 'listen' },
                                             { make_carrier: this.make_carrier, timeout_ms: this.connect_timeout_ms,
                                               signal: this.abort.signal });
    if (this.stopped) {
      channel.close();
      return;
    }
    this.channel = channel;
    this.topic_states.clear();
    try {
      const first = await with_deadline(this.#receive_listen_ok(channel), this.connect_timeout_ms, 'relay_unreachable', () => channel.close());
      if (first) {
        on_up();
        // A new listener joins every topic again: the relay dropped them with the old one.
        this.listening = true;
        if (!this.topics_unsupported) for (const name of this.callbacks.topics?.() ?? []) this.#send_join(channel, name);
        this.callbacks.state('connected');
        await this.#serve(channel);
      }
    } finally {
      if (this.listening) this.callbacks.listener_lost?.();
      this.listening = false;
      this.topic_states.clear();
      channel.close();
      this.channel = null;
    }
  }

  async #receive_listen_ok(channel) {
    for (;;) {
      const message = await channel.receive();
      if (message.kind === FrameKind.ping) {
        await channel.send(FrameKind.pong, message.body);
        continue;
      }
      if (message.kind === FrameKind.close) throw new StrelayError(relay_close_error(message.close_reason), `the relay closed (${close_reason_names[message.close_reason]})`);
      if (message.kind !== FrameKind.control) throw new StrelayError('protocol_error', 'an unexpected frame');
      const decoded = decode_relay_message(message.body);
      if (decoded.type === 'listenOk') return true;
      if (decoded.type === 'refused') throw new StrelayError(decoded.reason, `the relay refused: ${decoded.reason}`);
      throw new StrelayError('protocol_error', `an unexpected ${decoded.type}`);
    }
  }

  // The listener's life: answer pings, ping after silence, give up after dead_peer_ms, and
  // hand IncomingConnection to the node.
  async #serve(channel) {
    let last_received = Date.now();
    let ping_sent_at = null;
    let token = 0n;
    let outstanding = null;
    let dead = false;
    const tick = () => {
      const now = Date.now();
      if (now - last_received >= this.dead_peer_ms) {
        dead = true;
        channel.send_close(CloseReason.dead_peer).finally(() => channel.close());
        return;
      }
      const since = Math.max(last_received, ping_sent_at ?? 0);
      if (now - since >= this.keepalive_ms) {
        ping_sent_at = now;
        const bytes = new Uint8Array(ping_token_bytes);
        new DataView(bytes.buffer).setBigUint64(0, ++token);
        outstanding = { bytes, at: now };
        channel.send(FrameKind.ping, bytes).catch(() => {});
      }
      timer = setTimeout(tick, Math.min(this.keepalive_ms, this.dead_peer_ms) / 4);
    };
    let timer = setTimeout(tick, Math.min(this.keepalive_ms, this.dead_peer_ms) / 4);
    try {
      for (;;) {
        let message;
        try {
          message = await channel.receive();
        } catch (e) {
          if (dead) throw new StrelayError('peer_gone', 'the relay stopped answering');
          throw e;
        }
        last_received = Date.now();
        if (message.kind === FrameKind.close) {
          const old_relay = message.close_reason === CloseReason.protocol_error ? this.#topics_refused_by_old_relay() : null;
          if (old_relay) throw old_relay;
          throw new StrelayError(relay_close_error(message.close_reason), `the relay closed (${close_reason_names[message.close_reason]})`);
        } else if (message.kind === FrameKind.ping) {
          channel.send(FrameKind.pong, message.body).catch(() => {});
        } else if (message.kind === FrameKind.pong) {
          if (outstanding && equal_bytes(outstanding.bytes, message.body)) {
            this.rtt = Date.now() - outstanding.at;
            outstanding = null;
            this.callbacks.rtt?.(this.rtt);
          }
        } else if (message.kind === FrameKind.control) {
          const decoded = decode_relay_message(message.body);
          if (topic_answers.has(decoded.type)) {
            this.#on_topic_answer(decoded);
            continue;
          }
          if (decoded.type !== 'incomingConnection') throw new StrelayError('protocol_error', `an unexpected ${decoded.type}`);
          if (this.callbacks.incoming(decoded.from) === 'reject') this.reject(decoded.from);
        } else {
          throw new StrelayError('protocol_error', 'an unexpected frame');
        }
      }
    } catch (e) {
      if (e.code === 'protocol_error') await channel.send_close(CloseReason.protocol_error);
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }
}

function state_for(error) {
  switch (error?.code) {
    case 'relay_identity_mismatch': return 'identity_mismatch';
    case 'relay_unreachable': return 'unreachable';
    case 'not_allowed':
    case 'rate_limited':
    case 'overloaded': return 'refused';
    default: return 'retrying';
  }
}

