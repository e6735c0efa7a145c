import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { hubSource, registerCloudCommands } from '../../../cloud/src/cli.js';
import { hubTargets } from '../../../cloud/src/server.js';
import { issueToken } from '../../../cloud/src/auth.js';
import { CloudStore } from '../../../cloud/src/store.js';
import { createProgram } from '../../../cli/program.js';
import { runCli } from '../../../cli/run.js';
import { within } from '../../helpers/deadline.js';
import { startTestHub } from '../../helpers/hub.js';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function cli(args: string[]): Promise<Run> {
  const out: string[] = [];
  const err: string[] = [];
  const io = { stdout: (s: string) => void out.push(s), now: () => Date.UTC(2026, 0, 2) };
  const program = createProgram([(p) => registerCloudCommands(p, io)]);
  const code = await runCli(['node', 'fieldlink', 'cloud', ...args], { program, output: { stdout: io.stdout, stderr: (s) => void err.push(s) } });
  return { code, out: out.join(''), err: err.join('') };
}

t.test('token create / list / revoke round trip on the store in --data', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cloud-cli-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const created = await cli(['token', 'create', '--role', 'operator', '--name', 'alice', '--data', dir]);
  t.equal(created.code, 0, created.err);
  const token = created.out.split('\n')[0] ?? '';
  t.match(token, /^flc_[A-Za-z0-9_-]{43}$/, 'the token is the first line, alone, for scripts');
  t.match(created.out, /shown once/);

  t.equal((await cli(['--data', dir, 'token', 'create', '--role', 'viewer', '--name', 'bob'])).code, 0, '--data before the subcommand works too');

  const list = await cli(['token', 'list', '--data', dir]);
  t.equal(list.code, 0);
  t.match(list.out, /alice\s+operator\s+-\s+2026-01-02T00:00:00.000Z\s+active/);
  t.match(list.out, /bob\s+viewer/);
  t.notOk(list.out.includes(token), 'no token in the list');
  const json = await cli(['token', 'list', '--json', '--data', dir]);
  const listed = JSON.parse(json.out) as Record<string, unknown>[];
  t.same(listed.map((r) => Object.keys(r).sort()), [['created', 'expires', 'id', 'name', 'revoked', 'role', 'site'], ['created', 'expires', 'id', 'name', 'revoked', 'role', 'site']], 'no hashes');

  // Pairing tokens say their scope: a site, or explicitly all sites; a link and an expiry on request.
  const unscoped = await cli(['token', 'create', '--role', 'pairing', '--name', 'phone', '--data', dir]);
  t.equal(unscoped.code, 1);
  t.match(unscoped.err, /--site SITE .* or --all-sites/);
  const scoped = await cli(['token', 'create', '--role', 'pairing', '--name', 'osaka-phone', '--site', 'Osaka plant', '--expires-in', '8h', '--link', 'https://pair.example.com/', '--data', dir]);
  t.equal(scoped.code, 0, scoped.err);
  const pairingToken = scoped.out.split('\n')[0] ?? '';
  t.match(scoped.out, /\(pairing; site Osaka plant, expires 2026-01-02T08:00:00.000Z\)/);
  t.ok(scoped.out.includes(`pairing link (secret; send it to the phone only): https://pair.example.com/pair#token=${pairingToken}`), 'the link carries the token in its fragment');
  t.match((await cli(['token', 'list', '--data', dir])).out, /osaka-phone\s+pairing\s+Osaka plant\s+\S+\s+active until 2026-01-02T08:00:00.000Z/);
  const short = await cli(['token', 'create', '--role', 'pairing', '--name', 'p2', '--all-sites', '--expires-in', '10s', '--data', dir]);
  t.equal(short.code, 1, 'an expiry under a minute is refused');
  t.match(short.err, /--expires-in must be 1m to 30d/);
  const viewerSite = await cli(['token', 'create', '--role', 'viewer', '--name', 'v2', '--site', 'Osaka plant', '--data', dir]);
  t.equal(viewerSite.code, 1, 'a site only for pairing tokens');
  t.match(viewerSite.err, /are for --role pairing/);
  const badSite = await cli(['token', 'create', '--role', 'pairing', '--name', 'p3', '--site', 'bad/site', '--data', dir]);
  t.equal(badSite.code, 1, 'a malformed site is refused');
  t.match(badSite.err, /site "bad\/site" must be/);
  for (const link of ['pair.example.com', 'ftp://pair.example.com', 'https://pair.example.com/?x=1']) {
    const badLink = await cli(['token', 'create', '--role', 'pairing', '--name', 'p4', '--all-sites', '--link', link, '--data', dir]);
    t.equal(badLink.code, 1, `--link ${link} is refused`);
    t.match(badLink.err, /--link .*\[CONFIG_INVALID\]/);
  }

  const dup = await cli(['token', 'create', '--role', 'viewer', '--name', 'alice', '--data', dir]);
  t.equal(dup.code, 1);
  t.match(dup.err, /\[TOKEN_NAME_TAKEN\]/);
  const badRole = await cli(['token', 'create', '--role', 'admin', '--name', 'x', '--data', dir]);
  t.not(badRole.code, 0);
  t.match(badRole.err, /operator, viewer, pairing/);

  const revoked = await cli(['token', 'revoke', 'alice', '--data', dir]);
  t.equal(revoked.code, 0, revoked.err);
  t.match((await cli(['token', 'list', '--data', dir])).out, /alice\s+operator\s+-\s+\S+\s+revoked 2026-01-02/);
  t.notMatch((await cli(['token', 'list', '--data', dir])).out, /\b(p2|v2|p3|p4)\b/, 'no refused create left a token behind');
  const missing = await cli(['token', 'revoke', 'carol', '--data', dir]);
  t.equal(missing.code, 1);
  t.match(missing.err, /\[TOKEN_NOT_FOUND\]/);

  const store = CloudStore.open(dir);
  t.teardown(() => store.close());
  t.same(
    store.listAudit(10).map((e) => [e.tokenName, e.action, e.target]),
    [
      ['cli', 'token.revoke', 'alice'],
      ['cli', 'token.create', 'osaka-phone'],
      ['cli', 'token.create', 'bob'],
      ['cli', 'token.create', 'alice'],
    ],
  );
});

