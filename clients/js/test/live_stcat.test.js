// A JS node and stcat (the C++ library) end to end through a real strelay, in both roles:
// one contract, two implementations. stcat dials the relay over TCP; the JS node uses the
// carrier named by STRELAY_JS_CARRIER ('tcp', or 'ws' once the relay speaks WebSocket).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, writeFileSync, readFileSync } from 'node:fs';
import { ready, Node, publicKeyToString } from '../src/index.js';
import { Scene, stcat_path, next_event, wait_for } from './support/processes.js';
import { carrier_for, fast, exchange } from './support/nodes.js';

before(ready);

const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');
const mib = 16;

// After its close, a C++ node half-closes TCP (FIN). Toward a WebSocket node the relay keeps the
// WebSocket open after that FIN, so the JS node's answering close still reaches stcat and both
// ends see a clean end (docs/protocol.md, "Carriers").

for (const kind of carrier_for.kinds()) {
  test(`stcat connects to a JS listener (${kind}): ${mib} MiB each way, SHA-256 equal, half-close, exit 0`, async (t) => {
    const scene = new Scene(t);
    const relay = await scene.relay('r1', carrier_for.relay_options(kind));
    const alice = scene.identity('alice');  // stcat
    const bob = scene.identity('bob');      // JS
    scene.stmgr('friend-ticket', '--idfile', scene.file('bob.ident'), '--relay', relay.ticket_file, '--output', scene.file('bob.friend'));
    const listener = new Node({ identity: bob, relays: [relay.ticket], friends: [alice.publicKey], timers: fast, ...carrier_for(kind, relay) });
    t.after(() => listener.close());
    const up = next_event(listener, 'relay', (d) => d.state === 'connected');
    listener.listen();
    await up;
    const up_data = randomBytes(mib << 20);
    const down_data = new Uint8Array(randomBytes(mib << 20));
    writeFileSync(scene.file('up.bin'), up_data);
    const incoming = next_event(listener, 'incoming');
    const stcat = scene.spawn(stcat_path(), ['connect', '-v', '--idfile', scene.file('alice.ident'), '--to', scene.file('bob.friend')], { stdin: 'pipe' });
    createReadStream(scene.file('up.bin')).pipe(stcat.stdin);
    const out = createWriteStream(scene.file('down.bin'));
    stcat.stdout.pipe(out);
    // Listened for now: a stcat that ends early has its output finished long before we wait.
    const written = new Promise((resolve) => out.on('finish', resolve));
    const { stream } = await incoming;
    assert.equal(publicKeyToString(stream.peer), publicKeyToString(alice.publicKey));
    const closed = next_event(stream, 'close', () => true, 60_000);
    const got = await exchange(stream, down_data);
    assert.equal(got.sha, sha(up_data), 'the bytes from stcat arrive intact');
    const [code] = await Promise.all([stcat.exited, written]);
    assert.equal(code, 0, `stcat exits 0: ${stcat.stderr_text.slice(-400)}`);
    assert.equal(sha(readFileSync(scene.file('down.bin'))), sha(down_data), 'the bytes to stcat arrive intact');
    assert.equal((await closed).error, null);
  });

  test(`a JS node connects to an stcat listener (${kind}): ${mib} MiB each way, SHA-256 equal, half-close, exit 0`, async (t) => {
    const scene = new Scene(t);
    const relay = await scene.relay('r1', carrier_for.relay_options(kind));
    const alice = scene.identity('alice');  // JS
    const bob = scene.identity('bob');      // stcat
    const down_data = randomBytes(mib << 20);
    writeFileSync(scene.file('down.bin'), down_data);
    const stcat = scene.spawn(stcat_path(), ['listen', '-v', '--backoff-initial', '0.2', '--idfile', scene.file('bob.ident'),
                                             '--relay', relay.ticket_file, '--allow', publicKeyToString(alice.publicKey)], { stdin: 'pipe' });
    createReadStream(scene.file('down.bin')).pipe(stcat.stdin);
    const out = createWriteStream(scene.file('up.out'));
    stcat.stdout.pipe(out);
    // Listened for now: a stcat that ends early has its output finished long before we wait.
    const written = new Promise((resolve) => out.on('finish', resolve));
    await wait_for(() => /listening on relay/.test(stcat.stderr_text), 10_000, 'stcat to listen');
    const connector = new Node({ identity: alice, timers: fast, ...carrier_for(kind, relay) });
    t.after(() => connector.close());
    const stream = await connector.connect({ publicKey: bob.publicKey, relays: [relay.ticket] });
    const up_data = new Uint8Array(randomBytes(mib << 20));
    const closed = next_event(stream, 'close', () => true, 60_000);
    const got = await exchange(stream, up_data);
    assert.equal(got.sha, sha(down_data), 'the bytes from stcat arrive intact');
    const [code] = await Promise.all([stcat.exited, written]);
    assert.equal(code, 0, `stcat exits 0: ${stcat.stderr_text.slice(-400)}`);
    assert.equal(sha(readFileSync(scene.file('up.out'))), sha(up_data), 'the bytes to stcat arrive intact');
    assert.equal((await closed).error, null);
  });

  test(`an stcat listener's friend list refuses a JS stranger (${kind}): rejected`, async (t) => {
    const scene = new Scene(t);
    const relay = await scene.relay('r1', carrier_for.relay_options(kind));
    const alice = scene.identity('alice');
    const bob = scene.identity('bob');
    const carol = scene.identity('carol');
    const stcat = scene.spawn(stcat_path(), ['listen', '-v', '--idfile', scene.file('bob.ident'),
                                             '--relay', relay.ticket_file, '--allow', publicKeyToString(carol.publicKey)], { stdin: 'pipe' });
    await wait_for(() => /listening on relay/.test(stcat.stderr_text), 10_000, 'stcat to listen');
    const connector = new Node({ identity: alice, timers: fast, ...carrier_for(kind, relay) });
    t.after(() => connector.close());
    await assert.rejects(connector.connect({ publicKey: bob.publicKey, relays: [relay.ticket] }), { name: 'StrelayError', code: 'rejected' });
  });
}
