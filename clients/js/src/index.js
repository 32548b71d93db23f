// strelay's node library in JavaScript: the public API (docs/node-library.md, "The JavaScript
// library"). First commit: the binding shape, so the app can code against it; bodies follow.

function not_implemented() {
  throw new Error('not implemented yet');
}

export class StrelayError extends Error {
  constructor(code, message) {
    super(message ?? code);
    this.name = 'StrelayError';
    this.code = code;
  }
}

export async function ready() { not_implemented(); }

export class Identity {
  static generate() { not_implemented(); }
  static fromSeed(_seed) { not_implemented(); }
  static parseFile(_text) { not_implemented(); }
  toFile() { not_implemented(); }
  get publicKey() { return not_implemented(); }
}

export function parseRelayTicket(_text) { not_implemented(); }
export function formatRelayTicket(_ticket) { not_implemented(); }
export function parseFriendTicket(_text) { not_implemented(); }
export function formatFriendTicket(_ticket) { not_implemented(); }
export function publicKeyToString(_key) { not_implemented(); }
export function publicKeyFromString(_text) { not_implemented(); }

export class Node extends EventTarget {
  constructor(_options) { super(); not_implemented(); }
  listen() { not_implemented(); }
  setRelays(_relays) { not_implemented(); }
  setFriends(_friends) { not_implemented(); }
  async connect(_target) { not_implemented(); }
  async close() { not_implemented(); }
}
