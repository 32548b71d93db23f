// Control messages (docs/protocol.md 4; schema/relay.capnp), the one place where they become
// bytes and back, like common/messages.cpp.
//
// A hand-written Cap'n Proto codec for these fifteen small messages, rather than an npm package:
// the maintained JavaScript ports need generated code and do not apply the reader limits the
// protocol fixes (a traversal limit of 2048 words, nesting 8, every pointer followed in unknown
// fields too). The encoder writes exactly what `capnp encode` writes (for the schema before the
// optional end-to-end fields when they are unset, docs/protocol.md 4.2); the decoder refuses what
// the C++ decoder (capnp's reader with those options) refuses. test/messages.test.js checks
// both, byte for byte, against `capnp encode` and the seeds of fuzz/corpus/messages.
import {
  max_control_message_bytes, capnp_traversal_limit_words, capnp_nesting_limit, key_bytes,
  handshake_msg1_bytes,
} from './protocol.js';
import { is_valid_identity_key } from './keys.js';
import { StrelayError } from './errors.js';

// Union member numbers (the schema's @n), for both directions.
export const NodeMessageKind = Object.freeze({
  listen: 0, connect: 1, accept: 2, rejectConnection: 3, standby: 4, joinTopic: 5, leaveTopic: 6,
});
export const RelayMessageKind = Object.freeze({
  listenOk: 0, incomingConnection: 1, connected: 2, refused: 3, topicJoined: 4, introduction: 5,
  topicRefused: 6, topicLeft: 7,
});
// A topic id (docs/protocol.md 4.9): 32 opaque bytes.
export const topic_id_bytes = 32;
// RefuseReason enumerants, with the name of the node's error for each (4.7).
export const refuse_reasons = Object.freeze([
  'not_found', 'rejected', 'timeout', 'peer_gone', 'rate_limited', 'overloaded', 'no_pending', 'not_allowed',
]);
// The field of each union member's struct that holds a key (pointer 0), or null.
const node_key_field = ['', 'target', 'from', 'from', '', '', ''];
const relay_key_field = ['', 'from', 'peer', '', '', '', '', ''];
// The topic messages: the topic id is pointer 0 of each.
const node_topic_types = new Set(['joinTopic', 'leaveTopic']);
const relay_topic_types = new Set(['topicJoined', 'introduction', 'topicRefused', 'topicLeft']);
const node_names = Object.keys(NodeMessageKind);
const relay_names = Object.keys(RelayMessageKind);

// ---------------------------------------------------------------- encoding

// The root struct (1 data word: the union's discriminant; 1 pointer: the member's struct),
// then the member struct, then its key: the order in which capnp's builder allocates them.
function encode_message(discriminant, member) {
  const words = 2 + member.length / 8;  // root pointer, root data, then the member from the root's pointer
  const out = new Uint8Array(8 + words * 8);
  const view = new DataView(out.buffer);
  view.setUint32(4, words, true);             // segment count - 1 = 0, then the segment's size
  view.setUint32(12, 0x00010001, true);       // root: struct at offset 0, 1 data word, 1 pointer
  view.setUint16(16, discriminant, true);
  out.set(member, 24);
  return out;
}

// A member struct with no fields: capnp points to it with offset -1 (a non-null pointer to
// zero words).
function empty_member() {
  return Uint8Array.of(0xfc, 0xff, 0xff, 0xff, 0, 0, 0, 0);
}

// A member struct (its pointer first): `data_words` data words (zeros but for `data`'s bytes),
// then one pointer per Data field of `lists`, then each field's bytes in order. This is the
// smallest size that holds the fields set, as common/messages.cpp writes: a message without
// the optional fields stays byte for byte the older one.
function member_struct(data_words, data, lists) {
  const list_words = lists.map((l) => Math.ceil(l.length / 8));
  const total = 1 + data_words + lists.length + list_words.reduce((a, b) => a + b, 0);
  const out = new Uint8Array(total * 8);
  const view = new DataView(out.buffer);
  view.setUint32(4, data_words | (lists.length << 16), true);  // struct at offset 0
  out.set(data, 8);
  let next = data_words + lists.length;  // words after the struct pointer
  lists.forEach((list, i) => {
    const at = data_words + i;  // this pointer's word, after the struct pointer
    view.setUint32(8 + at * 8, 1 | ((next - at - 1) << 2), true);  // list at that offset
    view.setUint32(12 + at * 8, (list.length << 3) | 2, true);     // of bytes
    out.set(list, 8 + next * 8);
    next += list_words[i];
  });
  return out;
}

