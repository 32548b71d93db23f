// The app's reading of scanned, picked or pasted text (src/core.js) and its plain words
// (src/words.js), in Node: what each kind of input becomes, and that bad input gets a reason.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ready, readTicket, NotATicket, defaultRelayUrl, checkRelayUrl, keyText } from '../src/core.js';
import { relayStateWords, errorWords, byteWords } from '../src/words.js';

const vectors = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)),
  '../../../tests/vectors/offset-files.json'), 'utf8'));
const relayKey = 'HqOOWfe-0vh0Tg7e1ZDSd4CpEahjLenQB1Amjjbj3Wo';
const relayText = JSON.stringify({ publicKey: relayKey, address: '127.0.0.1:4567' }, null, 2);

before(() => ready());

test('a relay ticket is read as a relay', () => {
  const read = readTicket(relayText);
  assert.equal(read.kind, 'relay');
  assert.equal(keyText(read.ticket.publicKey), relayKey);
  assert.equal(read.ticket.address, '127.0.0.1:4567');
});

test('a friend ticket is read as a friend, with its relays', () => {
  const text = JSON.stringify({ publicKey: relayKey, relays: [JSON.parse(relayText)] });
  const read = readTicket(`  ${text}\n`);
  assert.equal(read.kind, 'friend');
  assert.equal(read.ticket.relays[0].address, '127.0.0.1:4567');
});

test('text that is not a ticket gets a reason naming what it reads', () => {
  assert.throws(() => readTicket('https://example.org/x'), (e) => e instanceof NotATicket &&
    /not a strelay ticket \(it reads "https:\/\/example\.org\/x"\)/.test(e.message));
  assert.throws(() => readTicket('[1, 2]'), NotATicket);
  assert.throws(() => readTicket('{"hello": 1}'), /neither a relay ticket nor a friend ticket/);
});

test('an identity file is refused as a ticket: it is a secret', () => {
  assert.throws(() => readTicket('{"privateKey": "AAAA"}'), /secret identity file/);
});

test('a ticket with a bad key or address says what is wrong', () => {
  const badKey = JSON.stringify({ publicKey: 'A'.repeat(43), address: 'a:1' });
  assert.throws(() => readTicket(badKey), (e) => e instanceof NotATicket && /cannot be used: .*publicKey/.test(e.message));
  const badPort = JSON.stringify({ publicKey: relayKey, address: 'a:65536' });
  assert.throws(() => readTicket(badPort), /cannot be used/);
});

test('the real tickets the Offset app ships are read; the invalid vectors are refused', () => {
  assert.ok(vectors.offset_relay_tickets.length >= 3);
  for (const v of vectors.offset_relay_tickets) {
    const read = readTicket(v.ticket_file);
    assert.equal(read.kind, 'relay', v.what);
    assert.equal(read.ticket.address, v.address, v.what);
  }
  assert.ok(vectors.invalid_tickets.length > 0);
  for (const v of vectors.invalid_tickets) {
    assert.throws(() => readTicket(v.ticket_file), NotATicket, v.what);
  }
});

test('the default WebSocket URL follows the page: ws from http, wss from https', () => {
  assert.equal(defaultRelayUrl('127.0.0.1:4567', 'http:'), 'ws://127.0.0.1:4567/strelay');
  assert.equal(defaultRelayUrl('[::1]:4567', 'https:'), 'wss://[::1]:4567/strelay');
  assert.equal(checkRelayUrl(' wss://relay.example.org/strelay '), 'wss://relay.example.org/strelay');
  assert.throws(() => checkRelayUrl('https://relay.example.org/'), /starts with wss:\/\//);
  assert.throws(() => checkRelayUrl('relay'), /not a URL/);
});

test('relay states and error codes have plain words', () => {
  assert.equal(relayStateWords('retrying', 4), 'Lost; retrying in 4 s');
  assert.match(relayStateWords('identity_mismatch'), /^Wrong relay.*ticket\)$/);
  assert.equal(relayStateWords('unreachable', 0), 'Unreachable: no answer at this address; retrying in 0 s');
  assert.match(errorWords({ code: 'not_allowed' }), /not in their friends/);
  assert.equal(errorWords({ code: 'weird', message: 'odd' }), 'odd');
  assert.equal(byteWords(2 * 1024 * 1024), '2.00 MiB');
});
