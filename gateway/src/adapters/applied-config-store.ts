/**
 * Keeps the last applied desired document (and its `$version`) on disk, so a gateway that
 * reboots in standby — uplink closed, twin unreachable — runs with what the cloud last set, not
 * with the bare config file.
 *
 * Writes are atomic: a temp file beside the target is written, fsynced and renamed over it, then
 * the directory is fsynced; a power cut leaves the old file or the new one, never half of one.
 * Mode 0600: desired properties may name devices and places.
 *
 * A missing file is "nothing applied yet". A damaged file (bad JSON, wrong shape) is reported
 * through `onCorrupt`, moved aside as `<file>.corrupt` for inspection, and also treated as
 * "nothing applied": the file settings apply until the uplink's full-twin fetch restores it.
 */
import { open, readFile, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { FieldlinkError } from '../../../common/errors.js';
import type { JsonObject, VersionedDesired } from '../domain/twin-reconcile.js';
import type { AppliedConfigStore } from '../ports/applied-config-store.js';

/** File name of the store inside the gateway's data directory. */
export const APPLIED_CONFIG_FILE = 'applied-config.json';

const FORMAT = 'fieldlink.applied-config/1';

interface StoredFile {
  format: typeof FORMAT;
  version: number;
  desired: JsonObject;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface AppliedConfigStoreOptions {
  /** Called when the file exists but cannot be used; the store then behaves as if it were absent. */
  onCorrupt?: (error: FieldlinkError) => void;
}

export class JsonFileAppliedConfigStore implements AppliedConfigStore {
  readonly path: string;
  readonly #onCorrupt: (error: FieldlinkError) => void;

  constructor(path: string, opts: AppliedConfigStoreOptions = {}) {
    this.path = path;
    this.#onCorrupt = opts.onCorrupt ?? (() => undefined);
  }

  /** The stored document, or undefined when none was saved or the file is damaged. */
  async load(): Promise<VersionedDesired | undefined> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new FieldlinkError('APPLIED_CONFIG_STORE_FAILED', { message: `cannot read applied config ${this.path}`, cause, details: { path: this.path } });
    }
    let parsed: unknown;
    let why: string | undefined;
    try {
      parsed = JSON.parse(text) as unknown;
    } catch (cause) {
      why = cause instanceof Error ? cause.message : String(cause);
    }
    if (why === undefined) {
      if (!isObject(parsed) || parsed.format !== FORMAT) why = `not a ${FORMAT} file`;
      else if (typeof parsed.version !== 'number' || !Number.isSafeInteger(parsed.version) || parsed.version < 0) why = 'version is not a whole number ≥ 0';
      else if (!isObject(parsed.desired)) why = 'desired is not an object';
    }
    if (why !== undefined) {
      const aside = `${this.path}.corrupt`;
      try {
        await rename(this.path, aside);
      } catch {
        // Moving aside is for a human's later look; failing to do it changes nothing here.
      }
      this.#onCorrupt(
        new FieldlinkError('APPLIED_CONFIG_STORE_FAILED', {
          message: `applied config ${this.path} is damaged (${why}); moved to ${aside}, using the config file's settings until the twin is fetched`,
          retryable: false,
          details: { path: this.path, movedTo: aside },
        }),
      );
      return undefined;
    }
    const stored = parsed as unknown as StoredFile;
    return { version: stored.version, desired: stored.desired };
  }

  /** Replace the stored document atomically. */
  async save(applied: VersionedDesired): Promise<void> {
    const body: StoredFile = { format: FORMAT, version: applied.version, desired: applied.desired };
    const dir = dirname(this.path);
    const temp = join(dir, `.${basename(this.path)}.${process.pid}.tmp`);
    try {
      // A temp file left by a crash keeps its mode when reopened; start from none.
      await rm(temp, { force: true });
      const file = await open(temp, 'wx', 0o600);
      try {
        await file.writeFile(`${JSON.stringify(body, null, 2)}\n`);
        await file.sync();
      } finally {
        await file.close();
      }
      await rename(temp, this.path);
      await fsyncDir(dir);
    } catch (cause) {
      await rm(temp, { force: true });
      throw new FieldlinkError('APPLIED_CONFIG_STORE_FAILED', { message: `cannot write applied config ${this.path}`, cause, details: { path: this.path } });
    }
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  }
}
