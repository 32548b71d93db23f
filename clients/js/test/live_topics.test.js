// Topics through a real strelay (STRELAY_BIN_DIR; docs/protocol.md 4.9): JS nodes meet by a
// topic's name, each pair introduced once, another topic meets nobody; the opt-in node accepts
// an introduced peer and bytes go end to end unchanged, a node that did not opt in refuses it,
// and leaving stops both the introductions and the acceptance.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { ready, Node, publicKeyToString } from '../src/index.js';
import { Scene, next_event } from './support/processes.js';
import { carrier_for, fast, exchange } from './support/nodes.js';

before(ready);

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');
const text = (key) => publicKeyToString(key);

// A listening node that records its introductions: node.met is [topic, key text] in order.
async function member(t, scene, relay, name, kind = 'tcp') {
  const identity = scene.identity(name);
  const node = new Node({ identity, relays: [relay.ticket], timers: fast, ...carrier_for(kind, relay) });
  t.after(() => node.close());
  node.met = [];
  node.introductions = [];
  node.addEventListener('introduction', (e) => {
    node.met.push([e.detail.topic, text(e.detail.peer)]);
    node.introductions.push(e.detail);
  });
  const up = next_event(node, 'relay', (d) => d.state === 'connected');
  node.listen();
  await up;
  return node;
}

// Joins and waits for the relay's answer.
async function join(node, topic, options) {
  const joined = next_event(node, 'topicJoined', (d) => d.topic === topic);
  node.joinTopic(topic, options);
  return joined;
}

// The relay answers one connection in order: once the node's own join of a fresh topic is
// answered, every introduction the relay queued for it before is in.
async function settle(node) {
  await join(node, `settle ${randomBytes(16).toString('hex')}`);
}

test('three JS nodes meet on a topic through strelay, each pair introduced once; another topic meets nobody', async (t) => {
  const scene = new Scene(t);
  const relay = await scene.relay('r1');
  const [a, b, c, d] = await Promise.all(['alice', 'bob', 'carol', 'dave'].map((name) => member(t, scene, relay, name)));
  assert.deepEqual(await join(a, 'room'), { topic: 'room', relay: relay.ticket, members: 0, introduced: 0 });
  const a_meets_b = next_event(a, 'introduction', (e) => text(e.peer) === text(b.publicKey));
  const b_meets_a = next_event(b, 'introduction', (e) => text(e.peer) === text(a.publicKey));
  const b_joined = await join(b, 'room');
  assert.equal(b_joined.members, 1);
  assert.equal(b_joined.introduced, 1);
  assert.equal((await a_meets_b).newcomer, false, 'b joined after a');
  assert.equal((await b_meets_a).newcomer, true, "b's own join introduced a");
  const c_joined = await join(c, 'room');
  assert.equal(c_joined.members, 2);
  assert.equal(c_joined.introduced, 2);
  const d_joined = await join(d, 'another room');
  assert.equal(d_joined.members, 0);
  await Promise.all([a, b, c, d].map(settle));
  const met = (node) => node.met.filter(([topic]) => !topic.startsWith('settle')).map(([topic, key]) => `${topic}:${key}`).sort();
  const on_room = (...nodes) => nodes.map((node) => `room:${text(node.publicKey)}`).sort();
  assert.deepEqual(met(a), on_room(b, c));
  assert.deepEqual(met(b), on_room(a, c));
  assert.deepEqual(met(c), on_room(a, b));
  assert.deepEqual(met(d), []);
  for (const node of [a, b, c, d]) {
    assert.equal(node.met.filter(([topic]) => topic.startsWith('settle')).length, 0, 'a fresh topic meets nobody');
  }
  const introduction = c.introductions[0];
  assert.equal(introduction.relay.address, relay.ticket.address);
  assert.deepEqual(introduction.relay.publicKey, relay.ticket.publicKey);
});