// A member struct with a key (pointer 0) and, when given, an e2eMsg1 (pointer 1).
function key_member(key, e2e_msg1) {
  return member_struct(0, [], e2e_msg1 === undefined ? [key] : [key, check_msg1(e2e_msg1)]);
}

// A member struct with one 16-bit field in one data word (Refused.reason).
function u16_member(value) {
  return member_struct(1, Uint8Array.of(value & 0xff, value >> 8), []);
}

// Listen{earlyE2e}, Connected{peer, earlyE2e}: the flag is bit 0 of data word 0, written only
// when set.
function flag_member(flag, lists) {
  return flag ? member_struct(1, Uint8Array.of(1), lists) : member_struct(0, [], lists);
}

function check_msg1(msg1) {
  if (!(msg1 instanceof Uint8Array) || msg1.length !== handshake_msg1_bytes) {
    throw new TypeError('an e2eMsg1 must be 32 bytes');
  }
  return msg1;
}

function check_topic(topic) {
  if (!(topic instanceof Uint8Array) || topic.length !== topic_id_bytes) {
    throw new TypeError('a topic id must be 32 bytes');
  }
  return topic;
}

function refuse_reason_number(reason) {
  const n = refuse_reasons.indexOf(reason);
  if (n < 0) throw new TypeError(`unknown refuse reason ${reason}`);
  return n;
}

// TopicJoined, Introduction, TopicRefused, TopicLeft: written at the schema's full size, as
// the C++ encoder's initX() writes them (they have no older, smaller form to stay equal to).
function relay_topic_member(message) {
  const topic = check_topic(message.topicId);
  if (message.type === 'topicJoined') {
    const data = new Uint8Array(8);
    const view = new DataView(data.buffer);
    view.setUint32(0, message.members, true);
    view.setUint32(4, message.introduced, true);
    return member_struct(1, data, [topic]);
  }
  if (message.type === 'introduction') return member_struct(0, [], [topic, check_key(message.peer)]);
  if (message.type === 'topicRefused') {
    const reason = refuse_reason_number(message.reason);
    return member_struct(1, Uint8Array.of(reason & 0xff, reason >> 8), [topic]);
  }
  return member_struct(0, [], [topic]);
}

function check_key(key) {
  if (!is_valid_identity_key(key)) throw new TypeError('a control message key must be a valid 32-byte identity');
  return key;
}

// message: {type: 'listen', earlyE2e?} | {type: 'connect', target, e2eMsg1?} |
//          {type: 'accept', from, e2eMsg1?} | {type: 'rejectConnection', from} | {type: 'standby'}
//          | {type: 'joinTopic', topicId} | {type: 'leaveTopic', topicId}
// (docs/protocol.md 4.4, "The end-to-end msg1 with connect": earlyE2e is a boolean, e2eMsg1 32
// bytes; 4.9: a topicId is 32 bytes.)
export function encode_node_message(message) {
  const kind = NodeMessageKind[message.type];
  if (kind === undefined) throw new TypeError(`unknown node message ${message.type}`);
  if (message.type === 'listen' && message.earlyE2e) return encode_message(kind, flag_member(true, []));
  if (node_topic_types.has(message.type)) {
    return encode_message(kind, member_struct(0, [], [check_topic(message.topicId)]));
  }
  if (message.type === 'connect' || message.type === 'accept') {
    const key = check_key(message[node_key_field[kind]]);
    return encode_message(kind, key_member(key, message.e2eMsg1));
  }
  const field = node_key_field[kind];
  return encode_message(kind, field ? key_member(check_key(message[field])) : empty_member());
}

