// The control message codec: byte for byte what `capnp encode` writes, the seeds of
// fuzz/corpus/messages decoded, and every refusal of docs/protocol.md 4.2.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { ready } from '../src/sodium.js';
import {
  encode_node_message, encode_relay_message, decode_node_message, decode_relay_message, refuse_reasons,
} from '../src/messages.js';
import { repo_root, read_vector, hex, to_hex, read_repo_file } from './support/vectors.js';

before(ready);

const schema = path.join(repo_root, 'schema/relay.capnp');
const key = () => hex(read_vector('strelay-xk1sig.json').init_static_public);
const key2 = () => hex(read_vector('strelay-xk1sig.json').resp_static_public);
const capnp_hex = (bytes) => `0x"${to_hex(bytes)}"`;

function capnp_encode(root, text) {
  return new Uint8Array(execFileSync('capnp', ['encode', schema, root], { input: text }));
}

// A struct that gained optional fields (docs/protocol.md 4.4, "The end-to-end msg1 with
// connect") is written without them at its older size, as the older `capnp encode` wrote it:
// those messages are checked against their frozen seeds (fuzz/corpus/messages, written by
// `capnp encode` before the fields existed); messages with every field set against today's
// `capnp encode`.
const expected_bytes = (root, text, seed) => (seed
  ? new Uint8Array(read_repo_file(`fuzz/corpus/messages/${seed}`))
  : capnp_encode(root, text));

test('every message is encoded exactly as `capnp encode` writes it, and decodes back', () => {
  const k = key();
  const m = hex(read_vector('strelay-xk1sig-e2e.json').messages[0].ciphertext);  // an e2e msg1
  const node = [
    [{ type: 'listen' }, '(listen = ())', 'node-listen'],
    [{ type: 'listen', earlyE2e: true }, '(listen = (earlyE2e = true))'],
    [{ type: 'connect', target: k }, `(connect = (target = ${capnp_hex(k)}))`, 'node-connect'],
    [{ type: 'connect', target: k, e2eMsg1: m },
      `(connect = (target = ${capnp_hex(k)}, e2eMsg1 = ${capnp_hex(m)}))`],
    [{ type: 'accept', from: k }, `(accept = (from = ${capnp_hex(k)}))`, 'node-accept'],
    [{ type: 'accept', from: k, e2eMsg1: m },
      `(accept = (from = ${capnp_hex(k)}, e2eMsg1 = ${capnp_hex(m)}))`],
    [{ type: 'rejectConnection', from: k }, `(rejectConnection = (from = ${capnp_hex(k)}))`],
    [{ type: 'standby' }, '(standby = ())'],
  ];
  for (const [message, text, seed] of node) {
    const bytes = encode_node_message(message);
    assert.equal(to_hex(bytes), to_hex(expected_bytes('NodeMessage', text, seed)), text);
    assert.deepEqual(decode_node_message(bytes), message);
  }
  const camel = (s) => s.replace(/_(.)/g, (_, c) => c.toUpperCase());
  const relay = [
    [{ type: 'listenOk' }, '(listenOk = ())'],
    [{ type: 'incomingConnection', from: k }, `(incomingConnection = (from = ${capnp_hex(k)}))`,
      'relay-incoming-connection'],
    [{ type: 'incomingConnection', from: k, e2eMsg1: m },
      `(incomingConnection = (from = ${capnp_hex(k)}, e2eMsg1 = ${capnp_hex(m)}))`],
    [{ type: 'connected', peer: k }, `(connected = (peer = ${capnp_hex(k)}))`, 'relay-connected'],
    [{ type: 'connected', peer: k, earlyE2e: true },
      `(connected = (peer = ${capnp_hex(k)}, earlyE2e = true))`],
    ...refuse_reasons.map((r) => [{ type: 'refused', reason: r }, `(refused = (reason = ${camel(r)}))`]),
  ];
  for (const [message, text, seed] of relay) {
    const bytes = encode_relay_message(message);
    assert.equal(to_hex(bytes), to_hex(expected_bytes('RelayMessage', text, seed)), text);
    assert.deepEqual(decode_relay_message(bytes), message);
  }
  assert.equal(encode_node_message({ type: 'listen' }).length, 32);
  assert.equal(encode_relay_message({ type: 'refused', reason: 'not_found' }).length, 40);
  assert.equal(encode_node_message({ type: 'connect', target: k }).length, 72);
});

