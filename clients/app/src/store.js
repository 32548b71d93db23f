// What the app keeps on the phone, in IndexedDB: the identity file (the private key never leaves
// the device unless the user exports it), the relays with their optional WebSocket URL, and the
// friends with the names the user gave them. One object store of small values, read at start
// and written whole on each change: the data is a few kilobytes, so nothing cleverer is needed.

const DB_NAME = 'strelay-app';
const STORE_NAME = 'kv';

function openDb() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE_NAME);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function run(db, mode, action) {
  return new Promise((resolve, reject) => {
    const tx = db.transaction(STORE_NAME, mode);
    const request = action(tx.objectStore(STORE_NAME));
    tx.oncomplete = () => resolve(request.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export class Store {
  #db;

  static async open() {
    const store = new Store();
    store.#db = await openDb();
    return store;
  }

  get(key) {
    return run(this.#db, 'readonly', (s) => s.get(key));
  }

  set(key, value) {
    return run(this.#db, 'readwrite', (s) => s.put(value, key));
  }

  delete(key) {
    return run(this.#db, 'readwrite', (s) => s.delete(key));
  }
}