// message: {type: 'listenOk'} | {type: 'incomingConnection', from, e2eMsg1?} |
//          {type: 'connected', peer, earlyE2e?} | {type: 'refused', reason: 'not_found' | ...}
//          | {type: 'topicJoined', topicId, members, introduced} | {type: 'introduction', topicId, peer}
//          | {type: 'topicRefused', topicId, reason} | {type: 'topicLeft', topicId}
export function encode_relay_message(message) {
  const kind = RelayMessageKind[message.type];
  if (kind === undefined) throw new TypeError(`unknown relay message ${message.type}`);
  if (relay_topic_types.has(message.type)) return encode_message(kind, relay_topic_member(message));
  if (message.type === 'incomingConnection') {
    return encode_message(kind, key_member(check_key(message.from), message.e2eMsg1));
  }
  if (message.type === 'connected') {
    return encode_message(kind, flag_member(message.earlyE2e, [check_key(message.peer)]));
  }
  if (message.type === 'refused') return encode_message(kind, u16_member(refuse_reason_number(message.reason)));
  const field = relay_key_field[kind];
  return encode_message(kind, field ? key_member(check_key(message[field])) : empty_member());
}

// ---------------------------------------------------------------- decoding

class Refusal extends Error {}
function require(condition) {
  if (!condition) throw new Refusal();
}

// Cap'n Proto's reader over one segment, with its limits: every object read is charged to the
// traversal budget (so pointers aimed many times at the same bytes run it out), a zero-size
// struct one word, a list of zero-size elements one word per element, and each struct or list
// level uses one unit of the nesting limit. Objects of zero words are not bounds-checked (they
// read nothing). These rules were checked against the C++ decoder (capnp 0.9's reader) on
// hostile messages at each limit; test/messages.test.js keeps those cases.
class SegmentReader {
  constructor(words_view, word_count) {
    this.view = words_view;  // DataView over the segment (the message after its header)
    this.words = word_count;
    this.budget = capnp_traversal_limit_words;
  }

  charge(words) {
    require(words <= this.budget);
    this.budget -= words;
  }

  // Charges an object of `size` words at word `start` after checking its bounds.
  check_object(start, size) {
    require(start >= 0 && start <= this.words && this.words - start >= size);
    this.charge(size);
  }

  lo(index) { return this.view.getUint32(index * 8, true); }
  hi(index) { return this.view.getUint32(index * 8 + 4, true); }
  is_null(index) { return this.lo(index) === 0 && this.hi(index) === 0; }

  // Follows a far pointer (type 2) to its landing pad: returns {ref, target}, where ref is
  // the word index whose bits describe the object and target is the object's first word.
  resolve(index) {
    const lo = this.lo(index);
    if ((lo & 3) !== 2) return { ref: index, target: index + 1 + (lo >> 2), tag: null };
    require(this.hi(index) === 0);  // segment 0: the only segment
    const pad = lo >>> 3;
    const double_far = (lo & 4) !== 0;
    this.check_object(pad, double_far ? 2 : 1);
    if (!double_far) {
      const pad_lo = this.lo(pad);
      require((pad_lo & 3) !== 2);
      return { ref: pad, target: pad + 1 + (pad_lo >> 2) };
    }
    const pad_lo = this.lo(pad);
    require((pad_lo & 7) === 2 && this.hi(pad) === 0);  // a single far pointer into segment 0
    return { ref: pad + 1, target: pad_lo >>> 3 };
  }

  kind_of(ref) { return this.lo(ref) & 3; }

  // Reads a struct pointer: {data, data_words, pointers, pointer_count, nesting} or a default
  // empty struct for a null pointer.
  read_struct(index, nesting) {
    if (this.is_null(index)) return { data: 0, data_words: 0, pointers: 0, pointer_count: 0, nesting };
    require(nesting > 0);
    const { ref, target } = this.resolve(index);
    require(this.kind_of(ref) === 0);
    const data_words = this.hi(ref) & 0xffff;
    const pointer_count = this.hi(ref) >>> 16;
    if (data_words + pointer_count === 0) {
      this.charge(1);  // a zero-size struct is not bounds-checked, but costs a word (capnp)
    } else {
      this.check_object(target, data_words + pointer_count);
    }
    return { data: target, data_words, pointers: target + data_words, pointer_count, nesting: nesting - 1 };
  }