test('the seeds of fuzz/corpus/messages decode as the C++ decoder reads them', () => {
  const dir = path.join(repo_root, 'fuzz/corpus/messages');
  const files = readdirSync(dir);
  assert.ok(files.length >= 11);
  for (const file of files) {
    const bytes = new Uint8Array(read_repo_file(`fuzz/corpus/messages/${file}`));
    const decoded = file.startsWith('node-') ? decode_node_message(bytes) : decode_relay_message(bytes);
    const expected_type = {
      'node-accept': 'accept', 'node-connect': 'connect', 'node-connect-unknown-nested-field': 'connect',
      'node-connect-unknown-void-list': 'connect', 'node-listen': 'listen',
      'node-reject-connection': 'rejectConnection', 'node-standby': 'standby', 'relay-connected': 'connected',
      'relay-incoming-connection': 'incomingConnection', 'relay-listen-ok': 'listenOk',
      'relay-refused-not-allowed': 'refused', 'relay-refused-not-found': 'refused',
      'node-listen-early-e2e': 'listen', 'node-connect-e2e-msg1': 'connect', 'node-accept-e2e-msg1': 'accept',
      'relay-incoming-connection-e2e-msg1': 'incomingConnection', 'relay-connected-early-e2e': 'connected',
      'node-join-topic': 'joinTopic', 'node-leave-topic': 'leaveTopic', 'relay-topic-joined': 'topicJoined',
      'relay-topic-refused': 'topicRefused', 'relay-introduction': 'introduction', 'relay-topic-left': 'topicLeft',
    }[file];
    assert.equal(decoded.type, expected_type, file);
  }
});

// A message of `words` segment words with the given words (as [lo, hi] u32 pairs).
function message(words) {
  const out = new Uint8Array(8 + words.length * 8);
  const view = new DataView(out.buffer);
  view.setUint32(4, words.length, true);
  words.forEach(([lo, hi], i) => {
    view.setUint32(8 + i * 8, lo >>> 0, true);
    view.setUint32(12 + i * 8, hi >>> 0, true);
  });
  return out;
}

