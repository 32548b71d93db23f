// A ticket's "host:port" (docs/file-formats.md), parsed as strictly as common/address.cpp.
import { max_address_bytes } from './protocol.js';

const max_dns_name_bytes = 253;
const max_dns_label_bytes = 63;
const ldh = /^[A-Za-z0-9-]$/;

// Quotes text for a one-line message: control and non-ASCII characters become \xNN.
export function quote(text) {
  let out = '"';
  for (const byte of new TextEncoder().encode(text)) {
    const c = String.fromCharCode(byte);
    out += byte >= 0x20 && byte < 0x7f && c !== '"' && c !== '\\'
        ? c : '\\x' + byte.toString(16).padStart(2, '0');
  }
  return out + '"';
}

function dns_name_problem(host) {
  if (host.length > max_dns_name_bytes) {
    return `host is ${host.length} bytes, longer than the ${max_dns_name_bytes} a DNS name may have`;
  }
  for (const label of host.split('.')) {
    if (label.length === 0) return `host ${quote(host)} has an empty label`;
    if (label.length > max_dns_label_bytes) {
      return `host label of ${label.length} bytes is longer than ${max_dns_label_bytes}`;
    }
    for (const c of label) {
      if (!ldh.test(c)) {
        return `host ${quote(host)} has character ${quote(c)}, which a DNS name may not contain ` +
               "(letters, digits, '-' and '.')";
      }
    }
    if (label.startsWith('-') || label.endsWith('-')) {
      return `host ${quote(host)} has a label that starts or ends with '-'`;
    }
  }
  return '';
}

// inet_pton(AF_INET) accepts exactly four decimal parts of 0..255 without leading zeros.
function is_ipv4(text) {
  const parts = text.split('.');
  return parts.length === 4 &&
         parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

// An IPv6 address as inet_pton(AF_INET6) takes it (no zone id): the platform's URL parser
// validates the address, so no address grammar is written here.
export function is_ipv6(text) {
  if (!/^[0-9A-Fa-f:.]+$/.test(text)) return false;
  try {
    new URL(`http://[${text}]/`);
    return true;
  } catch {
    return false;
  }
}

function host_problem(host) {
  if (host.length === 0) return "missing host before ':'";
  if (host.includes(':')) return 'an IPv6 address must be written in brackets, e.g. [::1]:4567';
  if (/^[0-9.]+$/.test(host)) return is_ipv4(host) ? '' : `${quote(host)} is not a valid IPv4 address`;
  return dns_name_problem(host);
}

function port_problem(text) {
  if (text.length === 0) return "missing port after ':'";
  if (!/^[0-9]+$/.test(text)) return `port ${quote(text)} is not a decimal number`;
  if (text.length > 1 && text[0] === '0') return `port ${quote(text)} has a leading zero`;
  if (text.length > 5 || Number(text) < 1 || Number(text) > 65535) {
    return `port ${text} is out of range 1..65535`;
  }
  return '';
}

// Returns {address: {host, port, ipv6}} or {error}. host has no brackets.
export function try_parse_address(text) {
  const bytes = new TextEncoder().encode(text).length;
  if (bytes > max_address_bytes) {
    return { error: `address is ${bytes} bytes, longer than the ${max_address_bytes} allowed` };
  }
  if (text.length === 0) return { error: 'address is empty (expected host:port)' };
  const fail = (cause) => ({ error: `address ${quote(text)}: ${cause}` });
  let host;
  let port_text;
  let ipv6 = false;
  if (text[0] === '[') {
    const close = text.indexOf(']');
    if (close < 0) return fail("missing ']' after the IPv6 address");
    host = text.slice(1, close);
    if (!is_ipv6(host)) return fail(`${quote(host)} is not a valid IPv6 address`);
    if (text[close + 1] !== ':') return fail("missing :port after ']'");
    port_text = text.slice(close + 2);
    ipv6 = true;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return fail('missing :port (expected host:port)');
    host = text.slice(0, colon);
    const problem = host_problem(host);
    if (problem) return fail(problem);
    port_text = text.slice(colon + 1);
  }
  const problem = port_problem(port_text);
  if (problem) return fail(problem);
  return { address: { host, port: Number(port_text), ipv6 } };
}

export function format_address({ host, port, ipv6 }) {
  return ipv6 ? `[${host}]:${port}` : `${host}:${port}`;
}
