import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const LOGIN_DEFS = ['UID_MIN 1000', 'UID_MAX 60000', 'SYS_UID_MIN 100', 'SYS_UID_MAX 999', 'GID_MIN 1000', 'GID_MAX 60000', 'SYS_GID_MIN 100', 'SYS_GID_MAX 999', 'ENCRYPT_METHOD SHA512', ''].join('\n');

/**
 * A root filesystem as `useradd --root` needs it (passwd, group, shadow, gshadow, login.defs)
 * with the groups a Raspberry Pi OS image has (dialout, bluetooth), removed at teardown.
 */
export function makeTempRoot(t: { teardown(fn: () => unknown): void }): string {
  const root = mkdtempSync(join(tmpdir(), 'fieldlink-root-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'etc'));
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n');
  writeFileSync(join(root, 'etc/group'), 'root:x:0:\ndialout:x:20:pi\nbluetooth:x:112:\npi:x:1000:\n');
  writeFileSync(join(root, 'etc/shadow'), 'root:*:20000:0:99999:7:::\npi:*:20000:0:99999:7:::\n', { mode: 0o640 });
  writeFileSync(join(root, 'etc/gshadow'), 'root:*::\ndialout:*::pi\nbluetooth:*::\npi:!::\n', { mode: 0o640 });
  writeFileSync(join(root, 'etc/login.defs'), LOGIN_DEFS);
  return root;
}
