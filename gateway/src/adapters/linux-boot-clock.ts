import { readFileSync } from 'node:fs';
import { FieldlinkError } from '../../../common/errors.js';
import type { BootClock } from '../ports/clock-trust.js';

/** The kernel's random id for the current boot; a new one is generated at every boot. */
export const BOOT_ID_PATH = '/proc/sys/kernel/random/boot_id';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export interface LinuxBootClockOptions {
  /** Reads a text file; `fs.readFileSync(path, 'utf8')` unless a test injects one. */
  readonly readFile?: (path: string) => string;
}

/**
 * The boot id and a monotonic clock counting from this boot. The id is read once: a process
 * never outlives the boot it started in.
 *
 * `process.hrtime.bigint()` is libuv's `uv_hrtime()`, which on Linux reads CLOCK_MONOTONIC. That
 * clock starts at (about) zero when the kernel boots, is never stepped by NTP or `date -s`, and
 * does not count time spent suspended (a Pi does not suspend). So "ms since boot" and "the boot
 * id" together name an instant even while the wall clock still says 1970.
 *
 * Fails with BOOT_ID_UNREADABLE when the id cannot be read or is not a UUID.
 */
export function linuxBootClock(opts: LinuxBootClockOptions = {}): BootClock {
  const readFile = opts.readFile ?? ((path: string) => readFileSync(path, 'utf8'));
  let raw: string;
  try {
    raw = readFile(BOOT_ID_PATH);
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new FieldlinkError('BOOT_ID_UNREADABLE', {
      message: `cannot read the boot id from ${BOOT_ID_PATH}: ${reason}`,
      cause,
      details: { path: BOOT_ID_PATH },
    });
  }
  const bootId = raw.trim();
  if (!UUID.test(bootId)) {
    throw new FieldlinkError('BOOT_ID_UNREADABLE', {
      message: `the boot id in ${BOOT_ID_PATH} is not a UUID: ${JSON.stringify(bootId.slice(0, 80))}`,
      details: { path: BOOT_ID_PATH },
    });
  }
  return {
    bootId,
    // Whole microseconds first, so the Number stays exact for centuries of uptime.
    sinceBootMs: () => Number(process.hrtime.bigint() / 1000n) / 1000,
  };
}
