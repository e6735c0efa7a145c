/**
 * `fieldlink provision` against the local hub, into a directory and into a FAT image with a
 * partition table (made here with mkfs.vfat and written with mtools), including a compressed
 * .img.xz; then a gateway started from what was written connects to the hub.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import YAML from 'yaml';
import { pairingCodeBucket, verifyPairingCode, type PairingCodeHash } from '../../common/pairing-code.js';
import { createProgram } from '../../cli/program.js';
import { runCli } from '../../cli/run.js';
import { parseGatewayConfig } from '../../gateway/src/config/load-config.js';
import { startGatewayFromConfig } from '../../gateway/src/main.js';
import { registerProvisionCommand } from '../../scripts/provision/cli.js';
import { bootPartitionOffset, mtoolsOn } from '../../scripts/provision/fat-image.js';
import { eventually, within } from '../helpers/deadline.js';
import { captureLog, registryFor, startTestHub, type TestHub } from '../helpers/hub.js';
import { makeTempRoot } from '../helpers/temp-root.js';

t.setTimeout(180_000);

interface Run {
  code: number;
  out: string;
  err: string;
}

async function provisionCli(args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io = { stdout: (s: string) => void out.push(s), stderr: (s: string) => void err.push(s), env: {}, isTty: false };
  const program = createProgram([(p) => registerProvisionCommand(p, io)]);
  const code = await runCli(['node', 'fieldlink', 'provision', ...args], { program, output: { stdout: io.stdout, stderr: (s) => void err.push(s) } });
  return { code, out: out.join(''), err: err.join('') };
}

function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function hub(): Promise<TestHub> {
  const th = await startTestHub();
  t.teardown(() => th.cleanup());
  return th;
}

type Tags = { fieldlink?: { kind?: string; board?: string; site?: string; pairing?: PairingCodeHash } };
async function tagsOf(th: TestHub, id: string): Promise<Tags> {
  const twin = (await within(5000, 'getTwin', registryFor(th).getTwin(id))).responseBody as unknown as { tags: Tags };
  return twin.tags;
}

const IMAGER_USER_DATA = `#cloud-config
# written by Raspberry Pi Imager
hostname: site-gw
users:
  - name: engineer
    groups: sudo
    ssh_authorized_keys:
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyOnly engineer@bench
runcmd:
  - [ sh, -c, "echo imager step" ]
`;

/** A small disk image like Raspberry Pi OS's: an MBR with a FAT32 (LBA) boot partition at 4 MiB, holding config.txt and user-data. */
function makeImage(dir: string): string {
  const image = join(dir, 'raspios.img');
  const part = join(dir, 'boot.part');
  const startSector = 8192;
  const partMiB = 40;
  execFileSync('mkfs.vfat', ['-F', '32', '-n', 'bootfs', '-C', part, String(partMiB * 1024)], { stdio: 'ignore' });
  const configTxt = join(dir, 'config.txt');
  writeFileSync(configTxt, '[all]\ndtparam=audio=on\n');
  const userData = join(dir, 'user-data');
  writeFileSync(userData, IMAGER_USER_DATA);
  const cmdline = join(dir, 'cmdline.txt');
  writeFileSync(cmdline, 'console=serial0,115200 console=tty1 root=PARTUUID=0a1b2c3d-02 rootfstype=ext4 fsck.repair=yes rootwait\n');
  execFileSync('mcopy', ['-i', part, configTxt, userData, cmdline, '::/'], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
  const mbr = Buffer.alloc(512);
  const entry = mbr.subarray(446, 462);
  entry[4] = 0x0c; // FAT32 LBA
  entry.writeUInt32LE(startSector, 8);
  entry.writeUInt32LE(partMiB * 2048, 12);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const fd = openSync(image, 'w');
  try {
    writeSync(fd, mbr, 0, 512, 0);
    writeSync(fd, readFileSync(part), 0, statSync(part).size, startSector * 512);
    // A root partition would follow; a little tail is enough to make the file a disk image.
    writeSync(fd, Buffer.alloc(512), 0, 512, (startSector + partMiB * 2048) * 512);
  } finally {
    closeSync(fd);
  }
  return image;
}

t.test('into a directory: identity created and tagged with the pairing hash; config valid; secret 0600 and never printed; cloud-init hook merged; a re-run reuses the identity', async (t) => {
  const th = await hub();
  const out = tempDir('fieldlink-boot-');
  writeFileSync(join(out, 'user-data'), IMAGER_USER_DATA);
  const labels = tempDir('fieldlink-labels-');
  const args = ['--id', 'site-gw-1', '--board', 'pi4', '--sensor', 'serial:thermo-1:/dev/fieldlink/thermostat-1', '--sensor', 'ble:wearables', '--hub', th.hubJson, '--out', out, '--label-dir', labels];
  const first = await provisionCli([...args, '--json']);
  t.equal(first.code, 0, first.err);
  const result = JSON.parse(first.out) as { gatewayId: string; created: boolean; pairingCode: string; files: string[]; label: string };
  t.equal(result.created, true);
  t.match(result.pairingCode, /^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$/);

  const secretFile = join(out, 'fieldlink', 'connection-string');
  const cs = readFileSync(secretFile, 'utf8').trim();
  t.match(cs, /^HostName=localhost;DeviceId=site-gw-1;SharedAccessKey=[^;]+;GatewayHostName=localhost:\d+$/);
  t.equal(statSync(secretFile).mode & 0o777, 0o600, 'the secret file is 0600 (FAT drops it; first boot installs it 0600)');
  const key = /SharedAccessKey=([^;]+)/.exec(cs)?.[1] ?? '';
  t.notOk(first.out.includes(key) || first.err.includes(key), 'the key is never printed');

  const config = JSON.parse(readFileSync(join(out, 'fieldlink', 'gateway.json'), 'utf8')) as Record<string, unknown>;
  t.match(config, {
    gatewayId: 'site-gw-1',
    connectionStringFile: '/etc/fieldlink/connection-string',
    caFile: '/etc/fieldlink/hub-ca.pem',
    dataDir: '/var/lib/fieldlink',
    clockTrust: { source: 'timedate1' },
    pairingMode: { onBootS: 300 },
    sources: [{ id: 'thermo-1', family: 'serial', path: '/dev/fieldlink/thermostat-1' }, { id: 'wearables', family: 'ble', adapter: 'hci0' }],
  });
  t.doesNotThrow(() => parseGatewayConfig(config, 'gateway.json', out, { env: { FIELDLINK_CONNECTION_STRING: cs } }), 'the gateway accepts the config');
  t.equal(readFileSync(join(out, 'fieldlink', 'hub-ca.pem'), 'utf8'), th.hub.ca, 'the local hub CA travels with it');
  t.ok(existsSync(join(out, 'fieldlink', 'firstboot.sh')));
  t.match(readFileSync(join(out, 'fieldlink', 'service.conf'), 'utf8'), /^MemoryMax=512M$/m, "pi4's memory budget for the unit");
  t.match(readFileSync(join(out, 'config.txt'), 'utf8'), /^enable_uart=1$/m);

  const userData = readFileSync(join(out, 'user-data'), 'utf8');
  t.ok(userData.startsWith('#cloud-config'));
  const doc = YAML.parse(userData) as { hostname: string; users: unknown[]; runcmd: unknown[] };
  t.equal(doc.hostname, 'site-gw', "Imager's settings are kept");
  t.equal(doc.users.length, 1);
  t.equal(doc.runcmd.length, 2, "Imager's runcmd kept, ours added");
  t.match(JSON.stringify(doc.runcmd), /\/boot\/firmware\/fieldlink\/firstboot\.sh/);

  const tags = await tagsOf(th, 'site-gw-1');
  t.equal(tags.fieldlink?.kind, 'gateway');
  t.equal(tags.fieldlink?.board, 'pi4');
  const hash = tags.fieldlink?.pairing;
  t.ok(hash && verifyPairingCode(result.pairingCode, hash), 'the printed code matches the hash in the twin');
  t.ok(hash && verifyPairingCode(result.pairingCode.toLowerCase().replace('-', ' '), hash), 'typed in lower case with a space, it still matches');
  t.notOk(hash && verifyPairingCode('00000-00000', hash), 'another code does not');
  t.equal(hash?.bucket, pairingCodeBucket(result.pairingCode), "the lookup bucket the companion finds the gateway by");
  t.notOk(JSON.stringify(tags).includes(result.pairingCode.replace('-', '')), 'the code itself is not stored');
  const svg = readFileSync(result.label, 'utf8');
  t.match(svg, /<svg[\s\S]*site-gw-1[\s\S]*<\/svg>/);
  t.ok(svg.includes(result.pairingCode));

  const again = await provisionCli([...args, '--site', 'Osaka plant', '--companion-url', 'https://pair.example.com/']);
  t.equal(again.code, 0, again.err);
  t.match(again.out, /reused gateway identity "site-gw-1"/);
  t.equal((await tagsOf(th, 'site-gw-1')).fieldlink?.site, 'Osaka plant', 'the site is tagged: site-scoped pairing tokens find it');
  const bad = await provisionCli([...args, '--site', 'a/b']);
  t.equal(bad.code, 1, 'a malformed site is refused');
  t.match(again.out, /pairing code\s+[0-9A-Z]{5}-[0-9A-Z]{5}/, 'the label is printed with the QR code');
  t.equal(readFileSync(secretFile, 'utf8').trim(), cs, 'a re-provisioned card keeps the same key');
  const runcmd = (YAML.parse(readFileSync(join(out, 'user-data'), 'utf8')) as { runcmd: unknown[] }).runcmd;
  t.equal(runcmd.length, 2, 'the hook is not added twice');
  t.notOk(again.out.includes(key), 'still never printed');
});

t.test('into a compressed Raspberry Pi OS-like image: unpacked with progress, files on its FAT partition, user-data merged; a gateway started from them connects', async (t) => {
  const th = await hub();
  const dir = tempDir('fieldlink-image-');
  const image = makeImage(dir);
  execFileSync('xz', ['-T1', '-0', image]);
  t.ok(existsSync(`${image}.xz`) && !existsSync(image));
  const r = await provisionCli(['--id', 'site-gw-2', '--board', 'pi-zero-2w', '--sensor', 'serial:thermo-1:/dev/fieldlink/thermostat-1', '--hub', th.hubJson, '--image', `${image}.xz`, '--label-dir', dir]);
  t.equal(r.code, 0, r.err);
  t.match(r.err, /100% \(\d+ of \d+ MiB\)/, 'progress while unpacking');
  t.ok(existsSync(image), 'unpacked beside the .xz');

  const fat = mtoolsOn(image, bootPartitionOffset(image));
  const listing = await fat.list('::/fieldlink');
  for (const f of ['gateway.json', 'connection-string', 'hub-ca.pem', 'firstboot.sh']) t.match(listing, new RegExp(f.replace('.', '\\.')), `${f} on the boot partition`);
  const configTxt = (await fat.read('::/config.txt')) ?? '';
  t.ok(configTxt.startsWith('[all]\ndtparam=audio=on\n'), 'config.txt keeps what it had');
  t.match(configTxt, /^enable_uart=1$/m, 'and gains the UART the board profile needs beside Bluetooth');
  t.equal(
    await fat.read('::/cmdline.txt'),
    'console=tty1 root=PARTUUID=0a1b2c3d-02 rootfstype=ext4 fsck.repair=yes rootwait\n',
    'the serial console leaves the thermostat UART; the rest of the kernel command line is kept',
  );
  t.match(listing, /service\.conf/, "the board's service limits travel for first boot");
  const userData = (await fat.read('::/user-data')) ?? '';
  t.match(userData, /engineer/);
  t.match(userData, /fieldlink\/firstboot\.sh/);
  const config = JSON.parse((await fat.read('::/fieldlink/gateway.json')) ?? '{}') as Record<string, unknown>;
  const cs = ((await fat.read('::/fieldlink/connection-string')) ?? '').trim();
  t.notOk(r.out.includes(cs.split('SharedAccessKey=')[1] ?? 'x'), 'the key is never printed');
  t.match(config, { settings: { outbox: { maxBytes: Number } } });

  // Boot it here: the Pi paths mapped into a temp root, the clock assumed (no timedate1 here).
  const root = tempDir('fieldlink-root-');
  writeFileSync(join(root, 'connection-string'), `${cs}\n`, { mode: 0o600 });
  writeFileSync(join(root, 'hub-ca.pem'), (await fat.read('::/fieldlink/hub-ca.pem')) ?? '');
  const local = { ...config, connectionStringFile: join(root, 'connection-string'), caFile: join(root, 'hub-ca.pem'), dataDir: join(root, 'data'), clockTrust: { source: 'assume' } };
  const log = captureLog();
  const rt = await startGatewayFromConfig(parseGatewayConfig(local, 'gateway.json', root), { log: log.logger, firmwareVersion: 'test' });
  t.teardown(() => rt.stop());
  t.ok(rt.wakeNow());
  const reported = await eventually(20_000, 'the gateway reported to the hub', async () => {
    const twin = (await registryFor(th).getTwin('site-gw-2')).responseBody as unknown as { properties: { reported: { power?: { state?: string } } } };
    return twin.properties.reported.power?.state ? twin.properties.reported : undefined;
  }, 250);
  t.ok(reported.power, 'it connected with the provisioned key and CA');
});

t.test('bad input: unknown board, no sensor, bad sensor spec, both --out and --image, not an image', async (t) => {
  const th = await hub();
  const dir = tempDir('fieldlink-bad-');
  const base = ['--id', 'gw-x', '--hub', th.hubJson];
  t.match((await provisionCli([...base, '--board', 'pi9', '--sensor', 'ble:w', '--out', dir])).err, /pi9[\s\S]*pi4/);
  t.match((await provisionCli([...base, '--board', 'pi4', '--out', dir])).err, /at least one --sensor/);
  t.match((await provisionCli([...base, '--board', 'pi4', '--sensor', 'serial:thermo-1:dev/tty', '--out', dir])).err, /absolute device path/);
  t.match((await provisionCli([...base, '--board', 'pi4', '--sensor', 'ble:w', '--out', dir, '--image', join(dir, 'x.img')])).err, /exactly one of --out/);
  writeFileSync(join(dir, 'junk.img'), Buffer.alloc(4096));
  const junk = await provisionCli([...base, '--board', 'pi4', '--sensor', 'ble:w', '--image', join(dir, 'junk.img')]);
  t.equal(junk.code, 1);
  t.match(junk.err, /no partition table/);
  const lookup = await registryFor(th)
    .get('gw-x')
    .then(
      () => 'exists',
      (err: Error) => err.constructor.name,
    );
  t.equal(lookup, 'DeviceNotFoundError', 'a bad target is refused before any identity is created');
});

const notRoot = process.getuid?.() !== 0 && !process.env.FIELDLINK_REQUIRE_SYSTEM_TOOLS ? 'needs root (first boot creates a user and chowns)' : false;

t.test('the whole bench-to-site chain: provision a boot partition, run its first boot in a temporary root, start the gateway from what was installed', { skip: notRoot }, async (t) => {
  const th = await hub();
  const boot = tempDir('fieldlink-chain-boot-');
  const root = makeTempRoot(t);
  const p = await provisionCli(['--id', 'site-gw-3', '--board', 'pi4', '--sensor', 'serial:thermo-1:/dev/fieldlink/uart', '--hub', th.hubJson, '--out', boot, '--label-dir', boot]);
  t.equal(p.code, 0, p.err);
  const secret = readFileSync(join(boot, 'fieldlink', 'connection-string'), 'utf8');

  const fb = spawnSync('sh', [join(boot, 'fieldlink', 'firstboot.sh')], {
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', FIELDLINK_ROOT: root, FIELDLINK_BOOT: boot },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.equal(fb.status, 0, fb.stderr);
  t.notOk(`${fb.stdout}${fb.stderr}`.includes(secret.trim()), 'first boot never prints the secret');
  const installed = join(root, 'etc/fieldlink/connection-string');
  const uid = Number(readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('fieldlink:'))?.split(':')[2]);
  t.equal(statSync(installed).mode & 0o777, 0o600);
  t.equal(statSync(installed).uid, uid, "owned by the gateway's user");
  t.equal(readFileSync(installed, 'utf8'), secret);
  t.notOk(existsSync(join(boot, 'fieldlink', 'connection-string')), 'gone from the FAT partition');

  // The installed config, its /etc and /var paths read inside the temporary root; no
  // timedate1 here, so the clock is assumed (the Pi's config keeps timedate1).
  const config = JSON.parse(readFileSync(join(root, 'etc/fieldlink/gateway.json'), 'utf8')) as Record<string, string>;
  t.equal(config.clockTrust && (config.clockTrust as unknown as { source: string }).source, 'timedate1');
  const inRoot = (path: string | undefined): string => join(root, path ?? '');
  const local = { ...config, connectionStringFile: inRoot(config.connectionStringFile), caFile: inRoot(config.caFile), dataDir: inRoot(config.dataDir), clockTrust: { source: 'assume' } };
  const log = captureLog();
  const rt = await startGatewayFromConfig(parseGatewayConfig(local, 'gateway.json', root), { log: log.logger, firmwareVersion: 'test' });
  t.teardown(() => rt.stop());
  t.ok(rt.wakeNow());
  await eventually(20_000, 'the gateway reported to the hub', async () => {
    const twin = (await registryFor(th).getTwin('site-gw-3')).responseBody as unknown as { properties: { reported: { power?: { state?: string } } } };
    return twin.properties.reported.power?.state ? true : undefined;
  }, 250);
  t.pass('connected with the installed key and CA');
});
