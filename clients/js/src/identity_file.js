// Identities: an Ed25519 seed, in Offset's identity file format (docs/file-formats.md;
// common/identity_file.cpp). An identity only ever signs.
import { sodium, wipe } from './sodium.js';
import { file_error } from './errors.js';
import { try_parse_file_json, fields_problem, string_problem } from './file_json.js';
import { key_length_problem, try_from_base64url, to_base64url } from './base64url.js';
import { key_bytes, max_identity_file_bytes, offset_legacy_identity_bytes } from './protocol.js';

const secret = Symbol('identity secret');

export class Identity {
  // Use Identity.generate(), fromSeed() or parseFile().
  constructor(token, seed) {
    if (token !== secret) throw new TypeError('use Identity.generate, fromSeed or parseFile');
    const pair = sodium().crypto_sign_seed_keypair(seed);
    this.#seed = Uint8Array.from(seed);
    this.#secret_key = pair.privateKey;
    this.publicKey = pair.publicKey;
    Object.freeze(this);
  }

  #seed;
  #secret_key;

  static generate() {
    const seed = sodium().randombytes_buf(key_bytes);
    try {
      return new Identity(secret, seed);
    } finally {
      wipe(seed);
    }
  }

  static fromSeed(seed) {
    if (!(seed instanceof Uint8Array) || seed.length !== key_bytes) {
      throw new TypeError(`an identity seed is ${key_bytes} bytes`);
    }
    return new Identity(secret, seed);
  }

  static parseFile(text, source = 'identity file') {
    text = String(text);
    if (new TextEncoder().encode(text).length > max_identity_file_bytes) {
      throw file_error(source, `is ${text.length} bytes, more than the ${max_identity_file_bytes} an identity file may have`);
    }
    const json = try_parse_file_json(text);
    if (json.error) throw file_error(source, json.error);
    const problem = fields_problem(json.json, ['privateKey'], 'an identity file') ||
                    string_problem(json.json, 'privateKey');
    if (problem) throw file_error(source, problem);
    // The old format's 85 bytes are 114 characters: that case has its own message below.
    const length = json.json.privateKey.length === 114 ? '' : key_length_problem(json.json.privateKey, key_bytes);
    if (length) throw file_error(source, `"privateKey" ${length} (a base64url Ed25519 seed)`);
    const decoded = try_from_base64url(json.json.privateKey);
    if (decoded.error) throw file_error(source, `"privateKey": ${decoded.error}`);
    const seed = decoded.bytes;
    try {
      if (seed.length === offset_legacy_identity_bytes) {
        throw file_error(source, '"privateKey" is 85 bytes: this is the old Offset <= 0.1.10 ' +
            'identity format (PKCS#8), which is not supported; generate a new identity with stmgr gen-ident');
      }
      if (seed.length !== key_bytes) {
        throw file_error(source, `"privateKey" is ${seed.length} bytes, expected ${key_bytes} (an Ed25519 seed)`);
      }
      return new Identity(secret, seed);
    } finally {
      wipe(seed);
    }
  }

  // The identity file's text, exactly as stmgr writes it. It holds the secret: store it as one.
  toFile() {
    return `{\n  "privateKey": "${to_base64url(this.#seed)}"\n}`;
  }

  // Ed25519 signature of message (the handshake's ctx || h).
  sign(message) {
    return sodium().crypto_sign_detached(message, this.#secret_key);
  }

  // Never prints the secret.
  toString() { return '[strelay Identity]'; }
  toJSON() { return { publicKey: to_base64url(this.publicKey) }; }
  [Symbol.for('nodejs.util.inspect.custom')]() { return this.toString(); }
}
