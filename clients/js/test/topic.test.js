// Topic ids (src/topic.js) against tests/vectors/strelay-topics.json, the vectors common/topic.cpp
// passes too.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { ready } from '../src/sodium.js';
import { topic_id, max_topic_name_bytes } from '../src/topic.js';
import { read_vector, hex, to_hex } from './support/vectors.js';

before(ready);

test('the frozen topic ids: each name on each relay', () => {
  const v = read_vector('strelay-topics.json');
  assert.equal(v.max_name_bytes, max_topic_name_bytes);
  assert.ok(v.vectors.length >= 10);
  for (const entry of v.vectors) {
    assert.equal(to_hex(new TextEncoder().encode(entry.name)), entry.name_hex);
    assert.equal(to_hex(topic_id(hex(entry.relay_public_key), entry.name)), entry.topic_id, entry.name);
    assert.equal(to_hex(topic_id(hex(entry.relay_public_key), hex(entry.name_hex))), entry.topic_id);
  }
});

test('names of 0 or 257 bytes are refused', () => {
  const v = read_vector('strelay-topics.json');
  const relay = hex(v.vectors[0].relay_public_key);
  for (const name_hex of Object.values(v.refused_names_hex)) {
    assert.throws(() => topic_id(relay, hex(name_hex)), TypeError);
  }
  assert.equal(topic_id(relay, 'x'.repeat(256)).length, 32);
});
