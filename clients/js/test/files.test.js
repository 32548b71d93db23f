// Identity files and tickets reproduce tests/vectors/offset-files.json: the same files, byte
// for byte, as stmgr and Offset write them, and the same one-line refusals as the C++ parser
// (tests/tickets_test.cpp, tests/identity_file_test.cpp).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { ready } from '../src/sodium.js';
import {
  Identity, parseRelayTicket, formatRelayTicket, parseFriendTicket, formatFriendTicket,
  publicKeyToString, publicKeyFromString,
} from '../src/index.js';
import { read_vector } from './support/vectors.js';

before(ready);
const vectors = () => read_vector('offset-files.json');

test('identity files: the public key derives from the seed, and toFile() writes the same bytes', () => {
  for (const v of vectors().identities) {
    const identity = Identity.parseFile(v.identity_file);
    assert.equal(publicKeyToString(identity.publicKey), v.public_key);
    assert.equal(identity.toFile(), v.identity_file);
    const ticket = { publicKey: identity.publicKey, address: '127.0.0.1:4567' };
    assert.equal(formatRelayTicket(ticket), v['relay_ticket_for_address_127.0.0.1:4567']);
    assert.ok(!String(identity).includes(JSON.parse(v.identity_file).privateKey));
    assert.ok(!JSON.stringify(identity).includes(JSON.parse(v.identity_file).privateKey));
  }
});

test("Offset's three real relay tickets load and are written back byte for byte", () => {
  for (const v of vectors().offset_relay_tickets) {
    const t = parseRelayTicket(v.ticket_file);
    assert.equal(publicKeyToString(t.publicKey), v.public_key);
    assert.equal(t.address, v.address);
    assert.equal(formatRelayTicket(t), v.ticket_file);
  }
});

test('every invalid ticket vector is refused with the C++ cause', () => {
  const expected = {
    'standard base64 alphabet instead of base64url': "\"publicKey\": character '/' at offset 2 is not in the base64url alphabet",
    "base64url with '=' padding": "\"publicKey\": padding '=' is not allowed (base64url without padding)",
    'key of 31 bytes': '"publicKey" is 42 characters (31 bytes), expected 43 (a base64url Ed25519 public key)',
    'key of 33 bytes (must not be truncated to 32)': '"publicKey" is 44 characters (33 bytes), expected 43 (a base64url Ed25519 public key)',
    'not a valid Ed25519 point (non-canonical encoding)': '"publicKey" is not a valid Ed25519 public key: a non-canonical encoding',
    'small-order Ed25519 point (identity element)': '"publicKey" is not a valid Ed25519 public key: a small-order point',
    'address without port': 'address "relay.example.org": missing :port (expected host:port)',
    'port 65536': 'address "relay.example.org:65536": port 65536 is out of range 1..65535',
    'port 0': 'address "relay.example.org:0": port 0 is out of range 1..65535',
    'address longer than 256 bytes': 'address is 269 bytes, longer than the 256 allowed',
    'missing publicKey': 'missing field "publicKey"',
    'not JSON': 'not valid JSON (syntax error at line 1, column 1)',
  };
  const invalid = vectors().invalid_tickets;
  assert.equal(invalid.length, Object.keys(expected).length);
  for (const v of invalid) {
    assert.throws(() => parseRelayTicket(v.ticket_file, 'r.relay'),
                  { code: 'bad_file', message: `r.relay: ${expected[v.what]}` }, v.what);
  }
});

test('invalid identity files are refused, never truncated, and the message holds no key', () => {
  const [legacy, short] = vectors().invalid_identities;
  assert.throws(() => Identity.parseFile(legacy.identity_file, 'a.ident'), (e) =>
    e.message.startsWith('a.ident: "privateKey" is 85 bytes: this is the old Offset') &&
    !e.message.includes(JSON.parse(legacy.identity_file).privateKey));
  assert.throws(() => Identity.parseFile(short.identity_file, 'b.ident'),
                { message: 'b.ident: "privateKey" is 42 characters (31 bytes), expected 43 (a base64url Ed25519 seed)' });
});

test('strict JSON: duplicate and unknown fields, nesting, non-objects are refused', () => {
  const key = vectors().offset_relay_tickets[0].public_key;
  const cases = [
    [`{"publicKey": "${key}", "publicKey": "${key}", "address": "a.b:1"}`, 'duplicate field "publicKey"'],
    [`{"publicKey": "${key}", "address": "a.b:1", "name": "x"}`, 'unknown field "name" (a relay ticket has exactly "publicKey" and "address")'],
    ['"a:1"', 'expected a JSON object, found a string'],
    [`{"publicKey": 5, "address": "a.b:1"}`, '"publicKey" must be a string, not a number'],
    ['   ', 'is empty (expected a JSON object)'],
    [`{"publicKey": "${key}", "address": [[["x"]]]}`, 'nesting is deeper than 3 levels'],
  ];
  for (const [text, cause] of cases) {
    assert.throws(() => parseRelayTicket(text, 't'), { message: `t: ${cause}` }, text);
  }
});

