import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import pino from 'pino';
import { createLogger, type Logger } from '../common/log.js';
import { shutdownSignal } from '../common/shutdown-signal.js';
import { DEFAULT_DATA_DIR, hubFilePath } from '../cloud/hub/data-dir.js';
import { LocalHub } from '../cloud/hub/local-hub.js';
import type { StoredEvent } from '../cloud/hub/event-store.js';
import { isFieldlinkError } from '../common/errors.js';
import { startRig, type Rig } from '../sensors/rig/rig.js';
import { loadScenarioFile, type Scenario } from '../sensors/rig/scenario.js';
import type { DeepReadonly } from '../common/config.js';
import { decodeTelemetry } from '../gateway/src/contract/telemetry.js';
import { parseGatewayConfig } from '../gateway/src/config/load-config.js';
import { startGatewayFromConfig } from '../gateway/src/main.js';
import { firmwareVersion, formatStatus } from '../gateway/src/cli.js';
import type { GatewayRuntime } from '../gateway/src/app/gateway.js';
import { issueToken } from '../cloud/src/auth.js';
import { startCloudServer, type RunningCloud } from '../cloud/src/server.js';
import { CloudStore } from '../cloud/src/store.js';
import { publicIpTagPatch } from '../cloud/hub/connection-log.js';
import { generateFleetHistory } from '../cloud/src/locations/fleet-history.js';
import { openIpGeolocator } from '../cloud/src/locations/ip-geolocation.js';
import { resourceLogDocument } from '../cloud/src/locations/record-stream.js';

const DEMO_GATEWAY = 'demo-gateway';
/** dist/cli/demo.js → the package root's hardware/scenarios/demo.yaml. */
const DEFAULT_SCENARIO = new URL('../../hardware/scenarios/demo.yaml', import.meta.url).pathname;

interface DemoOptions {
  data: string;
  checkIn: number;
  window: number;
  sample: number;
  logLevel: string;
  amqpPort?: number;
  httpsPort?: number;
  cloudPort: number;
  scenario: string;
}

/** Revokes earlier demo tokens and issues a fresh operator token into `file` (0600); returns it. */
function demoOperatorToken(cloudDir: string, file: string): string {
  const store = CloudStore.open(cloudDir);
  try {
    const now = Date.now();
    for (const t of store.listTokens()) if (t.name.startsWith('demo-operator-') && t.revoked === null) store.revokeToken(t.name, now);
    const { token } = issueToken(store, { name: `demo-operator-${now}`, role: 'operator', now });
    writeFileSync(file, `${token}\n`, { mode: 0o600 });
    return token;
  } finally {
    store.close();
  }
}

/** The address the local hub logs for the demo gateway (60.35.1.XXX: Osaka in DB-IP's city lite database). */
const DEMO_PUBLIC_IP = '60.35.1.23';
const DEMO_FLEET = { devices: 400, months: 18, seed: 20_261_123 };

/**
 * A sales-sized installed base for the map: `fieldlink emulate fleet`'s history of 400 gateways
 * over 18 months, posted once per data directory to the companion's ingest route, as an Event
 * Hub function would post Azure's resource logs.
 */
async function ingestDemoFleet(cloud: RunningCloud, token: string): Promise<string> {
  const headers = { authorization: `Bearer ${token}` };
  const seen = await cloud.app.inject({ method: 'GET', url: '/v1/gateways/gw-000001/location', headers });
  if (seen.statusCode === 404) return 'locations are off';
  if (seen.statusCode === 200 && seen.json<{ lastConnect: string | null }>().lastConnect !== null) return `the emulated fleet's history is already in ${DEMO_FLEET.devices} gateways`;
  const geolocator = await openIpGeolocator();
  const records = generateFleetHistory({ ...DEMO_FLEET, now: Date.now(), geolocator });
  const res = await cloud.app.inject({ method: 'POST', url: '/v1/ingest/connection-logs', headers: { ...headers, 'content-type': 'application/json' }, payload: Readable.from(resourceLogDocument(records)) });
  if (res.statusCode !== 200) return `the emulated fleet was not ingested: HTTP ${res.statusCode} ${res.body.slice(0, 200)}`;
  const r = res.json<{ accepted: number; devicesUpdated: number }>();
  return `${r.accepted} connection records of ${r.devicesUpdated} emulated gateways over ${DEMO_FLEET.months} months ingested`;
}

