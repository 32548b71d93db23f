// The service worker: keeps the app's own files so the app opens offline. It caches nothing
// else: tickets, identities and messages never pass through here (they live in IndexedDB and
// on WebSockets, which a service worker does not see). build.mjs fills in VERSION and FILES.
const VERSION = '__VERSION__';
const FILES = __FILES__;
const CACHE = `strelay-app-${VERSION}`;

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((n) => n.startsWith('strelay-app-') && n !== CACHE)
      .map((n) => caches.delete(n))))
    .then(() => self.clients.claim()));
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  const scope = new URL(self.registration.scope);
  const path = url.pathname.startsWith(scope.pathname) ? url.pathname.slice(scope.pathname.length) : null;
  const name = path === '' ? './' : path;
  if (name === null || !FILES.includes(name)) return;  // not one of the app's files: untouched
  event.respondWith(caches.open(CACHE).then(async (cache) =>
    (await cache.match(name)) ?? fetch(request)));
});