for (const kind of carrier_for.kinds()) {
  test(`introduced, then connected (${kind}): the opt-in member accepts, bytes end to end, others refuse, leave ends both`, async (t) => {
    const scene = new Scene(t);
    const relay = await scene.relay('r1', carrier_for.relay_options(kind));
    const [m, n] = await Promise.all([member(t, scene, relay, 'member', kind), member(t, scene, relay, 'newcomer', kind)]);
    await join(m, 'room', { acceptIntroduced: true });
    const m_meets_n = next_event(m, 'introduction');
    const n_meets_m = next_event(n, 'introduction');
    await join(n, 'room');
    const [of_n, of_m] = await Promise.all([m_meets_n, n_meets_m]);
    assert.equal(text(of_m.peer), text(m.publicKey));
    assert.equal(text(of_n.peer), text(n.publicKey));
    assert.equal(of_m.newcomer, true, 'the newcomer connects');
    assert.equal(of_n.newcomer, false);

    // The newcomer connects, the member accepts (it opted in): 1 MiB each way, unchanged.
    const incoming = next_event(m, 'incoming');
    const stream = await n.connectIntroduced(of_m);
    const { stream: accepted } = await incoming;
    assert.equal(text(accepted.peer), text(n.publicKey));
    assert.equal(stream.relay.address, relay.ticket.address);
    const up = new Uint8Array(randomBytes(1 << 20));
    const down = new Uint8Array(randomBytes(1 << 20));
    const [at_m, at_n] = await Promise.all([exchange(accepted, down), exchange(stream, up)]);
    assert.equal(at_m.bytes, up.length);
    assert.equal(at_m.sha, sha(up));
    assert.equal(at_n.bytes, down.length);
    assert.equal(at_n.sha, sha(down));

    // The other way: the newcomer did not opt in, so the member's connect is refused.
    const n_refuses = next_event(n, 'refused');
    await assert.rejects(m.connectIntroduced(of_n), { code: 'rejected' });
    assert.equal(text((await n_refuses).peer), text(m.publicKey));

    // The member leaves: the newcomer is refused now, and a third node meets only the newcomer.
    m.leaveTopic('room');
    const m_refuses = next_event(m, 'refused');
    await assert.rejects(n.connectIntroduced(of_m), { code: 'rejected' });
    assert.equal(text((await m_refuses).peer), text(n.publicKey));
    const o = await member(t, scene, relay, 'other', kind);
    const n_meets_o = next_event(n, 'introduction', (e) => text(e.peer) === text(o.publicKey));
    const o_joined = await join(o, 'room');
    assert.equal(o_joined.members, 1);
    await n_meets_o;
    await Promise.all([m, n, o].map(settle));
    assert.deepEqual(o.met, [['room', text(n.publicKey)]]);
    assert.deepEqual(m.met, [['room', text(n.publicKey)]], 'nothing for the member after it left');
  });
}

// A strelay from before topics (e.g. main's build before issue 18), when the caller names one.
const pre_topics = process.env.STRELAY_PRE_TOPICS_BIN;
test('a real relay that predates topics: "unsupported", and the node listens on without them',
     { skip: pre_topics ? false : 'set STRELAY_PRE_TOPICS_BIN to a strelay built before topics' }, async (t) => {
  const scene = new Scene(t);
  const relay = await scene.relay('old', { binary: pre_topics });
  const node = new Node({ identity: scene.identity('alice'), relays: [relay.ticket], timers: fast, ...carrier_for('tcp') });
  t.after(() => node.close());
  const states = [];
  node.addEventListener('relay', (e) => states.push(e.detail.state));
  node.joinTopic('room');
  const refused = next_event(node, 'topicRefused');
  node.listen();
  const detail = await refused;
  assert.equal(detail.reason, 'unsupported');
  assert.match(detail.error.message, /does not support topics/);
  assert.equal(detail.error.code, 'topics_unsupported');
  await next_event(node, 'relay', (d) => d.state === 'connected');
  assert.match(relay.log(), /reason=protocol_error/);
  // Still listening a while later, and joined once only: no loop of drops and joins.
  await settle_time(1500);
  assert.deepEqual(states, ['connecting', 'connected', 'retrying', 'connecting', 'connected']);
  assert.equal((relay.log().match(/reason=protocol_error/g) ?? []).length, 1);
});

const settle_time = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