  // Reads a list pointer: {start, element_size, count, words_per_element, struct_data_words,
  // struct_pointer_count, nesting}, or null for a null pointer.
  read_list(index, nesting) {
    if (this.is_null(index)) return null;
    require(nesting > 0);
    const { ref, target } = this.resolve(index);
    require(this.kind_of(ref) === 1);
    const element_size = this.hi(ref) & 7;
    const count = this.hi(ref) >>> 3;
    if (element_size === 7) {  // inline composite: count is in words, then a tag word
      const words = count;
      this.check_object(target, words + 1);
      const tag_lo = this.lo(target);
      require((tag_lo & 3) === 0);
      const elements = tag_lo >>> 2;
      const data_words = this.hi(target) & 0xffff;
      const pointer_count = this.hi(target) >>> 16;
      const per_element = data_words + pointer_count;
      require(per_element * elements <= words);
      if (per_element === 0) this.charge(elements);  // zero-size structs: amplification
      return { start: target + 1, element_size, count: elements, per_element, data_words,
               pointer_count, nesting: nesting - 1 };
    }
    const bits = [0, 1, 8, 16, 32, 64, 64][element_size];
    const words = Math.ceil((count * bits) / 64);
    if (words > 0) this.check_object(target, words);  // zero words: nothing to bound
    if (element_size === 0) this.charge(count);  // void: amplification
    return { start: target, element_size, count, nesting: nesting - 1 };
  }

  // Follows every pointer below this one, known fields or not (common/messages.cpp).
  validate_pointer(index, nesting) {
    if (this.is_null(index)) return;
    const { ref } = this.resolve(index);
    const kind = this.kind_of(ref);
    require(kind === 0 || kind === 1);  // a capability or an unknown kind: refused
    if (kind === 0) {
      this.validate_struct(this.read_struct(index, nesting));
      return;
    }
    const list = this.read_list(index, nesting);
    if (list.element_size === 6) {
      for (let i = 0; i < list.count; ++i) this.validate_pointer(list.start + i, list.nesting);
    } else if (list.element_size === 7) {
      for (let i = 0; i < list.count; ++i) {
        require(list.nesting > 0);
        const data = list.start + i * list.per_element;
        this.validate_struct({ pointers: data + list.data_words, pointer_count: list.pointer_count,
                               nesting: list.nesting - 1 });
      }
    }
  }

  validate_struct(s) {
    for (let i = 0; i < s.pointer_count; ++i) this.validate_pointer(s.pointers + i, s.nesting);
  }

  bit0(s) {
    return s.data_words > 0 && (this.view.getUint8(s.data * 8) & 1) === 1;
  }

  u16(s, offset_bytes) {
    return s.data_words * 8 >= offset_bytes + 2 ? this.view.getUint16(s.data * 8 + offset_bytes, true) : 0;
  }

  u32(s, offset_bytes) {
    return s.data_words * 8 >= offset_bytes + 4 ? this.view.getUint32(s.data * 8 + offset_bytes, true) : 0;
  }

  pointer(s, i) { return i < s.pointer_count ? s.pointers + i : null; }

  // A Data field: a list of bytes (null reads as empty).
  data_field(s, i) {
    const index = this.pointer(s, i);
    if (index === null || this.is_null(index)) return new Uint8Array(0);
    const { ref, target } = this.resolve(index);
    require(this.kind_of(ref) === 1 && (this.hi(ref) & 7) === 2);
    const count = this.hi(ref) >>> 3;
    if (count > 0) this.check_object(target, Math.ceil(count / 8));
    return new Uint8Array(this.view.buffer, this.view.byteOffset + target * 8, count).slice();
  }
}

// The checks that need no parsing, then the reader: returns {kind, struct, reader} of the root.
function read_root(bytes) {
  require(bytes.length <= max_control_message_bytes);
  require(bytes.length >= 8 && bytes.length % 8 === 0);
  const header = new DataView(bytes.buffer, bytes.byteOffset, 8);
  const words = bytes.length / 8 - 1;
  require(header.getUint32(0, true) === 0);  // exactly one segment
  require(header.getUint32(4, true) === words);  // and no trailing bytes
  const copy = bytes.slice(8);
  const reader = new SegmentReader(new DataView(copy.buffer), words);
  // First pass, as capnp::AnyPointer: every pointer followed under the limits.
  reader.check_object(0, 1);
  reader.validate_pointer(0, capnp_nesting_limit);
  // Second pass, as the schema's root type (charged again, as capnp's reader does).
  reader.check_object(0, 1);
  const root = reader.read_struct(0, capnp_nesting_limit);
  return { reader, root, which: reader.u16(root, 0) };
}

