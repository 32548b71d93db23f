// Node against relays that misbehave, without strelay: a TCP server that accepts and then
// says nothing (a hung relay, or admission control holding a connection).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { ready, Node, Identity, tcpCarrier } from '../src/index.js';
import { FrameKind, CloseReason } from '../src/protocol.js';
import { next_event, wait_for } from './support/processes.js';
import { fake_relay } from './support/fake_relay.js';

before(ready);

async function silent_server(t) {
  const sockets = new Set();
  const server = net.createServer((s) => { sockets.add(s); s.on('error', () => {}); });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(resolve); }));
  return { publicKey: Identity.generate().publicKey, address: `127.0.0.1:${server.address().port}` };
}

const tcp = { carrier: (relay) => tcpCarrier(relay.address, { timeout_ms: 2000 }) };

test('a silent relay: the listener reports it unreachable after the attempt timeout, with a retry', async (t) => {
  const relay = await silent_server(t);
  const node = new Node({ identity: Identity.generate(), relays: [relay], ...tcp,
                          timers: { connect_timeout_ms: 300, backoff: { initial_ms: 100, cap_ms: 400 } } });
  t.after(() => node.close());
  const started = Date.now();
  const down = next_event(node, 'relay', (d) => d.state === 'unreachable', 5000);
  node.listen();
  const detail = await down;
  assert.equal(detail.error.code, 'relay_unreachable');
  assert.ok(Date.now() - started >= 250, 'not before the timeout');
  assert.ok(detail.retryInMs >= 0 && detail.retryInMs <= 100);
  await next_event(node, 'relay', (d) => d.state === 'connecting', 5000);  // it tries again
});

test('close() abandons an attempt in progress at once', async (t) => {
  const relay = await silent_server(t);
  const node = new Node({ identity: Identity.generate(), relays: [relay], ...tcp, timers: { connect_timeout_ms: 20_000 } });
  const connecting = next_event(node, 'relay', (d) => d.state === 'connecting');
  node.listen();
  await connecting;
  await new Promise((r) => setTimeout(r, 100));
  const started = Date.now();
  const closed = next_event(node, 'relay', (d) => d.state === 'closed', 5000);
  await node.close();
  await closed;
  assert.ok(Date.now() - started < 2000, `closed in ${Date.now() - started} ms`);
});

test('connect() over a silent relay and a closed port: relay_unreachable, one failure per relay', async (t) => {
  const silent = await silent_server(t);
  const closed_port = { publicKey: Identity.generate().publicKey, address: '127.0.0.1:1' };
  const node = new Node({ identity: Identity.generate(), ...tcp, timers: { connect_timeout_ms: 300 } });
  t.after(() => node.close());
  await assert.rejects(node.connect({ publicKey: Identity.generate().publicKey, relays: [silent, closed_port] }), (e) => {
    assert.equal(e.code, 'relay_unreachable');
    assert.deepEqual(e.failures.map((f) => f.error.code), ['relay_unreachable', 'relay_unreachable']);
    assert.deepEqual(e.failures.map((f) => f.relay.address), [silent.address, closed_port.address]);
    return true;
  });
  await assert.rejects(node.connect({ publicKey: Identity.generate().publicKey, relays: [] }), { code: 'relay_unreachable' });
  assert.throws(() => new Node({ identity: Identity.generate(), relays: [{ publicKey: new Uint8Array(32), address: 'x:1' }] }), { code: 'bad_ticket' });
});

test('a listener link answers the relay, pings it in silence and declares it dead', async (t) => {
  // ListenOk, one ping, then nothing: a relay whose host vanished without a FIN.
  const relay = await fake_relay(t, {
    answer_pings: false,
    on_listen: (c) => c.channel.send(FrameKind.ping, Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 9)),
  });
  const node = new Node({ identity: Identity.generate(), relays: [relay.ticket], ...tcp,
                          timers: { keepalive_ms: 100, dead_peer_ms: 500, backoff: { initial_ms: 100, cap_ms: 200 } } });
  t.after(() => node.close());
  const up = next_event(node, 'relay', (d) => d.state === 'connected', 5000);
  node.listen();
  await up;
  const started = Date.now();
  const down = await next_event(node, 'relay', (d) => d.retryInMs !== undefined, 5000);
  assert.equal(down.error.code, 'peer_gone');
  assert.ok(Date.now() - started >= 350, `dead after the timeout (${Date.now() - started} ms)`);
  const first = relay.connections[0];
  assert.equal(first.request.type, 'listen');
  assert.ok(first.frames.includes(FrameKind.pong), 'it answered the relay\'s ping');
  assert.ok(first.frames.filter((k) => k === FrameKind.ping).length >= 2, 'it pinged the silent relay');
  await wait_for(() => first.frames.includes(FrameKind.close), 2000, `the close: ${first.frames}`);
  assert.deepEqual(first.received.at(-1), { type: 'close', reason: CloseReason.dead_peer }, 'and told it dead_peer, last');
});

test('a relay of another protocol version answers with its preamble: unsupported_version', async (t) => {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.once('data', () => socket.end(Buffer.from('strelay\x02', 'latin1')));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(resolve); }));
  const relay = { publicKey: Identity.generate().publicKey, address: `127.0.0.1:${server.address().port}` };
  const node = new Node({ identity: Identity.generate(), ...tcp, timers: { connect_timeout_ms: 2000 } });
  t.after(() => node.close());
  await assert.rejects(node.connect({ publicKey: Identity.generate().publicKey, relays: [relay] }),
                       (e) => e.code === 'unsupported_version' && /version 2/.test(e.message));
});
