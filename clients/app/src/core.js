// The app's one door to the node library (clients/js): tickets, keys and the default WebSocket
// URL of a relay. Everything that reads text a user scanned, picked or pasted goes through
// readTicket(), so every screen refuses bad input with the same plain words.

import {
  ready, Identity, Node, StrelayError,
  parseRelayTicket, formatRelayTicket, parseFriendTicket, formatFriendTicket,
  publicKeyToString,
} from '../../js/src/index.js';

export { ready, Identity, Node, StrelayError, formatRelayTicket, formatFriendTicket };

// Keys may come from the library as bytes or as text; the app shows and stores text.
export function keyText(key) {
  return typeof key === 'string' ? key : publicKeyToString(key);
}

// The first characters of a key: enough for a person to tell keys apart on screen.
export function shortKey(key) {
  return keyText(key).slice(0, 8);
}

export class NotATicket extends Error {}

// What a scanned, picked or pasted text is: {kind: 'relay'|'friend', ticket, text}.
// Throws NotATicket with a sentence a person understands.
export function readTicket(text) {
  const trimmed = String(text).trim();
  let json;
  try {
    json = JSON.parse(trimmed);
  } catch {
    throw new NotATicket(`This is not a strelay ticket (it reads "${preview(trimmed)}").`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new NotATicket(`This is not a strelay ticket (it reads "${preview(trimmed)}").`);
  }
  if ('privateKey' in json) {
    throw new NotATicket('This is a secret identity file, not a ticket. ' +
      'To use it as this app\'s identity, import it on the "Me" screen.');
  }
  try {
    if ('relays' in json) return { kind: 'friend', ticket: parseFriendTicket(trimmed), text: trimmed };
    if ('address' in json) return { kind: 'relay', ticket: parseRelayTicket(trimmed), text: trimmed };
  } catch (error) {
    throw new NotATicket(`This ticket cannot be used: ${error.message}`);
  }
  throw new NotATicket('This is JSON, but neither a relay ticket nor a friend ticket.');
}

function preview(text) {
  const oneLine = text.replace(/\s+/g, ' ');
  return oneLine.length > 60 ? `${oneLine.slice(0, 57)}...` : oneLine;
}

// ws://HOST:PORT/strelay, or wss:// when the app itself came over https (a browser refuses
// plain ws:// from an https page). A relay behind a TLS proxy gets a URL set by the user.
export function defaultRelayUrl(address, pageProtocol = globalThis.location?.protocol) {
  const scheme = pageProtocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${address}/strelay`;
}

// An override must be a ws:// or wss:// URL; returns the cleaned URL or throws.
export function checkRelayUrl(text) {
  let url;
  try {
    url = new URL(String(text).trim());
  } catch {
    throw new Error('This is not a URL (it should look like wss://relay.example.org/strelay).');
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new Error('A relay URL starts with wss:// (or ws:// without TLS).');
  }
  return url.href;
}