test('addresses: names, IPv4, bracketed IPv6; the bad ones named', () => {
  const key = vectors().offset_relay_tickets[0].public_key;
  const ticket = (address) => `{"publicKey": "${key}", "address": ${JSON.stringify(address)}}`;
  for (const good of ['relay.example.org:1', '1.2.3.4:65535', '[::1]:4567', '[2001:db8::1]:80', '[::ffff:1.2.3.4]:9']) {
    assert.equal(parseRelayTicket(ticket(good)).address, good);
  }
  const bad = {
    '::1:80': 'an IPv6 address must be written in brackets, e.g. [::1]:4567',
    '1.2.3:80': '"1.2.3" is not a valid IPv4 address',
    'a.org:080': 'port "080" has a leading zero',
    'a.org:+80': 'port "+80" is not a decimal number',
    '[fe80::1%eth0]:80': '"fe80::1%eth0" is not a valid IPv6 address',
    '-a.org:80': 'host "-a.org" has a label that starts or ends with \'-\'',
    'a..org:80': 'host "a..org" has an empty label',
  };
  for (const [address, cause] of Object.entries(bad)) {
    assert.throws(() => parseRelayTicket(ticket(address), 't'), { message: `t: address ${JSON.stringify(address)}: ${cause}` });
  }
  const long = 'a'.repeat(63) + '.';
  assert.equal(parseRelayTicket(ticket(long.repeat(4).slice(0, 253) + ':1')).address.length, 255);
  assert.throws(() => parseRelayTicket(ticket(long.repeat(4).slice(0, 254) + ':1'), 't'), /host is 254 bytes, longer than the 253 a DNS name may have/);
});

test('friend tickets: 1 to 16 relays, each checked with its index; format round-trips', () => {
  const relays = vectors().offset_relay_tickets.map((v) => JSON.parse(v.ticket_file));
  const key = vectors().identities[0].public_key;
  const text = (list) => JSON.stringify({ publicKey: key, relays: list }, null, 2);
  const t = parseFriendTicket(text(relays));
  assert.equal(t.relays.length, 3);
  assert.equal(formatFriendTicket(t), text(relays));
  const sixteen = Array.from({ length: 16 }, () => relays[0]);
  assert.equal(parseFriendTicket(text(sixteen)).relays.length, 16);
  assert.throws(() => parseFriendTicket(text([...sixteen, relays[0]]), 'f'), { message: 'f: "relays" has 17 relays; a friend ticket names 1 to 16' });
  assert.throws(() => parseFriendTicket(text([]), 'f'), { message: 'f: "relays" has 0 relays; a friend ticket names 1 to 16' });
  assert.throws(() => parseFriendTicket(text([relays[0], { ...relays[1], address: 'a.org:65536' }]), 'f'),
                { message: 'f: "relays"[1]: address "a.org:65536": port 65536 is out of range 1..65535' });
});

test('public keys: text round trip; invalid points refused', () => {
  const key = vectors().identities[1].public_key;
  assert.equal(publicKeyToString(publicKeyFromString(key)), key);
  assert.throws(() => publicKeyFromString('AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'), /small-order point/);
  const id = Identity.generate();
  assert.deepEqual(Identity.parseFile(id.toFile()).publicKey, id.publicKey);
  const seed = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(publicKeyToString(Identity.fromSeed(seed).publicKey), vectors().identities[0].public_key);
});

test('a ticket of the wrong kind is named, as the C++ parser names it', () => {
  const key = 'qV7tSW_1SOs4jWJgPOTXnPYslk4F9h-DyloziANiGTw';
  const relay = `{"publicKey": "${key}", "address": "a.org:1"}`;
  assert.throws(() => parseRelayTicket(`{"publicKey": "${key}", "relays": [${relay}]}`, 'bob.friend'),
                { message: 'bob.friend: is a friend ticket, not a relay ticket' });
  assert.throws(() => parseFriendTicket(relay, 'relay.relay'),
                { message: 'relay.relay: is a relay ticket, not a friend ticket' });
  assert.throws(() => parseFriendTicket(`{"privateKey": "${key}"}`, 'alice.ident'),
                { message: 'alice.ident: is an identity file, not a friend ticket' });
});
