// Test helpers: the repository's frozen vectors (tests/vectors/, shared with the C++ tests).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

export const repo_root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

export function read_vector(name) {
  return JSON.parse(readFileSync(path.join(repo_root, 'tests/vectors', name), 'utf8'));
}

export function read_repo_file(relative) {
  return readFileSync(path.join(repo_root, relative));
}

export const hex = (text) => Uint8Array.from(Buffer.from(text, 'hex'));
export const to_hex = (bytes) => Buffer.from(bytes).toString('hex');
