/**
 * The OS files in hardware/ checked by the OS's own parsers: systemd-analyze (verify and the
 * offline security review), udev's rules parser, dbus-daemon's config loader. Each check is
 * first shown to catch a deliberately broken copy. Needs the Debian packages systemd, udev and
 * dbus (.ci/run installs them); the udev check needs root (rules go to /run/udev/rules.d).
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t, { type Test } from 'tap';

const HARDWARE = fileURLToPath(new URL('../../../hardware/', import.meta.url));
const UNIT = 'fieldlink-gateway.service';
const UNIT_FILE = join(HARDWARE, 'systemd', UNIT);
const RULES_FILE = join(HARDWARE, 'udev/99-fieldlink-serial.rules');
const POLICY_FILE = join(HARDWARE, 'dbus/fieldlink-gateway.conf');
/** The worst exposure we accept (0 = fully sandboxed, 10 = unprotected). */
const MAX_EXPOSURE = 2.0;

const has = (program: string): boolean => spawnSync('sh', ['-c', `command -v ${program}`]).status === 0;
/**
 * A reason to skip on a developer's machine without the tool; under .ci/run (which installs
 * them) FIELDLINK_REQUIRE_SYSTEM_TOOLS is set and the test runs, and fails, instead.
 */
const unlessRequired = (reason: string | false): string | false => (process.env.FIELDLINK_REQUIRE_SYSTEM_TOOLS ? false : reason);
const missing = (program: string, pkg: string): string | false => unlessRequired(has(program) ? false : `${program} not installed (apt-get install ${pkg})`);