t.test('fieldlink cloud --port 0 serves on 127.0.0.1 and SIGTERM closes it', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cloud-srv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const hub = await startTestHub();
  t.teardown(() => hub.cleanup());
  const bin = new URL('../../../cli/fieldlink.js', import.meta.url).pathname;
  const args = [bin, 'cloud', '--port', '0', '--data', dir, '--hub', hub.hubJson, '--log-level', 'warn'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout });
  const url = await within(15_000, 'cloud companion start', new Promise<string>((resolve) => lines.on('line', (l) => {
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(l);
    if (m?.[1]) resolve(m[1]);
  })));
  const health = await fetch(`${url}/healthz`);
  t.equal(health.status, 200);
  t.same(await health.json(), { status: 'ok' });
  t.equal((await fetch(`${url}/v1/whoami`)).status, 401);
  const store = CloudStore.open(dir);
  const token = issueToken(store, { name: 'ops', role: 'operator', now: Date.now() }).token;
  store.close();
  const fleet = await fetch(`${url}/v1/gateways`, { headers: { authorization: `Bearer ${token}` } });
  t.equal(fleet.status, 200, 'the fleet view answers from the hub given by --hub');
  t.same(((await fleet.json()) as { gateways: unknown[] }).gateways, []);

  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill('SIGTERM');
  t.equal(await within(10_000, 'exit after SIGTERM', exited), 0);
});

t.test('fieldlink cloud without a hub says where it looked and exits 1', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-cloud-srv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const r = await cli(['--port', '0', '--data', dir, '--hub', join(dir, 'nope', 'hub.json')]);
  t.equal(r.code, 1);
  t.match(r.err, /nope\/hub\.json/);
});

t.test('hub source: a hub.json by default; connection strings from flags or the environment; least privilege needs both', async (t) => {
  const svc = 'HostName=fl.azure-devices.net;SharedAccessKeyName=service;SharedAccessKey=c2VydmljZQ==';
  const reg = 'HostName=fl.azure-devices.net;SharedAccessKeyName=registryReadWrite;SharedAccessKey=cmVnaXN0cnk=';
  t.match(hubSource({}, {}), { kind: 'file', hubJson: /\.fieldlink\/hub\/hub\.json$/ });
  t.same(hubSource({ hub: '/x/hub.json' }, {}), { kind: 'file', hubJson: '/x/hub.json' });
  t.same(hubSource({}, { FIELDLINK_HUB_SERVICE_CONNECTION_STRING: svc, FIELDLINK_HUB_REGISTRY_CONNECTION_STRING: reg }), { kind: 'connection-strings', service: svc, registry: reg });
  t.same(hubSource({ hubConnectionString: svc }, {}), { kind: 'connection-strings', service: svc, registry: svc }, 'one policy with both rights');
  t.same(hubSource({ hubConnectionString: svc, registryConnectionString: reg }, { FIELDLINK_HUB_SERVICE_CONNECTION_STRING: 'ignored' }), { kind: 'connection-strings', service: svc, registry: reg }, 'flags win');
  t.throws(() => hubSource({}, { FIELDLINK_HUB_REGISTRY_CONNECTION_STRING: reg }), /registry connection string alone/);
  t.throws(() => hubSource({ hub: '/x/hub.json', hubConnectionString: svc }, {}), /exclude each other/);
  const targets = hubTargets(hubSource({ hubConnectionString: svc, registryConnectionString: reg }, {}));
  t.match(targets, { service: { hostName: 'fl.azure-devices.net', keyName: 'service', amqpPort: 5671 }, registry: { keyName: 'registryReadWrite', httpsPort: 443 } });
});
