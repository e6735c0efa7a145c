import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/**
 * Headless Chromium for browser tests of the companion's pages, driven by playwright-core.
 * The browser is the system's (Debian's `chromium` package, installed by .ci/run); playwright's
 * own browser downloads are never used. CHROMIUM_PATH overrides the location.
 */
export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Repository root: compiled tests run from dist/test/helpers/. */
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export const ARTIFACTS_DIR = process.env.FIELDLINK_ARTIFACTS ?? join(REPO_ROOT, '.artifacts', 'screenshots');

export interface Viewport {
  width: number;
  height: number;
}

export const DESKTOP: Viewport = { width: 1280, height: 800 };
export const PHONE: Viewport = { width: 390, height: 844 };

export interface OpenedPage {
  page: Page;
  /** Console messages of type error and uncaught page errors, as they happen. */
  errors: string[];
}

export interface TestBrowser {
  context: BrowserContext;
  /** A new tab at `viewport` (default DESKTOP); each tab has its own sessionStorage. */
  open(viewport?: Viewport): Promise<OpenedPage>;
}

/** The part of a tap test the helper needs (keeps it independent of tap's types). */
interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * Launches Chromium with a fresh temporary profile; `t.teardown` closes it and removes the
 * profile even when the test fails. A missing browser fails the test with a message saying
 * how to install it: CI installs it, so skipping would hide a broken setup. `args` are extra
 * Chromium switches (e.g. a fake camera).
 */
export async function launchBrowser(t: Teardown, opts: { args?: string[] } = {}): Promise<TestBrowser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `Chromium not found at ${CHROMIUM_PATH}: install it with \`apt-get install -y --no-install-recommends chromium\` ` +
        '(.ci/run does) or set CHROMIUM_PATH. Never `npx playwright install`: browser downloads are not used.',
    );
  }
  const profile = mkdtempSync(join(tmpdir(), 'fieldlink-chromium-'));
  const launched: { context?: BrowserContext } = {};
  t.teardown(async () => {
    try {
      await launched.context?.close();
    } catch {
      // already gone (crashed or closed by the test)
    }
    rmSync(profile, { recursive: true, force: true });
  });
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS, ...(opts.args ?? [])],
    viewport: DESKTOP,
    timeout: 20_000,
    // A fixed zone (unless the caller set one) keeps the page's clock times predictable.
    env: { ...process.env, TZ: process.env.TZ ?? 'UTC' },
  });
  launched.context = ctx;
  ctx.setDefaultTimeout(10_000);
  // The persistent context opens one blank tab at launch; close it so only the test's tabs exist.
  for (const p of ctx.pages()) await p.close();

  return {
    context: ctx,
    async open(viewport = DESKTOP) {
      const page = await ctx.newPage();
      await page.setViewportSize(viewport);
      const errors: string[] = [];
      page.on('console', (msg) => {
        if (msg.type() === 'error') errors.push(`console: ${msg.text()}`);
      });
      page.on('pageerror', (err) => errors.push(`pageerror: ${err.message}`));
      return { page, errors };
    },
  };
}

/** Writes a full-page PNG to ARTIFACTS_DIR (created if needed) and returns its path. */
export async function saveScreenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS_DIR, { recursive: true });
  const file = join(ARTIFACTS_DIR, `${name.replace(/[^A-Za-z0-9._-]+/g, '-')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