// A key is 32 bytes that pass the point check (docs/protocol.md 4.2), except the one a
// rejectConnection names: the relay only compares it with the keys it holds, so 32 bytes do.
function read_key(reader, member, point_checked = true) {
  const key = reader.data_field(member, 0);
  require(key.length === key_bytes && (!point_checked || is_valid_identity_key(key)));
  return key;
}

// An e2eMsg1 (pointer 1): absent when empty, else exactly 32 bytes (docs/protocol.md 4.2).
function with_msg1(reader, member, message) {
  const msg1 = reader.data_field(member, 1);
  require(msg1.length === 0 || msg1.length === handshake_msg1_bytes);
  if (msg1.length > 0) message.e2eMsg1 = msg1;
  return message;
}

// A topic id (pointer 0 of every topic message): exactly 32 bytes, never checked further.
function read_topic(reader, member) {
  const topic = reader.data_field(member, 0);
  require(topic.length === topic_id_bytes);
  return topic;
}

function read_reason(reader, member) {
  const reason = reader.u16(member, 0);
  require(reason < refuse_reasons.length);  // an enumerant this version does not know
  return refuse_reasons[reason];
}

function decode_relay_topic(reader, member, type) {
  const message = { type, topicId: read_topic(reader, member) };
  if (type === 'topicJoined') {
    message.members = reader.u32(member, 0);
    message.introduced = reader.u32(member, 4);
    require(message.introduced <= message.members);
  }
  if (type === 'introduction') {
    const peer = reader.data_field(member, 1);
    require(peer.length === key_bytes && is_valid_identity_key(peer));
    message.peer = peer;
  }
  if (type === 'topicRefused') message.reason = read_reason(reader, member);
  return message;
}

function decode(bytes, decode_root) {
  try {
    return decode_root(read_root(bytes));
  } catch (e) {
    if (e instanceof Refusal || e instanceof RangeError) {
      // The detail would be the attacker's: one code, as the C++ decoder says.
      throw new StrelayError('protocol_error', 'a malformed control message');
    }
    throw e;
  }
}

export function decode_node_message(bytes) {
  return decode(bytes, ({ reader, root, which }) => {
    require(which < node_names.length);  // a union member this version does not know
    const member_index = reader.pointer(root, 0);
    const member = member_index === null
        ? { data: 0, data_words: 0, pointers: 0, pointer_count: 0 }
        : reader.read_struct(member_index, root.nesting);
    const type = node_names[which];
    const field = node_key_field[which];
    if (type === 'listen') return reader.bit0(member) ? { type, earlyE2e: true } : { type };
    if (node_topic_types.has(type)) return { type, topicId: read_topic(reader, member) };
    if (type === 'connect' || type === 'accept') {
      return with_msg1(reader, member, { type, [field]: read_key(reader, member) });
    }
    return field ? { type, [field]: read_key(reader, member, type !== 'rejectConnection') } : { type };
  });
}

export function decode_relay_message(bytes) {
  return decode(bytes, ({ reader, root, which }) => {
    require(which < relay_names.length);
    const member_index = reader.pointer(root, 0);
    const member = member_index === null
        ? { data: 0, data_words: 0, pointers: 0, pointer_count: 0 }
        : reader.read_struct(member_index, root.nesting);
    const type = relay_names[which];
    if (type === 'refused') return { type, reason: read_reason(reader, member) };
    if (relay_topic_types.has(type)) return decode_relay_topic(reader, member, type);
    const field = relay_key_field[which];
    if (type === 'incomingConnection') return with_msg1(reader, member, { type, from: read_key(reader, member) });
    if (type === 'connected') {
      const message = { type, peer: read_key(reader, member) };
      if (reader.bit0(member)) message.earlyE2e = true;
      return message;
    }
    return field ? { type, [field]: read_key(reader, member) } : { type };
  });
}
