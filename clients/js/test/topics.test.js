// The node's topic API (src/node.js, src/relay_link.js, src/node_topics.js) against a scripted
// relay made of the library's own responder (support/fake_relay.js): what the links send and
// when, which answers reach the application, the opt-in friend rule, and a relay that predates
// topics. The same API through the real strelay: live_topics.test.js.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { ready, Node, Identity, tcpCarrier } from '../src/index.js';
import { Topics, max_remembered_introductions } from '../src/node_topics.js';
import { topic_id } from '../src/topic.js';
import { CloseReason } from '../src/protocol.js';
import { next_event, wait_for } from './support/processes.js';
import { fake_relay, default_answers } from './support/fake_relay.js';
import { to_hex } from './support/vectors.js';

before(ready);

const tcp = { carrier: (relay) => tcpCarrier(relay.address, { timeout_ms: 2000 }) };
const quick = { connect_timeout_ms: 2000, backoff: { initial_ms: 50, cap_ms: 200 } };

function node_for(t, relay, options = {}) {
  const node = new Node({ identity: Identity.generate(), relays: [relay.ticket], ...tcp, timers: quick, ...options });
  t.after(() => node.close());
  return node;
}

// Every event of `types` on `node`, in order, as [type, detail].
function record(node, types) {
  const events = [];
  for (const type of types) node.addEventListener(type, (e) => events.push([type, e.detail]));
  return events;
}

const ids = (messages) => messages.map((m) => to_hex(m.topicId));
const id_of = (relay, name) => to_hex(topic_id(relay.ticket.publicKey, name));
const new_key = () => Identity.generate().publicKey;

test('topic names: 1 to 256 bytes of UTF-8, well-formed text; anything else is a clear TypeError', (t) => {
  const node = new Node({ identity: Identity.generate() });
  t.after(() => node.close());
  node.joinTopic('x'.repeat(256));
  node.joinTopic('é'.repeat(128));  // 256 bytes
  for (const bad of ['', 'x'.repeat(257), `${'é'.repeat(128)}x`, '\ud800 lone', 42, undefined, new Uint8Array(4)]) {
    assert.throws(() => node.joinTopic(bad), (e) => e instanceof TypeError && /topic name/.test(e.message), String(bad).slice(0, 20));
    assert.throws(() => node.leaveTopic(bad), TypeError);
  }
  assert.throws(() => node.joinTopic('', {}), /1 to 256 bytes of UTF-8, not 0/);
  assert.throws(() => node.joinTopic('x'.repeat(257)), /not 257/);
  assert.throws(() => node.connectIntroduced({ peer: new Uint8Array(32) }), /introduction/);
  assert.throws(() => node.connectIntroduced(undefined), TypeError);
});

test('a listener joins after ListenOk, at once while listening, again on each new listener; leave stops that', async (t) => {
  const relay = await fake_relay(t);
  const node = node_for(t, relay);
  node.joinTopic('room a');  // before listen(): sent after ListenOk
  const joined_a = next_event(node, 'topicJoined', (d) => d.topic === 'room a', 5000);
  node.listen();
  const detail = await joined_a;
  assert.equal(detail.relay.address, relay.ticket.address);
  assert.equal(detail.members, 0);
  const first = relay.listeners()[0];
  assert.deepEqual(ids(first.of_type('joinTopic')), [id_of(relay, 'room a')], "the relay's blinded id, never the name");
  const joined_b = next_event(node, 'topicJoined', (d) => d.topic === 'room b', 5000);
  node.joinTopic('room b');
  await joined_b;
  node.joinTopic('room b');  // joined already: nothing to send
  await first.sync();
  assert.deepEqual(ids(first.of_type('joinTopic')), [id_of(relay, 'room a'), id_of(relay, 'room b')]);

  // A replaced listener: the next one joins every topic again.
  const rejoined = next_event(node, 'topicJoined', (d) => d.topic === 'room b', 5000);
  await first.close(CloseReason.replaced);
  await rejoined;
  const second = relay.listeners()[1];
  await second.sync();
  assert.deepEqual(ids(second.of_type('joinTopic')).sort(), [id_of(relay, 'room a'), id_of(relay, 'room b')].sort());

  // Leave: one leaveTopic now, nothing for a second leave, and no join on the next listener.
  node.leaveTopic('room a');
  node.leaveTopic('room a');
  node.leaveTopic('never joined');
  await second.sync();
  assert.deepEqual(ids(second.of_type('leaveTopic')), [id_of(relay, 'room a')]);
  const third_up = next_event(node, 'topicJoined', (d) => d.topic === 'room b', 5000);
  await second.close(CloseReason.shutdown);
  await third_up;
  const third = relay.listeners()[2];
  await third.sync();
  assert.deepEqual(ids(third.of_type('joinTopic')), [id_of(relay, 'room b')]);
});

