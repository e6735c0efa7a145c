import { existsSync, readFileSync } from 'node:fs';
import t from 'tap';
import { isFieldlinkError } from '../../../common/errors.js';
import { BOOT_ID_PATH, linuxBootClock } from '../../../gateway/src/adapters/linux-boot-clock.js';

const onLinux = process.platform === 'linux' && existsSync(BOOT_ID_PATH);

t.test('reads the real boot id', { skip: onLinux ? false : 'needs Linux with /proc/sys/kernel/random/boot_id' }, async (t) => {
  const clock = linuxBootClock();
  t.match(clock.bootId, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a UUID, newline trimmed');
  t.equal(clock.bootId, readFileSync(BOOT_ID_PATH, 'utf8').trim());
  t.equal(linuxBootClock().bootId, clock.bootId, 'the same within one boot');
});

t.test('sinceBootMs is monotonic and counts from boot', { skip: onLinux ? false : 'needs Linux' }, async (t) => {
  const clock = linuxBootClock();
  let previous = clock.sinceBootMs();
  for (let i = 0; i < 1000; i++) {
    const now = clock.sinceBootMs();
    t.ok(now >= previous, 'never goes backwards');
    previous = now;
  }
  const before = clock.sinceBootMs();
  await new Promise((r) => setTimeout(r, 50));
  const elapsed = clock.sinceBootMs() - before;
  t.ok(elapsed >= 45 && elapsed < 2000, `advances with time (${elapsed} ms for a 50 ms wait)`);
  // /proc/uptime counts from boot too (CLOCK_BOOTTIME, which adds time suspended), so
  // CLOCK_MONOTONIC since boot is at most that, and close to it on a machine that never slept.
  const uptimeMs = Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
  t.ok(clock.sinceBootMs() <= uptimeMs + 1000, `not ahead of uptime (${clock.sinceBootMs()} vs ${uptimeMs})`);
  t.ok(clock.sinceBootMs() > 0);
});

t.test('an unreadable boot id fails with BOOT_ID_UNREADABLE, naming the file and the cause', async (t) => {
  const cause = Object.assign(new Error("ENOENT: no such file or directory, open '/proc/sys/kernel/random/boot_id'"), { code: 'ENOENT' });
  let read = '';
  let thrown: unknown;
  try {
    linuxBootClock({
      readFile: (path) => {
        read = path;
        throw cause;
      },
    });
  } catch (e) {
    thrown = e;
  }
  t.equal(read, BOOT_ID_PATH);
  t.ok(isFieldlinkError(thrown, 'BOOT_ID_UNREADABLE'), 'a FieldlinkError with the code');
  if (!isFieldlinkError(thrown)) return;
  t.equal(thrown.retryable, false);
  t.match(thrown.message, /cannot read the boot id from \/proc\/sys\/kernel\/random\/boot_id: ENOENT/);
  t.equal(thrown.cause, cause);
  t.same(thrown.details, { path: BOOT_ID_PATH });
});

t.test('a boot id that is not a UUID is refused', async (t) => {
  t.throws(() => linuxBootClock({ readFile: () => '\n' }), { code: 'BOOT_ID_UNREADABLE', message: /not a UUID/ });
  t.throws(() => linuxBootClock({ readFile: () => 'garbage' }), { code: 'BOOT_ID_UNREADABLE' });
});

t.test('an injected boot id is trimmed', async (t) => {
  const clock = linuxBootClock({ readFile: () => '0d8a3c2e-1f2b-4c5d-8e9f-0a1b2c3d4e5f\n' });
  t.equal(clock.bootId, '0d8a3c2e-1f2b-4c5d-8e9f-0a1b2c3d4e5f');
});