test('the refusals of docs/protocol.md 4.2', () => {
  const good = encode_node_message({ type: 'connect', target: key() });
  const refuse = (bytes, why) => assert.throws(() => decode_node_message(bytes), { code: 'protocol_error' }, why);
  refuse(new Uint8Array(0), 'empty');
  refuse(good.subarray(0, 71), 'not a multiple of 8');
  refuse(Uint8Array.from([...good, 0, 0, 0, 0, 0, 0, 0, 0]), 'trailing bytes');
  const two_segments = Uint8Array.from(good);
  two_segments[0] = 1;
  refuse(two_segments, 'two segments');
  const wrong_key = Uint8Array.from(good);
  wrong_key[40] ^= 0xff;
  refuse(wrong_key, 'a key that is not a valid point');
  // ... except in rejectConnection, whose key the relay only compares with those it holds.
  const reject = Uint8Array.from(encode_node_message({ type: 'rejectConnection', from: key() }));
  reject[40] ^= 0xff;
  assert.deepEqual(decode_node_message(reject).type, 'rejectConnection', 'rejectConnection of a non-point');
  refuse(encode_node_message({ type: 'connect', target: key() }).subarray(0, 64).map((b, i) => (i === 4 ? 7 : b)), 'a key cut short');
  // Sizes: 4096 bytes pass the size check (a listen with an unknown data section), 4104 do not.
  const big = (bytes) => message([[0, bytes / 8 - 2], ...Array(bytes / 8 - 2).fill([0, 0])]);
  assert.deepEqual(decode_node_message(big(4096)), { type: 'listen' });
  refuse(big(4104), 'over 4096 bytes');
  // Union members and enumerants this version does not know.
  assert.deepEqual(decode_node_message(message([[0, 0x00010001], [4, 0], [0, 0]])), { type: 'standby' });
  refuse(message([[0, 0x00010001], [5, 0], [0, 0]]), 'union member 5');
  assert.throws(() => decode_relay_message(message([[0, 0x00010001], [3, 0], [0, 0x00000001], [8, 0]])), { code: 'protocol_error' }, 'refuse reason 8');
  assert.deepEqual(decode_relay_message(message([[0, 0x00010001], [3, 0], [0, 0x00000001], [7, 0]])), { type: 'refused', reason: 'not_allowed' });
  // A capability pointer anywhere, even in a field this version does not know.
  refuse(message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [3, 0]]), 'a capability');
  // Out of bounds, and a struct where a key (a list of bytes) belongs.
  refuse(message([[0, 0x00010001], [1, 0], [0x100, 0x00010000]]), 'out of bounds');
  refuse(message([[0, 0x00010001], [1, 0], [0, 0x00010000], [0, 0x00000001], [0, 0]]), 'a struct for a key');
  // Nesting: a chain of 8 structs is read, 9 are too deep.
  const chain = (n) => message([[0, 0x00010001], [0, 0], ...Array.from({ length: n - 2 }, () => [0, 0x00010000]), [0xfffffffc, 0]]);
  assert.deepEqual(decode_node_message(chain(8)), { type: 'listen' });
  refuse(chain(9), 'nesting 9');
  // A pointer cycle (a struct pointing at itself).
  refuse(message([[0, 0x00010001], [0, 0], [0xfffffffc, 0x00010000]]), 'a cycle');
  // Traversal and amplification, at each limit and one past it. These boundaries were checked
  // against the C++ decoder (common/messages.cpp, capnp's reader), which charges a zero-size
  // struct one word and reads the root twice.
  const off = (o) => ((o << 2) >>> 0);
  const void_list = (n) => message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [1, (n << 3) >>> 0]]);
  assert.deepEqual(decode_node_message(void_list(2038)), { type: 'listen' });
  refuse(void_list(2039), 'a void list one element past the traversal limit');
  const zero_structs = (n) => message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [1, 7], [n << 2, 0]]);
  assert.deepEqual(decode_node_message(zero_structs(2037)), { type: 'listen' });
  refuse(zero_structs(2038), 'a list of zero-size structs one past the limit');
  const same_struct = (p) => {  // p pointers to one 8-word struct: 8 words charged per pointer
    const words = [[0, 0x00020001], [0, 0], [0xfffffffc, 0], [0, (p << 16) >>> 0]];
    for (let i = 0; i < p; ++i) words.push([off(p - i - 1), 8]);
    return message([...words, ...Array(8).fill([0, 0])]);
  };
  assert.deepEqual(decode_node_message(same_struct(226)), { type: 'listen' });
  refuse(same_struct(227), 'pointers aimed at the same bytes');
  // Pointer lists nest too: 6 levels under the root's field are read, 7 are too deep.
  const lists = (n) => message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], ...Array(n).fill([1, (1 << 3) | 6]), [0xfffffffc, 0]]);
  assert.deepEqual(decode_node_message(lists(6)), { type: 'listen' });
  refuse(lists(7), 'pointer lists nested 7 deep');
  // Far pointers into the one segment are followed; to another segment or out of it, refused.
  assert.deepEqual(decode_node_message(message([[2 | (1 << 3), 0], [0, 0x00010001], [0, 0], [0, 0]])), { type: 'listen' });
  assert.deepEqual(decode_node_message(message([[6 | (1 << 3), 0], [2 | (3 << 3), 0], [0, 0x00010001], [0, 0], [0, 0]])), { type: 'listen' });
  refuse(message([[2 | (1 << 3), 1], [0, 0x00010001], [0, 0], [0, 0]]), 'a far pointer to segment 1');
  refuse(message([[2 | (9 << 3), 0], [0, 0]]), 'a far pointer out of the segment');
  // Objects of zero words read nothing: capnp does not bound them, so neither do we.
  assert.deepEqual(decode_node_message(message([[0, 0x00010001], [0, 0], [off(-64), 0]])), { type: 'listen' });
  refuse(message([[0, 0x00020001], [0, 0], [0xfffffffc, 0], [off(100) | 1, (1 << 3) | 2]]), 'a byte list out of bounds');
  // A null root reads as the default struct: listen, as capnp's reader says.
  assert.deepEqual(decode_node_message(message([[0, 0]])), { type: 'listen' });
});