test('answers for ids not joined on that relay never reach the app; an introduction is delivered once per listener', async (t) => {
  const relay = await fake_relay(t);
  const node = node_for(t, relay);
  node.joinTopic('room');
  const joined = next_event(node, 'topicJoined', () => true, 5000);
  node.listen();
  await joined;
  const events = record(node, ['introduction', 'topicJoined', 'topicRefused']);
  const conn = relay.listeners()[0];
  const room = topic_id(relay.ticket.publicKey, 'room');
  const elsewhere = topic_id(new_key(), 'room');  // the same name keyed with another relay
  const unjoined = topic_id(relay.ticket.publicKey, 'other');
  const [p1, p2, p3, p4, p5] = [new_key(), new_key(), new_key(), new_key(), new_key()];
  await conn.send({ type: 'introduction', topicId: unjoined, peer: p1 });
  await conn.send({ type: 'introduction', topicId: elsewhere, peer: p1 });
  await conn.send({ type: 'topicJoined', topicId: unjoined, members: 3, introduced: 1 });
  await conn.send({ type: 'topicRefused', topicId: elsewhere, reason: 'overloaded' });
  await conn.send({ type: 'topicLeft', topicId: room });
  for (const peer of [p1, p1, p2, p3]) await conn.send({ type: 'introduction', topicId: room, peer });
  await wait_for(() => events.length >= 3, 5000, 'three introductions');
  await conn.sync();
  const peers = () => events.map(([type, d]) => (type === 'introduction' ? to_hex(d.peer) : type));
  assert.deepEqual(peers(), [p1, p2, p3].map(to_hex));
  assert.deepEqual(Object.keys(events[0][1]).sort(), ['newcomer', 'peer', 'relay', 'topic']);
  assert.equal(events[0][1].topic, 'room');
  assert.equal(events[0][1].newcomer, false, 'our join introduced nobody: these joined after us');
  assert.equal(events[0][1].relay.address, relay.ticket.address);

  // A new listener joins again, and the relay's introductions on it are news (as in C++), once.
  const rejoined = next_event(node, 'topicJoined', () => true, 5000);
  await conn.close(CloseReason.replaced);
  await rejoined;
  const again = relay.listeners()[1];
  for (const peer of [p1, p4, p1]) await again.send({ type: 'introduction', topicId: room, peer });
  await wait_for(() => peers().includes(to_hex(p4)), 5000, 'p4');
  // Left: what the relay still says about the topic is ignored; joined again, p1 is news.
  node.leaveTopic('room');
  await wait_for(() => again.of_type('leaveTopic').length === 1, 5000, 'the leave');
  await again.send({ type: 'introduction', topicId: room, peer: p5 });
  const joined_again = next_event(node, 'topicJoined', () => true, 5000);
  node.joinTopic('room');
  await joined_again;
  await again.send({ type: 'introduction', topicId: room, peer: p1 });
  await wait_for(() => events.length >= 8, 5000, 'p1 again');
  await again.sync();
  assert.deepEqual(peers(), [...[p1, p2, p3].map(to_hex), 'topicJoined', to_hex(p1), to_hex(p4), 'topicJoined', to_hex(p1)]);
});