/** The demo gateway as the companion shows it to an operator, on one line (read fresh from the twin). */
async function fleetLine(cloud: RunningCloud, token: string): Promise<string> {
  const res = await cloud.app.inject({ method: 'GET', url: `/v1/gateways/${DEMO_GATEWAY}`, headers: { authorization: `Bearer ${token}` } });
  if (res.statusCode !== 200) return `fleet view: HTTP ${res.statusCode} ${res.body.slice(0, 200)}`;
  const g = res.json<{ gateway: { id: string; health: string; healthReasons: string[]; power: { state: string | null; lastCheckIn: string | null }; outbox: { depth: number } | null } }>().gateway;
  const reasons = g.healthReasons.length > 0 ? ` (${g.healthReasons.join('; ')})` : '';
  return `fleet view: ${g.id} health ${g.health}${reasons} | reported ${g.power.state ?? '-'} | last check-in ${g.power.lastCheckIn ?? 'never'} | outbox ${g.outbox?.depth ?? '-'}`;
}

/** One line per message the hub accepted: how many readings, and a taste of them. */
function describeArrival(e: StoredEvent): string {
  try {
    const body = Buffer.from(e.body, e.bodyEncoding === 'base64' ? 'base64' : 'utf8');
    const readings = decodeTelemetry(body, e.contentEncoding);
    const families = new Map<string, number>();
    for (const r of readings) {
      const family = r.source.slice(0, r.source.indexOf(':'));
      families.set(family, (families.get(family) ?? 0) + 1);
    }
    const latest = new Map<string, string>();
    for (const r of readings) {
      if (r.kind === 'temperature' || r.kind === 'heart_rate') latest.set(r.source.replace(/\/(temperature|heart_rate)$/, ''), `${r.value}${r.kind === 'heart_rate' ? ' bpm' : ' °C'}`);
    }
    const split = [...families].map(([f, n]) => `${f} ${n}`).join(', ');
    const taste = [...latest].slice(0, 4).map(([s, v]) => `${s} ${v}`).join(', ');
    return `hub ← ${e.deviceId}: message ${e.messageId} [${e.contentEncoding ?? 'json'}], ${e.size} B, ${readings.length} readings (${split}; latest ${taste})`;
  } catch {
    return `hub ← ${e.deviceId}: message ${e.messageId}, ${e.size} B (not a fieldlink.readings message)`;
  }
}

