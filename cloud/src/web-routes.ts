import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * The companion's browser pages: the operator's fleet page (`/fleet`), the fleet map (`/map`)
 * and the phone pairing page (`/pair`), static HTML, JS and CSS from cloud/web/ at the
 * repository root, plus jsQR's browser build (the pairing page's QR decoder) from node_modules.
 * The pages are public (no token needed to load them); they ask for a token and send it to the
 * JSON API as a bearer header. Compiled code runs from dist/cloud/src/, the files stay in cloud/web/.
 */
export const WEB_DIR = new URL('../../../cloud/web/', import.meta.url);

/** The camera (getUserMedia into a <video> via srcObject) needs nothing beyond this. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

type Kind = 'html' | 'js' | 'css';

const CONTENT_TYPES: Record<Kind, string> = {
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
};

interface WebFile {
  route: string;
  /** A file name in the web directory, or an absolute file URL (vendored packages). */
  file: string | URL;
  kind: Kind;
}

/** jsQR's browser build (UMD, sets `window.jsQR`): the package's main file. */
function jsQrFile(): URL {
  return pathToFileURL(createRequire(import.meta.url).resolve('jsqr'));
}

function webFiles(): WebFile[] {
  return [
    { route: '/fleet', file: 'fleet.html', kind: 'html' },
    { route: '/pair', file: 'pair.html', kind: 'html' },
    { route: '/map', file: 'map.html', kind: 'html' },
    { route: '/web/client.js', file: 'client.js', kind: 'js' },
    { route: '/web/fleet.js', file: 'fleet.js', kind: 'js' },
    { route: '/web/fleet.css', file: 'fleet.css', kind: 'css' },
    { route: '/web/pair.js', file: 'pair.js', kind: 'js' },
    { route: '/web/map.js', file: 'map.js', kind: 'js' },
    { route: '/web/map.css', file: 'map.css', kind: 'css' },
    { route: '/web/pair.css', file: 'pair.css', kind: 'css' },
    { route: '/web/vendor/jsQR.js', file: jsQrFile(), kind: 'js' },
  ];
}

function loadWebFiles(dir: URL): { route: string; kind: Kind; body: Buffer }[] {
  const path = fileURLToPath(dir);
  if (!existsSync(path)) {
    throw new Error(`cloud web pages not found: expected the directory ${path} (cloud/web/ at the repository root, next to dist/)`);
  }
  return webFiles().map(({ route, file, kind }) => {
    const url = typeof file === 'string' ? new URL(file, dir) : file;
    if (!existsSync(url)) throw new Error(`cloud web page missing: ${fileURLToPath(url)}`);
    return { route, kind, body: readFileSync(url) };
  });
}

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer');
}

/**
 * `GET /` (redirect to /fleet), the pages and their assets (webFiles()); public, hidden from OpenAPI. Pages
 * are `no-store` (they are tiny and change with deployments), assets `no-cache` (revalidated).
 */
export function registerWebRoutes(app: FastifyInstance, opts: { dir?: URL } = {}): void {
  const files = loadWebFiles(opts.dir ?? WEB_DIR);
  const route = { config: { public: true }, schema: { hide: true } } as const;

  app.get('/', route, async (_req, reply) => securityHeaders(reply).redirect('/fleet', 302));
  for (const { route: path, kind, body } of files) {
    const cache = kind === 'html' ? 'no-store' : 'no-cache';
    app.get(path, route, async (_req, reply) => securityHeaders(reply).header('cache-control', cache).type(CONTENT_TYPES[kind]).send(body));
  }
}