test("newcomer: the introductions that follow our TopicJoined answer our join; the node's own key never comes out", async (t) => {
  const [m1, m2, later] = [new_key(), new_key(), new_key()];
  let node = null;
  const relay = await fake_relay(t, {
    on_message: async (conn, message) => {
      if (message.type !== 'joinTopic') return;
      await conn.send({ type: 'topicJoined', topicId: message.topicId, members: 5, introduced: 3 });
      for (const peer of [m1, node.publicKey, m2]) await conn.send({ type: 'introduction', topicId: message.topicId, peer });
      await conn.send({ type: 'introduction', topicId: message.topicId, peer: later });
    },
  });
  node = node_for(t, relay);
  const events = record(node, ['introduction', 'topicJoined']);
  node.joinTopic('room');
  node.listen();
  await wait_for(() => events.length >= 4, 5000, 'the join and three introductions');
  await relay.listeners()[0].sync();
  assert.deepEqual(events.map(([type, d]) => (type === 'topicJoined' ? [d.members, d.introduced] : [to_hex(d.peer), d.newcomer])),
                   [[5, 3], [to_hex(m1), true], [to_hex(m2), true], [to_hex(later), false]]);
});

test('a refused topic: reported, its introductions ignored, and joining again asks again', async (t) => {
  let busy = true;
  const relay = await fake_relay(t, {
    on_message: async (conn, message) => {
      if (message.type === 'joinTopic' && busy) {
        busy = false;
        await conn.send({ type: 'topicRefused', topicId: message.topicId, reason: 'overloaded' });
      } else {
        await default_answers(conn, message);
      }
    },
  });
  const node = node_for(t, relay);
  node.joinTopic('busy');
  const refused = next_event(node, 'topicRefused', () => true, 5000);
  node.listen();
  const detail = await refused;
  assert.equal(detail.topic, 'busy');
  assert.equal(detail.reason, 'overloaded');
  const events = record(node, ['introduction']);
  const conn = relay.listeners()[0];
  await conn.send({ type: 'introduction', topicId: topic_id(relay.ticket.publicKey, 'busy'), peer: new_key() });
  await conn.sync();
  assert.equal(events.length, 0, 'no introduction on a refused topic');
  const joined = next_event(node, 'topicJoined', () => true, 5000);
  node.joinTopic('busy');
  await joined;
  assert.equal(conn.of_type('joinTopic').length, 2);
  const peer = new_key();
  await conn.send({ type: 'introduction', topicId: topic_id(relay.ticket.publicKey, 'busy'), peer });
  await wait_for(() => events.length === 1, 5000, 'the introduction');
  assert.deepEqual(events[0][1].peer, peer);
});

test('the opt-in rule: only peers introduced on an acceptIntroduced topic may connect, until the node leaves it', async (t) => {
  const relay = await fake_relay(t);
  const node = node_for(t, relay);
  node.joinTopic('open', { acceptIntroduced: true });
  node.joinTopic('closed');
  const both = Promise.all(['open', 'closed'].map((name) => next_event(node, 'topicJoined', (d) => d.topic === name, 5000)));
  node.listen();
  await both;
  const conn = relay.listeners()[0];
  const [a, b, stranger] = [new_key(), new_key(), new_key()];
  const introduced = record(node, ['introduction']);
  await conn.send({ type: 'introduction', topicId: topic_id(relay.ticket.publicKey, 'open'), peer: a });
  await conn.send({ type: 'introduction', topicId: topic_id(relay.ticket.publicKey, 'closed'), peer: b });
  await wait_for(() => introduced.length === 2, 5000, 'two introductions');
  const refused = record(node, ['refused']);
  const rejections = () => conn.of_type('rejectConnection').map((m) => to_hex(m.from));
  const accepts = () => relay.connections.filter((c) => c.request.type === 'accept').map((c) => to_hex(c.request.from));

  for (const peer of [b, stranger, a]) await conn.send({ type: 'incomingConnection', from: peer });
  await wait_for(() => accepts().length === 1, 5000, "the accept of a's connect");
  await conn.sync();
  assert.deepEqual(rejections(), [to_hex(b), to_hex(stranger)]);
  assert.deepEqual(accepts(), [to_hex(a)]);
  assert.deepEqual(refused.map(([, d]) => [to_hex(d.peer), d.reason]), [[to_hex(b), 'not_allowed'], [to_hex(stranger), 'not_allowed']]);

  // Opting in on 'closed' later lets b in; leaving 'open' shuts a out again.
  node.joinTopic('closed', { acceptIntroduced: true });
  node.leaveTopic('open');
  for (const peer of [a, b]) await conn.send({ type: 'incomingConnection', from: peer });
  await wait_for(() => accepts().length === 2, 5000, "the accept of b's connect");
  await conn.sync();
  assert.deepEqual(accepts(), [to_hex(a), to_hex(b)]);
  assert.deepEqual(rejections(), [to_hex(b), to_hex(stranger), to_hex(a)]);
  // A friend is a friend whatever the topics.
  node.setFriends([a]);
  await conn.send({ type: 'incomingConnection', from: a });
  await wait_for(() => accepts().length === 3, 5000, "the friend's accept");
  assert.equal(conn.of_type('joinTopic').length, 2, "changing the option sends nothing: 'closed' is joined");
});