test('every byte mutation of the seeds that `capnp decode` refuses is refused here too', () => {
  const capnp = spawnSync('capnp', ['--version']);
  assert.equal(capnp.status, 0, 'capnp is installed (scripts/install-deps)');
  const seeds = ['node-connect', 'node-listen', 'relay-refused-not-found', 'relay-connected']
      .map((f) => [f.startsWith('node') ? 'NodeMessage' : 'RelayMessage', new Uint8Array(read_repo_file(`fuzz/corpus/messages/${f}`))]);
  let refused_by_capnp = 0;
  let state = 12345;
  const random = (n) => { state = (state * 1103515245 + 12345) & 0x7fffffff; return state % n; };
  for (let i = 0; i < 120; ++i) {  // bounded: ~10 ms per capnp process
    const [root, seed] = seeds[i % seeds.length];
    const bytes = Uint8Array.from(seed);
    const at = 8 + random(Math.min(bytes.length - 8, 24));  // the pointers, where structure lives
    bytes[at] ^= 1 << random(8);
    const result = spawnSync('capnp', ['decode', schema, root], { input: bytes });
    if (result.status === 0) continue;
    ++refused_by_capnp;
    const decode = root === 'NodeMessage' ? decode_node_message : decode_relay_message;
    assert.throws(() => decode(bytes), { code: 'protocol_error' }, `mutation ${i} at byte ${at}`);
  }
  assert.ok(refused_by_capnp >= 10, `capnp refused ${refused_by_capnp} mutations`);
});

test('an e2eMsg1 is exactly 32 bytes or absent: 31 and 33 are protocol errors, as in C++', () => {
  const k = key();
  for (const [root, type, field] of [['NodeMessage', 'connect', 'target'], ['NodeMessage', 'accept', 'from'],
    ['RelayMessage', 'incomingConnection', 'from']]) {
    const decode = root === 'NodeMessage' ? decode_node_message : decode_relay_message;
    for (const n of [0, 31, 32, 33]) {
      const m = new Uint8Array(n).fill(0x42);
      const bytes = capnp_encode(root, `(${type} = (${field} = ${capnp_hex(k)}, e2eMsg1 = ${n ? capnp_hex(m) : "\"\""}))`);
      if (n === 0 || n === 32) {
        const decoded = decode(bytes);
        assert.equal(decoded.e2eMsg1 === undefined, n === 0, `${type} ${n}`);
      } else {
        assert.throws(() => decode(bytes), /malformed/, `${type} ${n}`);
      }
    }
  }
  assert.throws(() => encode_node_message({ type: 'connect', target: k, e2eMsg1: new Uint8Array(33) }), TypeError);
});

test('the topic messages (docs/protocol.md 4.9) encode as their seeds and decode back', () => {
  const t = new Uint8Array(32).fill(0x74);
  const k = new Uint8Array(Buffer.from('03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8', 'hex'));
  const seed = (name) => new Uint8Array(read_repo_file(`fuzz/corpus/messages/${name}`));
  const cases = [
    ['node-join-topic', { type: 'joinTopic', topicId: t }, encode_node_message, decode_node_message],
    ['node-leave-topic', { type: 'leaveTopic', topicId: t }, encode_node_message, decode_node_message],
    ['relay-topic-joined', { type: 'topicJoined', topicId: t, members: 3, introduced: 2 }, encode_relay_message, decode_relay_message],
    ['relay-topic-refused', { type: 'topicRefused', topicId: t, reason: 'overloaded' }, encode_relay_message, decode_relay_message],
    ['relay-introduction', { type: 'introduction', topicId: t, peer: k }, encode_relay_message, decode_relay_message],
    ['relay-topic-left', { type: 'topicLeft', topicId: t }, encode_relay_message, decode_relay_message],
  ];
  for (const [name, value, encode, decode] of cases) {
    assert.deepEqual(encode(value), seed(name), name);
    assert.deepEqual(decode(seed(name)), value, name);
  }
  // A topic id of 31 or 33 bytes is refused both ways; more introduced than members too.
  for (const n of [31, 33]) {
    assert.throws(() => encode_node_message({ type: 'joinTopic', topicId: new Uint8Array(n) }), TypeError);
  }
  const joined = seed('relay-topic-joined');
  joined[4 * 8 + 4] = 4;  // introduced = 4 > members = 3
  assert.throws(() => decode_relay_message(joined), { code: 'protocol_error' });
});
