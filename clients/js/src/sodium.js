// libsodium, compiled to WebAssembly (libsodium-wrappers-sumo): the same library as the relay.
// Every primitive of the protocol comes from here; nothing cryptographic is written by hand.
import sodium_module from 'libsodium-wrappers-sumo';

let loaded = null;

// Loads libsodium once; every other call of the library needs it to have resolved.
export async function ready() {
  await sodium_module.ready;
  loaded = sodium_module;
}

export function sodium() {
  if (loaded === null) throw new Error('strelay: call await ready() before using the library');
  return loaded;
}

// Overwrites secret bytes in place (keys, chaining keys, seeds) once they are no longer needed.
export function wipe(bytes) {
  if (bytes instanceof Uint8Array && bytes.length > 0) sodium().memzero(bytes);
}
