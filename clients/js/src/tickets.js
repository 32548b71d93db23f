// Relay tickets (*.relay) and friend tickets (*.friend), in Offset's format
// (docs/file-formats.md; common/tickets.cpp). A ticket value is {publicKey, address}, or
// {publicKey, relays: [...]}, with publicKey a Uint8Array(32) and address 'host:port'.
import { file_error, StrelayError } from './errors.js';
import { try_parse_file_json, fields_problem, string_problem } from './file_json.js';
import { try_parse_key, publicKeyToString, is_valid_identity_key } from './keys.js';
import { try_parse_address, format_address } from './address.js';
import { max_ticket_file_bytes, max_friend_ticket_relays } from './protocol.js';

function relay_from_json(object) {
  const problem = fields_problem(object, ['publicKey', 'address'], 'a relay ticket') ||
                  string_problem(object, 'publicKey') || string_problem(object, 'address');
  if (problem) return { error: problem };
  const key = try_parse_key(object.publicKey, '"publicKey"');
  if (key.error) return key;
  const address = try_parse_address(object.address);
  if (address.error) return address;
  return { ticket: { publicKey: key.key, address: format_address(address.address) } };
}

function friend_from_json(object) {
  const problem = fields_problem(object, ['publicKey', 'relays'], 'a friend ticket') ||
                  string_problem(object, 'publicKey');
  if (problem) return { error: problem };
  const key = try_parse_key(object.publicKey, '"publicKey"');
  if (key.error) return key;
  const relays = object.relays;
  if (!Array.isArray(relays)) return { error: '"relays" must be an array of relay tickets' };
  if (relays.length === 0 || relays.length > max_friend_ticket_relays) {
    return { error: `"relays" has ${relays.length} relays; a friend ticket names 1 to ${max_friend_ticket_relays}` };
  }
  const out = [];
  for (const [i, relay] of relays.entries()) {
    const where = `"relays"[${i}]: `;
    if (relay === null || typeof relay !== 'object' || Array.isArray(relay)) {
      return { error: where + 'must be a relay ticket object' };
    }
    const parsed = relay_from_json(relay);
    if (parsed.error) return { error: where + parsed.error };
    out.push(parsed.ticket);
  }
  return { ticket: { publicKey: key.key, relays: out } };
}

// The kind a parsed file shows by a field only that kind has, or '' (common/tickets.cpp).
function distinctive_kind(object) {
  if (Object.hasOwn(object, 'privateKey')) return 'an identity file';
  if (Object.hasOwn(object, 'relays')) return 'a friend ticket';
  if (Object.hasOwn(object, 'address')) return 'a relay ticket';
  return '';
}

function parse_ticket(text, source, parse, kind) {
  text = String(text);
  if (new TextEncoder().encode(text).length > max_ticket_file_bytes) {
    throw file_error(source, `is ${text.length} bytes, more than the ${max_ticket_file_bytes} a ticket may have`);
  }
  const json = try_parse_file_json(text);
  if (json.error) throw file_error(source, json.error);
  const found = distinctive_kind(json.json);
  if (found && found !== kind) throw file_error(source, `is ${found}, not ${kind}`);
  const parsed = parse(json.json);
  if (parsed.error) throw file_error(source, parsed.error);
  return parsed.ticket;
}

export function parseRelayTicket(text, source = 'relay ticket') {
  return parse_ticket(text, source, relay_from_json, 'a relay ticket');
}

export function parseFriendTicket(text, source = 'friend ticket') {
  return parse_ticket(text, source, friend_from_json, 'a friend ticket');
}

// Checks a ticket value built by code (not parsed), so a bad one fails here, not on the wire.
export function checked_relay_ticket(ticket) {
  if (!ticket || !is_valid_identity_key(ticket.publicKey)) {
    throw new StrelayError('bad_ticket', 'a relay ticket needs a valid 32-byte publicKey');
  }
  const address = try_parse_address(String(ticket.address));
  if (address.error) throw new StrelayError('bad_ticket', `relay ticket: ${address.error}`);
  return { publicKey: ticket.publicKey, address: format_address(address.address) };
}

function relay_json(ticket) {
  const checked = checked_relay_ticket(ticket);
  return { publicKey: publicKeyToString(checked.publicKey), address: checked.address };
}

// The file text, exactly as stmgr writes it: 2-space indent, no trailing newline.
export function formatRelayTicket(ticket) {
  return JSON.stringify(relay_json(ticket), null, 2);
}

export function formatFriendTicket(ticket) {
  return JSON.stringify({
    publicKey: publicKeyToString(ticket.publicKey),
    relays: ticket.relays.map(relay_json),
  }, null, 2);
}
