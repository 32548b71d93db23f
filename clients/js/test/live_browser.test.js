// The library in headless Chromium (Debian's /usr/bin/chromium), with the browser's native
// WebSocket: the page (test/browser/page.html, served here with an import map for libsodium)
// connects to a JS node in Node through a WebSocket front to a real strelay, sends 2 MiB,
// receives 2 MiB, and posts the SHA-256 of both back.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { ready, Node, formatFriendTicket } from '../src/index.js';
import { Scene, next_event } from './support/processes.js';
import { fast, exchange, carrier_for } from './support/nodes.js';

before(ready);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const chromium = process.env.STRELAY_CHROMIUM ?? '/usr/bin/chromium';
const types = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.html': 'text/html', '.wasm': 'application/wasm' };

// One HTTP server: the page and the library's files, /setup and /result, and a WebSocket at
// /strelay that carries bytes to the relay's TCP port (closing when the relay's side ends).
async function serve(t, relay_port, setup) {
  let deliver;
  const result = new Promise((resolve) => { deliver = resolve; });
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/setup') return res.end(JSON.stringify(setup()));
    if (url.pathname === '/result') {
      let body = '';
      req.on('data', (d) => { body += d; });
      req.on('end', () => { res.end('ok'); deliver(JSON.parse(body)); });
      return undefined;
    }
    const file = path.join(root, url.pathname === '/' ? 'test/browser/page.html' : url.pathname);
    if (!file.startsWith(root) || !existsSync(file)) { res.statusCode = 404; return res.end(); }
    res.setHeader('content-type', types[path.extname(file)] ?? 'application/octet-stream');
    return res.end(await readFile(file));
  });
  const wss = new WebSocketServer({ server, path: '/strelay' });
  wss.on('connection', (socket) => {
    const tcp = net.connect({ port: relay_port, host: '127.0.0.1', allowHalfOpen: true });
    socket.on('message', (data) => tcp.write(data));
    tcp.on('data', (data) => socket.send(data));
    tcp.on('end', () => socket.close());
    socket.on('close', () => tcp.end());
    const abort = () => { tcp.destroy(); socket.terminate(); };
    socket.on('error', abort);
    tcp.on('error', abort);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => {
    for (const c of wss.clients) c.terminate();
    server.closeAllConnections();
    server.close(resolve);
  }));
  return { port: server.address().port, result };
}

// 'tcp': strelay without WebSocket, reached through this file's bridge; 'ws': strelay's own
// WebSocket carrier, reached directly (the page's origin differs from the relay's).
for (const kind of carrier_for.kinds()) {
test(`the library in Chromium (native WebSocket) talks to a JS node through strelay (${kind === 'ws' ? 'its own WebSocket' : 'a WebSocket bridge'}): 2 MiB each way`, async (t) => {
  assert.ok(existsSync(chromium), `${chromium} exists (apt-get install chromium; or set STRELAY_CHROMIUM)`);
  const scene = new Scene(t);
  const relay = await scene.relay('r1');
  const browser_id = scene.identity('browser');
  const bob = scene.identity('bob');
  const bytes = 2 << 20;
  const ws_url = () => (kind === 'ws' ? `ws://${relay.ticket.address}/strelay` : `ws://127.0.0.1:${web.port}/strelay`);
  const listener = new Node({ identity: bob, relays: [relay.ticket], friends: [browser_id.publicKey],
                              url: ws_url, timers: fast });
  const web = await serve(t, relay.port, () => ({
    identity: browser_id.toFile(), bytes, url: ws_url(),
    friend: formatFriendTicket({ publicKey: bob.publicKey, relays: [relay.ticket] }),
  }));
  t.after(() => listener.close());
  const up = next_event(listener, 'relay', (d) => d.state === 'connected');
  listener.listen();
  await up;
  const incoming = next_event(listener, 'incoming', () => true, 60_000);
  scene.spawn(chromium, ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
                         `--user-data-dir=${scene.file('chromium')}`, `http://127.0.0.1:${web.port}/`], { group: true });
  const { stream } = await incoming;
  const down = new Uint8Array(bytes).map((_, i) => (i * 13) & 0xff);
  const got = await exchange(stream, down);
  const result = await Promise.race([web.result, new Promise((_, reject) => setTimeout(() => reject(new Error('no result from the page in 60 s')), 60_000))]);
  assert.equal(result.ok, true, `the page failed: ${result.code} ${result.message}`);
  const sent = new Uint8Array(bytes).map((_, i) => (i * 7) & 0xff);
  assert.equal(got.sha, createHash('sha256').update(sent).digest('hex'), 'the browser\'s bytes arrive intact');
  assert.equal(result.sent_sha, got.sha);
  assert.equal(result.got_sha, createHash('sha256').update(down).digest('hex'), 'our bytes arrive intact in the browser');
  assert.equal(result.got_bytes, bytes);
  assert.equal(result.error, null, 'a clean end in the browser');
  assert.equal(result.websocket, 'function');
});
}
