// wss:// through nginx (tests/nginx/start.sh: Debian's nginx on loopback, TLS with a fresh
// self-signed certificate, /strelay upgraded and passed to the relay with X-Forwarded-For):
// two JS nodes talk end to end through it. The certificate is accepted by passing it as the
// CA to the ws package (Node option `ws: {ca}`), never by turning verification off; without
// it the connection is refused.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ready, Node } from '../src/index.js';
import { Scene, next_event, wait_for } from './support/processes.js';
import { exchange, fast } from './support/nodes.js';
import { repo_root } from './support/vectors.js';

before(ready);
const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');

async function nginx_in_front(scene, relay) {
  // tests/nginx/start.sh comes with the relay's WebSocket carrier (STRELAY_NGINX_START overrides).
  const start = process.env.STRELAY_NGINX_START ?? path.join(repo_root, 'tests/nginx/start.sh');
  const child = scene.spawn(start, [String(relay.port)],
                            { name: 'nginx', stop_signal: 'SIGTERM', capture_stdout: true });
  const line = await wait_for(() => /nginx https_port=(\d+) cert=(\S+)/.exec(child.stdout_text), 20_000,
                              `nginx to start: ${child.stderr_text}`);
  return { url: `wss://localhost:${line[1]}/strelay`, ca: readFileSync(line[2]) };
}

test('two JS nodes over wss:// through nginx: 4 MiB each way, SHA-256 equal, a clean end', async (t) => {
  const scene = new Scene(t);
  // nginx (127.0.0.1) passes the client's address in X-Forwarded-For: the relay believes it
  // only from a trusted proxy, and refuses the upgrade otherwise.
  const relay = await scene.relay('r1', { extra: ['--trusted-proxy', '127.0.0.1'] });
  const front = await nginx_in_front(scene, relay);
  const alice = scene.identity('alice');
  const bob = scene.identity('bob');
  const via_nginx = { url: () => front.url, ws: { ca: front.ca }, timers: fast };
  const listener = new Node({ identity: bob, relays: [relay.ticket], friends: [alice.publicKey], ...via_nginx });
  const connector = new Node({ identity: alice, ...via_nginx });
  t.after(() => Promise.all([listener.close(), connector.close()]));
  const up = next_event(listener, 'relay', (d) => d.state === 'connected');
  listener.listen();
  await up;
  const incoming = next_event(listener, 'incoming');
  const stream = await connector.connect({ publicKey: bob.publicKey, relays: [relay.ticket] });
  const { stream: accepted } = await incoming;
  const up_data = new Uint8Array(randomBytes(4 << 20));
  const down_data = new Uint8Array(randomBytes(4 << 20));
  const closed = Promise.all([next_event(stream, 'close', () => true, 60_000), next_event(accepted, 'close', () => true, 60_000)]);
  const [at_bob, at_alice] = await Promise.all([exchange(accepted, down_data), exchange(stream, up_data)]);
  assert.equal(at_bob.sha, sha(up_data));
  assert.equal(at_alice.sha, sha(down_data));
  for (const { error } of await closed) assert.equal(error, null);
  // The relay saw the WebSocket through nginx, from the forwarded client address.
  assert.match(relay.log(), /websocket/i);
});

test('wss:// through nginx without its CA: the certificate is refused, relay_unreachable', async (t) => {
  const scene = new Scene(t);
  const relay = await scene.relay('r1', { extra: ['--trusted-proxy', '127.0.0.1'] });
  const front = await nginx_in_front(scene, relay);
  const node = new Node({ identity: scene.identity('alice'), url: () => front.url, timers: fast });
  t.after(() => node.close());
  await assert.rejects(node.connect({ publicKey: scene.identity('bob').publicKey, relays: [relay.ticket] }),
                       (e) => e.code === 'relay_unreachable' && /certificate/i.test(e.failures[0].error.message));
});