function tempDir(t: Test, prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function run(program: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(program, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: `${r.stderr}${r.error === undefined ? '' : String(r.error)}` };
}

// ---------------------------------------------------------------- systemd

/**
 * A copy of the unit whose ExecStart binary exists here (verify checks that it is executable):
 * /usr/bin/node on the Pi; the node running this test where /usr/bin/node is absent.
 */
function unitCopy(t: Test, edit: (text: string) => string = (s) => s): string {
  const dir = tempDir(t, 'fieldlink-unit-');
  let text = readFileSync(UNIT_FILE, 'utf8');
  try {
    accessSync('/usr/bin/node', constants.X_OK);
  } catch {
    text = text.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `);
  }
  const file = join(dir, UNIT);
  writeFileSync(file, edit(text));
  return file;
}

/** verify's complaints about our unit: it exits 0 on unknown keys and bad values, so read stderr. */
function verify(file: string): { status: number | null; problems: string[]; other: string[] } {
  const r = run('systemd-analyze', ['verify', '--man=no', '--generators=no', file]);
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  const ours = (l: string): boolean => l.includes(file) || l.includes(UNIT);
  return { status: r.status, problems: lines.filter(ours), other: lines.filter((l) => !ours(l)) };
}

t.test('systemd-analyze verify passes on the unit', { skip: missing('systemd-analyze', 'systemd') }, async (t) => {
  const good = verify(unitCopy(t));
  for (const line of good.other) t.comment(`systemd-analyze (not about our unit): ${line}`);
  t.equal(good.status, 0, good.problems.join('\n'));
  t.same(good.problems, [], 'no warnings about the unit');

  const typo = verify(unitCopy(t, (s) => s.replace(/^Restart=on-failure$/m, 'Restrat=on-failure')));
  t.match(typo.problems.join('\n'), /Unknown key 'Restrat'/, 'a misspelt key is caught');
  const badValue = verify(unitCopy(t, (s) => s.replace(/^ProtectSystem=strict$/m, 'ProtectSystem=bogus')));
  t.match(badValue.problems.join('\n'), /bogus/, 'a bad value is caught');
  const noBinary = verify(unitCopy(t, (s) => s.replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node')));
  t.not(noBinary.status, 0, 'a missing ExecStart binary fails');
});

t.test('the unit is hardened: systemd-analyze security --offline', { skip: missing('systemd-analyze', 'systemd') }, async (t) => {
  const r = run('systemd-analyze', ['security', '--offline=yes', unitCopy(t)]);
  t.equal(r.status, 0, r.stderr);
  const exposure = /Overall exposure level for \S+: (\d+(?:\.\d+)?)/.exec(r.stdout)?.[1];
  t.ok(exposure !== undefined, `exposure reported:\n${r.stdout.slice(-400)}`);
  t.comment(`systemd-analyze security exposure: ${exposure} (0 safest, 10 unprotected)`);
  t.ok(Number(exposure) <= MAX_EXPOSURE, `exposure ${exposure} ≤ ${MAX_EXPOSURE}`);

  const text = readFileSync(UNIT_FILE, 'utf8');
  for (const line of [
    'User=fieldlink',
    'Restart=on-failure',
    'ProtectSystem=strict',
    'StateDirectory=fieldlink',
    'ReadWritePaths=/var/lib/fieldlink',
    'NoNewPrivileges=yes',
    'KillSignal=SIGTERM',
    'ExecStart=/usr/bin/node /opt/fieldlink/dist/cli/fieldlink.js gateway --config /etc/fieldlink/gateway.json',
  ]) {
    t.ok(text.split('\n').includes(line), line);
  }
  t.notMatch(text, /^MemoryDenyWriteExecute=yes/m, "V8's JIT needs W+X pages");
});

// ---------------------------------------------------------------- udev

const UDEV_RULES_DIR = '/run/udev/rules.d';
const udevSkip = missing('udevadm', 'udev') || unlessRequired(process.getuid?.() !== 0 ? 'needs root (rules go to /run/udev/rules.d)' : false);

/** Parses `text` as a rules file with udev's own parser; returns the diagnostics about it. */
function udevProblems(t: Test, text: string): { parsed: boolean; problems: string[] } {
  const hasVerify = run('udevadm', ['verify', '--help']).status === 0;
  if (hasVerify) {
    // systemd 254+: a real linter.
    const dir = tempDir(t, 'fieldlink-udev-');
    const file = join(dir, '99-fieldlink-serial.rules');
    writeFileSync(file, text);
    const r = run('udevadm', ['verify', file]);
    if (r.status === 0) return { parsed: true, problems: [] };
    const lines = `${r.stdout}${r.stderr}`.split('\n').filter((l) => l.trim() !== '');
    const ours = lines.filter((l) => l.includes(file));
    // A failure that names no line of ours (usage, permissions) is still a failure.
    return { parsed: true, problems: ours.length > 0 ? ours : lines.length > 0 ? lines : [`udevadm verify exited ${r.status}`] };
  }
  // systemd 252: `udevadm test` reads every rules file, ours from /run/udev/rules.d, and
  // reports each parse error as "<file>:<line> <message>". A unique name cannot shadow anything.
  const createdDir = !existsSync(UDEV_RULES_DIR);
  const file = join(UDEV_RULES_DIR, `99-fieldlink-serial-test-${process.pid}-${Date.now()}.rules`);
  mkdirSync(UDEV_RULES_DIR, { recursive: true });
  writeFileSync(file, text);
  try {
    const device = readdirSync('/sys/class/tty')[0];
    if (device === undefined) throw new Error('no device in /sys/class/tty to run udevadm test on');
    const r = run('udevadm', ['test', '--action=add', `/sys/class/tty/${device}`]);
    const output = `${r.stdout}\n${r.stderr}`;
    return { parsed: output.includes(`Reading rules file: ${file}`), problems: output.split('\n').filter((l) => l.startsWith(`${file}:`)) };
  } finally {
    rmSync(file, { force: true });
    if (createdDir) {
      try {
        rmdirSync(UDEV_RULES_DIR);
      } catch {
        // not empty: someone else's rules appeared meanwhile
      }
    }
  }
}

t.test('udev parses the rules without complaint', { skip: udevSkip }, async (t) => {
  const text = readFileSync(RULES_FILE, 'utf8');
  const good = udevProblems(t, text);
  t.ok(good.parsed, 'udev read our file');
  t.same(good.problems, [], 'no diagnostics');

  const broken = udevProblems(t, text.replace('SYMLINK=="serial0", SYMLINK+=', 'SYMLINK=="serial0", SYMLINKK+='));
  t.ok(broken.problems.length > 0, `a broken copy is caught: ${broken.problems.join('; ')}`);
  t.notOk(readdirSync(UDEV_RULES_DIR, { withFileTypes: true }).some((e) => e.name.startsWith('99-fieldlink-serial-test-')), 'cleaned up');
});

t.test('the rules name what the brief names', async (t) => {
  const text = readFileSync(RULES_FILE, 'utf8');
  for (const [vendor, product] of [['0403', '6001'], ['10c4', 'ea60'], ['1a86', '7523'], ['067b', '2303'], ['2341', '0043'], ['2341', '0042'], ['2a03', '0043'], ['2341', '8036']]) {
    t.match(text, `ATTRS{idVendor}=="${vendor}", ATTRS{idProduct}=="${product}"`, `${vendor}:${product}`);
  }
  t.match(text, 'SYMLINK+="fieldlink/uart"');
  t.match(text, 'GROUP="dialout", MODE="0660"');
});

// ---------------------------------------------------------------- D-Bus

/**
 * Starts dbus-daemon on a config that takes in `policyFile` as the system bus does
 * (`includedir`, which skips a file it cannot parse, saying so on stderr) or strictly
 * (`include`, which makes a bad file fatal); resolves with how that went.
 */
function startBus(t: Test, policyFile: string, how: 'include' | 'includedir'): Promise<{ started: boolean; stderr: string }> {
  const dir = tempDir(t, 'fieldlink-dbus-policy-');
  const policyDir = join(dir, 'system.d');
  mkdirSync(policyDir);
  const policy = join(policyDir, 'fieldlink-gateway.conf');
  copyFileSync(policyFile, policy);
  const config = join(dir, 'bus.conf');
  writeFileSync(
    config,
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=${join(dir, 'bus')}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
  </policy>
  ${how === 'include' ? `<include>${policy}</include>` : `<includedir>${policyDir}</includedir>`}
</busconfig>
`,
  );
  const child = spawn('dbus-daemon', [`--config-file=${config}`, '--nofork', '--nopidfile', '--print-address=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve) => {
    let started = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      if (started || !s.includes('unix:')) return;
      started = true;
      child.kill('SIGTERM');
    });
    // 'close' waits for stderr to be read to its end.
    child.once('close', () => {
      clearTimeout(timer);
      resolve({ started, stderr });
    });
  });
}

