// Strict JSON for identity files and tickets (docs/file-formats.md, common/file_json.cpp):
// one object, no duplicate field, at most 3 levels of nesting, and messages that give a
// position but never quote the text (it may hold a private key).
import { max_file_json_depth } from './protocol.js';
import { quote } from './address.js';

function position_of(text, offset) {
  let line = 1;
  let column = 1;
  for (let i = 0; i < Math.min(offset, text.length); ++i) {
    if (text[i] === '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return `line ${line}, column ${column}`;
}

function described_type(value) {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

// Walks text that JSON.parse accepted, for what JSON.parse does not report: a field given
// twice in one object (JSON.parse keeps the last), and nesting deeper than the limit.
function structure_problem(text) {
  const open = [];  // per open object its Set of keys; null for an array
  for (let i = 0; i < text.length; ++i) {
    const c = text[i];
    if (c === '{' || c === '[') {
      if (open.length >= max_file_json_depth) return `nesting is deeper than ${max_file_json_depth} levels`;
      open.push(c === '{' ? new Set() : null);
    } else if (c === '}' || c === ']') {
      open.pop();
    } else if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      let next = end + 1;
      while (' \t\r\n'.includes(text[next])) ++next;
      const keys = open[open.length - 1];
      if (text[next] === ':' && keys) {
        const key = JSON.parse(text.slice(i, end + 1));
        if (keys.has(key)) return `duplicate field ${quote(key)}`;
        keys.add(key);
      }
      i = end;
    }
  }
  return '';
}

function viable_prefix(text) {
  try {
    JSON.parse(text);
    return true;
  } catch (e) {
    return /end of JSON input|Unterminated string|Expected .* after/.test(String(e.message)) ||
           text.trim().length === 0;
  }
}

function syntax_error_offset(text) {
  let low = 0;  // viable
  let high = text.length;  // not viable
  while (high - low > 1) {
    const mid = (low + high) >> 1;
    if (viable_prefix(text.slice(0, mid))) low = mid;
    else high = mid;
  }
  while (low > 0 && /[A-Za-z]/.test(text[low - 1])) --low;  // a bad literal: its first letter
  return low;
}

// Returns {json} (an object) or {error}.
export function try_parse_file_json(text) {
  if (/^[ \t\r\n]*$/.test(text)) return { error: 'is empty (expected a JSON object)' };
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    // The engine's message may quote the input, and its position is not always given: the
    // offset of the first byte that no valid document can have is found by bisection over
    // prefixes (a prefix is viable when it parses or ends too early).
    return { error: `not valid JSON (syntax error at ${position_of(text, syntax_error_offset(text))})` };
  }
  const problem = structure_problem(text);
  if (problem) return { error: problem };
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    return { error: `expected a JSON object, found ${described_type(json)}` };
  }
  return { json };
}

// Exactly these fields: a missing or unknown field is refused. Returns the cause or ''.
export function fields_problem(object, names, what) {
  for (const name of names) {
    if (!Object.hasOwn(object, name)) return `missing field ${quote(name)}`;
  }
  for (const key of Object.keys(object)) {
    if (!names.includes(key)) {
      const expected = names.map(quote);
      const list = expected.length > 1
          ? expected.slice(0, -1).join(', ') + ' and ' + expected[expected.length - 1]
          : expected[0];
      return `unknown field ${quote(key)} (${what} has exactly ${list})`;
    }
  }
  return '';
}

export function string_problem(object, name) {
  const value = object[name];
  return typeof value === 'string' ? '' : `${quote(name)} must be a string, not ${described_type(value)}`;
}
