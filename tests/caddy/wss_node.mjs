// A JavaScript node (clients/js) over wss:// through a TLS reverse proxy, for the proxy tests
// (tests/caddy_test.sh): it connects to a friend's key through a relay, sends a file, reads
// the friend's bytes until its end, and prints what it got.
//
//   node wss_node.mjs IDENT RELAY_TICKET PEER_KEY URL CA_FILE SOURCE IN_FILE OUT_FILE
//
// URL: wss://HOST:PORT/strelay (the proxy); CA_FILE: the proxy's certificate, trusted as a CA
// (never verification off); SOURCE: the local address to dial from (a client "elsewhere").
// Prints "wss_node: sent N received M" and exits 0, or prints the error and exits 1.
import { readFileSync, writeFileSync } from 'node:fs';
import { ready, Node, Identity, parseRelayTicket, publicKeyFromString } from '../../clients/js/src/index.js';

const [ident, relay_file, peer, url, ca_file, source, in_file, out_file] = process.argv.slice(2);
if (!out_file) {
  console.error('usage: node wss_node.mjs IDENT RELAY_TICKET PEER_KEY URL CA_FILE SOURCE IN_FILE OUT_FILE');
  process.exit(2);
}
await ready();
const identity = Identity.parseFile(readFileSync(ident, 'utf8'), ident);
const relay = parseRelayTicket(readFileSync(relay_file, 'utf8'), relay_file);
const node = new Node({
  identity,
  url: () => url,
  ws: { ca: readFileSync(ca_file), localAddress: source },
  timers: { connect_timeout_ms: 10_000 },
});
try {
  const stream = await node.connect({ publicKey: publicKeyFromString(peer), relays: [relay] });
  const data = readFileSync(in_file);
  const reading = (async () => {
    const chunks = [];
    for await (const chunk of stream) chunks.push(Buffer.from(chunk));
    return Buffer.concat(chunks);
  })();
  for (let at = 0; at < data.length; at += 100_000) await stream.write(data.subarray(at, at + 100_000));
  await stream.end();
  const got = await reading;
  writeFileSync(out_file, got);
  console.log(`wss_node: sent ${data.length} received ${got.length}`);
  await node.close();
  process.exit(0);
} catch (e) {
  console.log(`wss_node: ${e.code ?? 'error'}: ${e.message}`);
  await node.close();
  process.exit(1);
}