const parseError = /Encountered error .* while parsing '[^']*fieldlink-gateway\.conf'|Failed to start message bus/s;

t.test('dbus-daemon loads the policy', { skip: missing('dbus-daemon', 'dbus') }, async (t) => {
  for (const how of ['includedir', 'include'] as const) {
    const ok = await startBus(t, POLICY_FILE, how);
    t.ok(ok.started, `starts with the policy (${how}): ${ok.stderr}`);
    t.notMatch(ok.stderr, parseError, `no complaint about the file (${how})`);
  }

  const dir = tempDir(t, 'fieldlink-dbus-bad-');
  const bad = join(dir, 'fieldlink-gateway.conf');
  writeFileSync(bad, readFileSync(POLICY_FILE, 'utf8').replace('</policy>', ''));
  const strict = await startBus(t, bad, 'include');
  t.notOk(strict.started, 'a malformed copy makes dbus-daemon refuse to start');
  t.match(strict.stderr, /Failed to start message bus: .*fieldlink-gateway\.conf/, strict.stderr);
  // The system bus reads system.d with includedir: it would start and drop the file, silently
  // but for its log. The check above is what catches that before a Pi does.
  const lenient = await startBus(t, bad, 'includedir');
  t.match(lenient.stderr, parseError, `includedir reports the broken file: ${lenient.stderr}`);
});

t.test('the policy lets fieldlink use BlueZ and only read timedated', async (t) => {
  const text = readFileSync(POLICY_FILE, 'utf8');
  t.match(text, /<policy user="fieldlink">/);
  const allows = [...text.matchAll(/<allow\s([^>]*)\/>/g)].map((m) => Object.fromEntries([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((a) => [a[1], a[2]])));
  t.notOk(/<deny|own=/.test(text), 'grants nothing beyond sending');
  for (const iface of ['org.bluez.Adapter1', 'org.bluez.Device1', 'org.bluez.GattCharacteristic1', 'org.freedesktop.DBus.Properties', 'org.freedesktop.DBus.ObjectManager']) {
    t.ok(allows.some((a) => a.send_destination === 'org.bluez' && a.send_interface === iface), `org.bluez ${iface}`);
  }
  const timedate = allows.filter((a) => a.send_destination === 'org.freedesktop.timedate1');
  t.same(timedate.map((a) => `${a.send_interface}.${a.send_member}`).sort(), ['org.freedesktop.DBus.Properties.Get', 'org.freedesktop.DBus.Properties.GetAll'], 'timedated: Get and GetAll only');
  t.ok(allows.every((a) => a.send_destination === 'org.bluez' || a.send_destination === 'org.freedesktop.timedate1'), 'no other destination');
});
