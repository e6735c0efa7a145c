import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * The operator's fleet page: static HTML, JS and CSS from cloud/web/ at the repository root.
 * The page is public (no token needed to load it); it asks for a token and sends it to the JSON
 * API as a bearer header. Compiled code runs from dist/cloud/src/, the files stay in cloud/web/.
 */
export const WEB_DIR = new URL('../../../cloud/web/', import.meta.url);

export const CONTENT_SECURITY_POLICY =
  "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'";

const WEB_FILES = ['fleet.html', 'fleet.js', 'fleet.css'] as const;
type WebFile = (typeof WEB_FILES)[number];

function loadWebFiles(dir: URL): Record<WebFile, Buffer> {
  const path = fileURLToPath(dir);
  if (!existsSync(path)) {
    throw new Error(`cloud web pages not found: expected the directory ${path} (cloud/web/ at the repository root, next to dist/)`);
  }
  const files = {} as Record<WebFile, Buffer>;
  for (const name of WEB_FILES) {
    const file = new URL(name, dir);
    if (!existsSync(file)) throw new Error(`cloud web page missing: ${fileURLToPath(file)}`);
    files[name] = readFileSync(file);
  }
  return files;
}

function securityHeaders(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', CONTENT_SECURITY_POLICY)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer');
}

/** `GET /` (redirect), `GET /fleet`, `GET /web/fleet.js`, `GET /web/fleet.css`; public, hidden from OpenAPI. */
export function registerWebRoutes(app: FastifyInstance, opts: { dir?: URL } = {}): void {
  const files = loadWebFiles(opts.dir ?? WEB_DIR);
  const route = { config: { public: true }, schema: { hide: true } } as const;

  app.get('/', route, async (_req, reply) => securityHeaders(reply).redirect('/fleet', 302));
  app.get('/fleet', route, async (_req, reply) =>
    securityHeaders(reply).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(files['fleet.html']),
  );
  app.get('/web/fleet.js', route, async (_req, reply) =>
    securityHeaders(reply).header('cache-control', 'no-cache').type('text/javascript; charset=utf-8').send(files['fleet.js']),
  );
  app.get('/web/fleet.css', route, async (_req, reply) =>
    securityHeaders(reply).header('cache-control', 'no-cache').type('text/css; charset=utf-8').send(files['fleet.css']),
  );
}