test('a relay that predates topics: topicRefused "unsupported" once, and the link listens on without topics', async (t) => {
  const relay = await fake_relay(t, {
    on_message: async (conn, message) => {
      if (message.type === 'joinTopic') await conn.close(CloseReason.protocol_error);  // an unknown request
    },
  });
  const node = node_for(t, relay);
  node.joinTopic('room');
  const refused = next_event(node, 'topicRefused', () => true, 5000);
  const dropped = next_event(node, 'relay', (d) => d.retryInMs !== undefined, 5000);
  node.listen();
  const detail = await refused;
  assert.equal(detail.topic, 'room');
  assert.equal(detail.reason, 'unsupported');
  assert.match(detail.error.message, /this relay does not support topics/);
  assert.equal(detail.error.code, 'topics_unsupported');
  assert.equal((await dropped).error.code, 'topics_unsupported');
  await next_event(node, 'relay', (d) => d.state === 'connected', 5000);
  const second = relay.listeners()[1];
  await second.sync();
  assert.equal(second.of_type('joinTopic').length, 0, 'not asked again');
  // A new topic is refused at once, without asking (no second drop of the listener).
  const later = next_event(node, 'topicRefused', (d) => d.topic === 'later', 5000);
  node.joinTopic('later');
  assert.equal((await later).reason, 'unsupported');
  await second.sync();
  assert.equal(second.of_type('joinTopic').length, 0);
  assert.equal(relay.listeners().length, 2, 'still on the second listener');
});

test(`the remembered introductions per topic and relay: ${max_remembered_introductions}, then the oldest goes`, () => {
  const topics = new Topics();
  topics.join('room', true);
  const once = crypto.getRandomValues(new Uint8Array(32));
  assert.equal(topics.introduce('room', 'r1', once), true);
  assert.equal(topics.introduce('room', 'r1', once), false, 'once per listener connection');
  topics.relay_lost('r2');
  assert.equal(topics.introduce('room', 'r1', once), false, "another relay's loss changes nothing here");
  topics.relay_lost('r1');
  assert.equal(topics.accepts(once), true, 'still accepted after the listener is lost');
  assert.equal(topics.introduce('room', 'r1', once), true, 'news on the next listener');
  topics.leave('room');
  topics.join('room', true);
  const keys = Array.from({ length: max_remembered_introductions + 1 }, () => crypto.getRandomValues(new Uint8Array(32)));
  for (const key of keys.slice(0, max_remembered_introductions)) assert.equal(topics.introduce('room', 'r1', key), true);
  assert.equal(topics.introduce('room', 'r1', keys[0]), false, 'at the limit: all remembered');
  assert.equal(topics.accepts(keys[0]), true);
  assert.equal(topics.introduce('room', 'r2', keys[0]), true, 'another relay: its own introductions');
  assert.equal(topics.introduce('room', 'r1', keys[max_remembered_introductions]), true);
  assert.equal(topics.introduce('room', 'r1', keys[1]), false, 'the second oldest stays');
  topics.keep_relays(new Set(['r1']));
  assert.equal(topics.accepts(keys[0]), false, 'one past the limit: the oldest is forgotten (r2 dropped)');
  assert.equal(topics.introduce('room', 'r1', keys[0]), true, 'and is news again');
  assert.equal(topics.introduce('nowhere', 'r1', keys[2]), false, 'not joined');
  topics.join('room', false);
  assert.equal(topics.accepts(keys[2]), false, 'opted out');
  topics.join('room', true);
  assert.equal(topics.accepts(keys[2]), true);
  assert.equal(topics.leave('room'), true);
  assert.equal(topics.accepts(keys[2]), false, 'left');
  assert.equal(topics.leave('room'), false);
});
