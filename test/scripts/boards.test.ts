import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import YAML from 'yaml';
import { isFieldlinkError } from '../../common/errors.js';
import { gatewayConfigSchema } from '../../gateway/src/contract/gateway-config.js';
import { applyCmdline, applyConfigTxt, boardRuleProblems, listBoardProfiles, loadBoardProfile, serviceDropIn, type BoardProfile } from '../../scripts/boards.js';

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  return undefined;
}

const BOARD_IDS = ['cm4', 'pi-zero-2w', 'pi4', 'pi5'];
const MiB = 1024 * 1024;
const outboxMinimum = gatewayConfigSchema.properties.settings.properties.outbox.properties.maxBytes.minimum;

t.test('the four boards load, ids are unique and match their files', async (t) => {
  const profiles = listBoardProfiles();
  t.same(profiles.map((p) => p.id), BOARD_IDS);
  t.equal(new Set(profiles.map((p) => p.id)).size, profiles.length, 'ids unique');
  for (const id of BOARD_IDS) t.same(loadBoardProfile(id), profiles.find((p) => p.id === id));
  t.ok(Object.isFrozen(loadBoardProfile('pi4').configTxt), 'frozen like every loaded config');
});

t.test('an unknown board names the known ones', async (t) => {
  const error = thrown(() => loadBoardProfile('pi3'));
  t.ok(isFieldlinkError(error) && error.code === 'CONFIG_INVALID', 'CONFIG_INVALID');
  t.equal((error as Error).message, `unknown board "pi3": known boards are ${BOARD_IDS.join(', ')}`);
  // A path is not a board id.
  const path = thrown(() => loadBoardProfile('../systemd/fieldlink-gateway'));
  t.ok(isFieldlinkError(path) && path.code === 'CONFIG_INVALID');
});

t.test('every board enables the UART and uses the udev names', async (t) => {
  for (const p of listBoardProfiles()) {
    t.ok(p.configTxt.includes('enable_uart=1'), `${p.id}: enable_uart=1`);
    t.notOk(p.configTxt.some((l) => /^dtoverlay=(disable-bt|pi3-disable-bt)/.test(l)), `${p.id}: Bluetooth stays on`);
    t.ok(p.cmdlineRemove.includes('console=serial0,115200'), `${p.id}: serial console off the UART`);
    t.equal(p.serial.uart, '/dev/fieldlink/uart');
    t.match(p.serial.usbThermostats, /^\/dev\/fieldlink\/thermostat-/);
    t.match(p.serial.firmataBoards, /^\/dev\/fieldlink\/firmata-/);
    t.equal(p.bleAdapter, 'hci0');
  }
});

t.test('budgets are sane', async (t) => {
  for (const p of listBoardProfiles()) {
    t.same(boardRuleProblems(p), [], `${p.id}: rules hold`);
    t.ok(p.gatewayMemoryMaxMb * 2 <= p.memoryMb, `${p.id}: gateway gets at most half the RAM`);
    t.ok(p.outboxMaxBytes >= outboxMinimum && p.outboxMaxBytes >= 8 * MiB, `${p.id}: outbox at least the schema minimum and the wake watermark`);
    t.ok(p.outboxMaxBytes <= 256 * MiB && p.outboxMaxBytes <= (p.memoryMb * MiB) / 4, `${p.id}: outbox at most 256 MiB and a quarter of RAM`);
  }
  const zero = loadBoardProfile('pi-zero-2w');
  t.equal(zero.memoryMb, 512);
  t.ok(zero.outboxMaxBytes <= 32 * MiB, 'the 512 MB board gets the small outbox');
  t.ok(zero.configTxt.includes('core_freq=250'), 'the BCM2837 mini UART gets its core clock pinned');
  t.ok(loadBoardProfile('pi5').configTxt.includes('dtparam=uart0=on'), 'Pi 5: GPIO 14/15 UART0 enabled');
});

t.test('the rules catch bad budgets', async (t) => {
  const pi4 = loadBoardProfile('pi4');
  const bad: BoardProfile = { ...pi4, gatewayMemoryMaxMb: 1536, outboxMaxBytes: 1024 * MiB, configTxt: ['core_freq=250'] };
  t.same(boardRuleProblems(bad).map((p) => p.path), ['/gatewayMemoryMaxMb', '/outboxMaxBytes', '/configTxt']);
});

t.test('config.txt, cmdline.txt and the service drop-in', async (t) => {
  const zero = loadBoardProfile('pi-zero-2w');
  const stock = '# For more options see config.txt docs\ndtparam=audio=on\n\n[cm4]\notg_mode=1\n\n[all]\narm_64bit=1';
  const once = applyConfigTxt(stock, zero);
  t.ok(once.startsWith(stock), 'existing lines kept');
  t.match(once, /\n\[all\]\n# Fieldlink \(pi-zero-2w\)[^\n]*\nenable_uart=1\ncore_freq=250\n$/);
  t.equal(applyConfigTxt(once, zero), once, 'idempotent');
  t.equal(applyConfigTxt('enable_uart=1\n', loadBoardProfile('pi4')), 'enable_uart=1\n', 'nothing to add');

  const cmdline = 'console=serial0,115200 console=tty1 root=PARTUUID=abc-02 rootfstype=ext4 fsck.repair=yes rootwait\n';
  const fixed = applyCmdline(cmdline, zero);
  t.equal(fixed, 'console=tty1 root=PARTUUID=abc-02 rootfstype=ext4 fsck.repair=yes rootwait\n');
  t.equal(applyCmdline(fixed, zero), fixed, 'idempotent');

  t.match(serviceDropIn(zero), /^# .*\n\[Service\]\nMemoryMax=192M\n$/);
});

t.test('the YAML files carry their reasoning as comments and nothing unknown', async (t) => {
  for (const id of BOARD_IDS) {
    const text = readFileSync(fileURLToPath(new URL(`../../../hardware/boards/${id}.yaml`, import.meta.url)), 'utf8');
    t.match(text, /^# /, `${id}: starts with a comment`);
    t.equal((YAML.parse(text) as { id: string }).id, id);
  }
});
