// npm run build: bundles the app (src/, clients/js/src, libsodium, jsqr, qrcode) into dist/
// with esbuild, copies the static files, and writes the service worker with the list of files
// and a version derived from their contents. dist/ is all a web server needs.
import * as esbuild from 'esbuild';
import { createHash } from 'node:crypto';
import { cp, mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, 'icons'), { recursive: true });

await esbuild.build({
  entryPoints: [join(here, 'src/main.js')],
  outfile: join(dist, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: ['chrome109', 'firefox115', 'safari16'],
  minify: true,
  sourcemap: false,
  legalComments: 'linked',
  // clients/js/src finds libsodium in clients/js/node_modules; this app's own node_modules is
  // the fallback, so either npm ci suffices for that package.
  nodePaths: [join(here, 'node_modules'), join(here, '../js/node_modules')],
  // Node-only modules that libsodium's and the library's code mention but never use in a
  // browser (and `ws`, which the library loads only under Node).
  external: ['fs', 'path', 'crypto', 'ws', 'node:*'],
  logLevel: 'warning',
});

for (const file of ['index.html', 'app.css', 'manifest.webmanifest']) {
  await cp(join(here, file), join(dist, file));
}
for (const icon of await readdir(join(here, 'icons'))) {
  await cp(join(here, 'icons', icon), join(dist, 'icons', icon));
}

const files = ['./', 'index.html', 'app.js', 'app.css', 'manifest.webmanifest',
  ...(await readdir(join(dist, 'icons'))).map((f) => `icons/${f}`)];
const hash = createHash('sha256');
for (const file of files.slice(1)) hash.update(await readFile(join(dist, file)));
const version = hash.digest('hex').slice(0, 12);
const sw = (await readFile(join(here, 'sw.template.js'), 'utf8'))
  .replace('__VERSION__', version).replace('__FILES__', JSON.stringify(files));
await writeFile(join(dist, 'sw.js'), sw);
console.log(`build: dist/ written (version ${version})`);