/**
 * `fieldlink demo` (what `npm start` runs): the whole chain on the embedded default — the local
 * IoT Hub, two thermostats emulated on pseudo-terminals, and the real gateway reading them over
 * serial, buffering in its SQLite outbox and forwarding over AMQP on a short standby cycle.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the local IoT Hub, emulated sensors (wearables over BLE, serial thermostats, a Firmata board) and a gateway on a short standby cycle; show data flowing')
    .option('--data <dir>', 'hub data directory (the gateway and emulators live in <dir>/demo)', DEFAULT_DATA_DIR)
    .option('--check-in <s>', 'standby → online every N seconds', (v) => Number(v), 15)
    .option('--window <s>', 'stay online at least N seconds', (v) => Number(v), 3)
    .option('--sample <s>', 'thermostat reporting interval in seconds', (v) => Number(v), 2)
    .option('--log-level <level>', 'pino log level (logs go to <dir>/demo/gateway.log)', 'info')
    .option('--scenario <file>', 'emulated sensors (sensors/rig/scenario.ts)', DEFAULT_SCENARIO)
    .option('--amqp-port <port>', 'hub AMQPS port (0: any free one; default 5671 or what hub.json says)', (v) => Number(v))
    .option('--https-port <port>', 'hub HTTPS port (0: any free one; default 8443 or what hub.json says)', (v) => Number(v))
    .option('--cloud-port <port>', 'cloud companion port on 127.0.0.1 (0: any free one)', (v) => Number(v), 3000)
    .action(async (opts: DemoOptions) => {
      const say = (line: string): void => {
        process.stdout.write(`${line}\n`);
      };
      const dataDir = resolve(opts.data);
      const demoDir = join(dataDir, 'demo');
      mkdirSync(demoDir, { recursive: true, mode: 0o700 });
      // The demo's own chatter goes to a file, so the terminal shows the data flow.
      const log = createLogger({ name: 'fieldlink', level: opts.logLevel, destination: pino.destination({ dest: join(demoDir, 'gateway.log'), sync: false }) });

      const hub = await LocalHub.start({
        dataDir,
        log: log.child({ component: 'hub' }),
        ...(opts.amqpPort === undefined ? {} : { amqpPort: opts.amqpPort }),
        ...(opts.httpsPort === undefined ? {} : { httpsPort: opts.httpsPort }),
      });
      let rig: Rig | undefined;
      let rt: GatewayRuntime | undefined;
      let cloud: RunningCloud | undefined;
      try {
        say(`local IoT Hub: amqps://${hub.hub.hostName}:${hub.hub.amqpPort}  https://${hub.hub.hostName}:${hub.hub.httpsPort}`);
        say(`  connection strings: ${hubFilePath(dataDir)} (mode 0600); try: npx fieldlink hub events --data ${opts.data} --decode`);
        if (!hub.registry.get(DEMO_GATEWAY)) hub.createDevice(DEMO_GATEWAY);
        // On loopback every client is 127.0.0.1: the hub logs this address instead (an Osaka
        // one in the IP database), so the companion can place the demo gateway on its map.
        hub.registry.patchTwin(DEMO_GATEWAY, { tags: publicIpTagPatch(DEMO_PUBLIC_IP) }, '*');
        const csFile = join(demoDir, 'connection-string');
        writeFileSync(csFile, hub.deviceConnectionString(DEMO_GATEWAY), { mode: 0o600 });
        const caFile = join(demoDir, 'hub-ca.pem');
        writeFileSync(caFile, hub.ca);

        const scenario = loadScenarioFile(opts.scenario);
        rig = await startDemoRig(scenario, join(demoDir, 'rig'), log, say);
        const { sources, settings, env } = rig.fragment;
        for (const src of sources) say(`  ${src.family} source ${src.id}${src.family === 'ble' ? ` (adapter ${src.adapter}, paired: ${Object.keys(settings.pairings).join(' ')})` : ` on ${src.path}`}`);
        // node-ble finds the emulated BlueZ through the system-bus address, read when it connects.
        if (env.DBUS_SYSTEM_BUS_ADDRESS !== undefined) process.env.DBUS_SYSTEM_BUS_ADDRESS = env.DBUS_SYSTEM_BUS_ADDRESS;
        say(`  every value the emulators send is logged under ${join(rig.dir, 'emitted')}`);
        const config = {
          gatewayId: DEMO_GATEWAY,
          connectionStringFile: csFile,
          caFile,
          dataDir: join(demoDir, 'gateway'),
          // A development machine's clock is right; on a Pi this is timedate1.
          clockTrust: { source: 'assume' },
          sources,
          settings: {
            sampling: {
              serial: { sampleIntervalS: opts.sample, reportIntervalS: opts.sample },
              firmata: { sampleIntervalS: opts.sample, reportIntervalS: opts.sample },
              ble: { sampleIntervalS: 1, reportIntervalS: opts.sample },
            },
            pairings: settings.pairings,
            checkInIntervalS: opts.checkIn,
            onlineWindowS: opts.window,
            packer: { budgetUnits: 1, encoding: 'json+gzip' },
          },
        };
        const configPath = join(demoDir, 'gateway.json');
        writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
        say(`gateway ${DEMO_GATEWAY}: config ${configPath}, log ${join(demoDir, 'gateway.log')}`);
        say(`  standby, checking in every ${opts.checkIn} s for at least ${opts.window} s; readings wait in its SQLite outbox meanwhile (Ctrl-C stops)`);

        rt = await startGatewayFromConfig(parseGatewayConfig(config, configPath, demoDir), { log, firmwareVersion: firmwareVersion() });
        const runtime = rt;

        const cloudDir = join(demoDir, 'cloud');
        const tokenFile = join(demoDir, 'operator-token');
        const token = demoOperatorToken(cloudDir, tokenFile);
        cloud = await startCloudServer({ dataDir: cloudDir, port: opts.cloudPort, log: log.child({ component: 'cloud' }), hub: { kind: 'file', hubJson: hubFilePath(dataDir) }, app: { fleetRefreshMs: 5_000 } });
        const companion = cloud;
        say(`cloud companion: ${companion.url}  (API docs ${companion.url}/docs)`);
        say(`  fleet page: ${companion.url}/fleet — sign in with the operator token in ${tokenFile}`);
        say(`  try: curl -s -H "Authorization: Bearer $(cat ${tokenFile})" ${companion.url}/v1/gateways`);
        say(`       curl -s -X POST -H "Authorization: Bearer $(cat ${tokenFile})" -H 'content-type: application/json' -d '{"type":"wake","forS":30}' ${companion.url}/v1/gateways/${DEMO_GATEWAY}/commands`);
        const fleet = await ingestDemoFleet(companion, token);
        say(`  fleet map: ${companion.url}/map — ${fleet}; ${DEMO_GATEWAY} is placed from the local hub's connection log`);
        const onEvent = (e: StoredEvent): void => {
          if (e.deviceId === DEMO_GATEWAY) say(describeArrival(e));
        };
        hub.events.on('event', onEvent);
        let lastPhase = '';
        let ticks = 0;
        const timer = setInterval(() => {
          ticks++;
          void runtime
            .outboxStats()
            .catch(() => undefined)
            .then(() => {
              const s = runtime.status();
              // A line per phase change, and every 5 s: readable in a terminal and in a CI log.
              if (s.phase !== lastPhase || ticks % 5 === 0) say(formatStatus(s, Date.now()));
              // What an operator sees, after each check-in (the companion reads the twin).
              if (lastPhase !== '' && lastPhase !== 'standby' && s.phase === 'standby') void fleetLine(companion, token).then(say, () => undefined);
              lastPhase = s.phase;
            });
        }, 1000);
        await shutdownSignal(log);
        clearInterval(timer);
        hub.events.off('event', onEvent);
      } finally {
        await cloud?.close().catch(() => undefined);
        await rt?.stop().catch(() => undefined);
        await rig?.stop().catch(() => undefined);
        const totals = hub.meter.snapshot().totals;
        say(`stopped: ${totals['d2c.messages'] ?? 0} device-to-cloud messages, ${totals['d2c.units'] ?? 0} billed 4 KB units in this data dir`);
        await hub.stop();
      }
    });
}

/**
 * The scenario's emulators; without dbus-daemon (no wearables possible) the demo runs the other
 * families and says why, rather than not running at all.
 */
async function startDemoRig(scenario: DeepReadonly<Scenario>, dir: string, log: Logger, say: (line: string) => void): Promise<Rig> {
  try {
    return await startRig(scenario, { dir, log, source: 'demo scenario' });
  } catch (e) {
    if (!isFieldlinkError(e, 'EMULATOR_FAILED') || scenario.wearables === undefined) throw e;
    say(`wearables not emulated: ${e.message} (install the dbus package for them); running the other sensors`);
    const { wearables: _wearables, timeline, ...rest } = scenario;
    return startRig({ ...rest, timeline: (timeline ?? []).filter((ev) => !ev.target.includes(':')) }, { dir, log, source: 'demo scenario' });
  }
}
