import { request } from 'node:https';
import { isIPv4 } from 'node:net';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { FieldlinkError, isFieldlinkError } from '../../common/errors.js';
import { decodeTelemetry, TELEMETRY_PROPERTY, TELEMETRY_SCHEMA_PREFIX } from '../../gateway/src/contract/telemetry.js';
import { createLogger } from '../../common/log.js';
import { DEFAULT_DATA_DIR, hubFilePath, readHubFile } from './data-dir.js';
import { openHubAccess, type HubAccess } from './hub-access.js';
import type { StoredEvent } from './event-store.js';
import { parseSince, PUBLIC_IP_TAG, type ConnectionLogProperties, type ConnectionLogRecord } from './connection-log.js';
import { HubError } from './hub-errors.js';
import { LocalHub } from './local-hub.js';
import type { MeterSnapshot } from './meter.js';
import { mintSasToken } from './sas.js';
import { shutdownSignal } from '../../common/shutdown-signal.js';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new FieldlinkError('CONFIG_INVALID', { message: `port must be 0-65535, not "${value}"` });
  return n;
}

function positive(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new FieldlinkError('CONFIG_INVALID', { message: `expected a whole number, not "${value}"` });
  return n;
}

function publicIp(value: string): string {
  if (!isIPv4(value)) throw new FieldlinkError('CONFIG_INVALID', { message: `--public-ip must be a dotted IPv4 address (203.0.113.7), not "${value}"` });
  return value;
}

/** A --since bound: what the hub accepts (ms, ISO 8601 with a zone), or a look-back like 30m, 2h, 7d. */
function since(value: string): number {
  const back = /^(\d+)([smhd])$/.exec(value.trim());
  if (back) return Date.now() - Number(back[1]) * { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[back[2] as 's' | 'm' | 'h' | 'd'];
  try {
    return parseSince(value);
  } catch (err) {
    if (err instanceof HubError) throw new FieldlinkError('CONFIG_INVALID', { message: `--since: ${err.message}, or a look-back such as 30m, 2h, 7d` });
    throw err;
  }
}

export function formatConnectionRecord(r: ConnectionLogRecord): string {
  const p = JSON.parse(r.properties) as ConnectionLogProperties;
  const result = r.resultType === undefined ? '' : `  ${r.resultType} ${r.resultDescription ?? ''}`;
  return `${r.time}  ${r.operationName.padEnd(16)}  ${p.deviceId}  ${p.protocol}  ${p.maskedIpAddress ?? '-'}${result}`;
}

async function withAccess<T>(dataDir: string, fn: (a: HubAccess) => Promise<T>): Promise<T> {
  const access = await openHubAccess(dataDir);
  try {
    return await fn(access);
  } finally {
    access.close();
  }
}

export function formatEvent(e: StoredEvent): string {
  const props = Object.keys(e.properties).length ? ` ${JSON.stringify(e.properties)}` : '';
  const type = [e.contentType, e.contentEncoding].filter(Boolean).join('; ');
  const body = e.bodyEncoding === 'base64' ? `(base64) ${e.body}` : e.body;
  return `#${e.sequenceNumber} ${e.enqueuedTimeUtc} ${e.deviceId}${type ? ` [${type}]` : ''}${props} ${body}`;
}

/**
 * `hub events --decode`: one JSON line per reading for a fieldlink.readings message (recognised
 * by its `flSchema` property), or undefined for any other event or one that does not decode
 * (the caller prints it raw, so nothing is hidden).
 */
export function decodedEventLines(e: StoredEvent): string[] | undefined {
  const schema = e.properties[TELEMETRY_PROPERTY.schema];
  if (typeof schema !== 'string' || !schema.startsWith(TELEMETRY_SCHEMA_PREFIX)) return undefined;
  try {
    return decodeTelemetry(Buffer.from(e.body, e.bodyEncoding === 'base64' ? 'base64' : 'utf8'), e.contentEncoding).map((r) => JSON.stringify(r));
  } catch (err) {
    if (isFieldlinkError(err, 'TELEMETRY_INVALID')) return undefined;
    throw err;
  }
}

export function formatMeter(m: MeterSnapshot): string {
  const metrics = [...new Set([...Object.keys(m.totals), ...Object.values(m.devices).flatMap((d) => Object.keys(d))])].sort();
  if (metrics.length === 0) return 'no traffic metered yet';
  const rows = [['device', ...metrics], ['(all)', ...metrics.map((k) => String(m.totals[k] ?? 0))]];
  for (const [id, counts] of Object.entries(m.devices)) rows.push([id, ...metrics.map((k) => String(counts[k] ?? 0))]);
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n');
}

/** Streams NDJSON events from the running hub until the process is interrupted. */
async function followRunning(dataDir: string, q: { deviceId?: string; fromSequence: number }, print: (e: StoredEvent) => void): Promise<void> {
  const hub = readHubFile(hubFilePath(dataDir));
  const service = hub.policies.find((p) => p.keyName === 'service');
  if (!service) throw new FieldlinkError('HUB_DATA_DIR_INVALID', { message: 'hub.json has no "service" policy' });
  const params = new URLSearchParams({ fromSequence: String(q.fromSequence) });
  if (q.deviceId !== undefined) params.set('deviceId', q.deviceId);
  await new Promise<void>((resolve, reject) => {
    const req = request(
      {
        host: hub.hostName,
        port: hub.httpsPort,
        path: `/_local/events/stream?${params.toString()}`,
        ca: readFileSync(hub.caFile, 'utf8'),
        headers: { authorization: mintSasToken(hub.hostName, service.primaryKey, 'service', Math.floor(Date.now() / 1000) + 86400) },
      },
      (res) => {
        if (res.statusCode !== 200) {
          reject(new FieldlinkError('HUB_REQUEST_FAILED', { message: `event stream refused: HTTP ${res.statusCode ?? 0}` }));
          res.resume();
          return;
        }
        let buffered = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buffered += chunk;
          let nl: number;
          while ((nl = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, nl).trim();
            buffered = buffered.slice(nl + 1);
            if (line) print(JSON.parse(line) as StoredEvent);
          }
        });
        res.on('end', () => resolve());
      },
    );
    req.on('error', (cause) => reject(new FieldlinkError('HUB_UNREACHABLE', { message: 'event stream failed', cause })));
    req.end();
    const stop = (): void => {
      req.destroy();
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

interface HubStartOptions {
  data: string;
  host?: string;
  bind: string;
  amqpPort?: number;
  httpsPort?: number;
  ca?: string;
  d2cPerSecond?: number;
  d2cPerDevicePerSecond?: number;
  dailyQuotaUnits?: number;
  logLevel: string;
}

/** Registers `fieldlink hub` and its tools. */
export function registerHubCommands(program: Command): void {
  const hub = program
    .command('hub')
    .description('run the local IoT Hub (AMQP + HTTPS, the protocols of Azure IoT Hub) and manage it')
    .option('--data <dir>', 'data directory (created on first start)', DEFAULT_DATA_DIR)
    .option('--host <name>', 'host name clients use: certificate SAN and token audience (default: saved, else localhost)')
    .option('--bind <address>', 'address to listen on', '127.0.0.1')
    .option('--amqp-port <port>', 'AMQP over TLS port (default: saved, else 5671)', port)
    .option('--https-port <port>', 'HTTPS REST port (default: saved, else 8443)', port)
    .option('--ca <dir>', 'use (or create) the CA in this directory instead of one in the data dir')
    .option('--d2c-per-second <n>', 'device-to-cloud sends a second across the hub; over it, ThrottlingError (default: unlimited)', positive)
    .option('--d2c-per-device-per-second <n>', 'device-to-cloud sends a second per device (default: unlimited)', positive)
    .option('--daily-quota-units <n>', 'billed 4 KB units a UTC day; over it, IotHubQuotaExceededError until 00:00 UTC (default: unlimited)', positive)
    .option('--log-level <level>', 'pino log level', 'info')
    .action(async (opts: HubStartOptions) => {
      const log = createLogger({ name: 'fieldlink', level: opts.logLevel });
      const local = await LocalHub.start({
        dataDir: opts.data,
        bindAddress: opts.bind,
        log,
        ...(opts.host === undefined ? {} : { hostName: opts.host }),
        ...(opts.amqpPort === undefined ? {} : { amqpPort: opts.amqpPort }),
        ...(opts.httpsPort === undefined ? {} : { httpsPort: opts.httpsPort }),
        ...(opts.ca === undefined ? {} : { caDir: opts.ca }),
        ...(opts.d2cPerSecond === undefined ? {} : { d2cPerSecond: opts.d2cPerSecond }),
        ...(opts.d2cPerDevicePerSecond === undefined ? {} : { d2cPerDevicePerSecond: opts.d2cPerDevicePerSecond }),
        ...(opts.dailyQuotaUnits === undefined ? {} : { dailyQuotaUnits: opts.dailyQuotaUnits }),
      });
      process.stdout.write(
        [
          `local IoT Hub ready: amqps://${local.hub.hostName}:${local.hub.amqpPort}  https://${local.hub.hostName}:${local.hub.httpsPort}`,
          `  hub file (connection strings, mode 0600): ${hubFilePath(opts.data)}`,
          `  CA to trust: ${local.hub.caFile}`,
          `  add a device: fieldlink hub device create <id> --data ${opts.data}`,
          '',
        ].join('\n'),
      );
      await shutdownSignal(log);
      await local.stop();
    });

  // Tools take --data from `hub` (before or after the tool's name): one option, one default.
  const dataDir = (cmd: Command): string => (cmd.optsWithGlobals() as { data: string }).data;
  const device = hub.command('device').description('manage device identities (running hub or its data dir)');
  device
    .command('create <id>')
    .description('register a device and print its connection string')
    .option('--public-ip <address>', `IPv4 the connection log shows for this device instead of its socket's (twin tag ${PUBLIC_IP_TAG})`, publicIp)
    .action(async (id: string, opts: { publicIp?: string }, cmd: Command) => {
      const cs = await withAccess(dataDir(cmd), async (a) => {
        const created = await a.createDevice(id);
        if (opts.publicIp !== undefined) await a.setPublicIp(id, opts.publicIp);
        return created;
      });
      process.stdout.write(`${cs}\n`);
    });
  device
    .command('connection-string <id>')
    .description("print a registered device's connection string")
    .action(async (id: string, _opts: object, cmd: Command) => {
      process.stdout.write(`${await withAccess(dataDir(cmd), (a) => a.deviceConnectionString(id))}\n`);
    });
  device
    .command('list')
    .description('list registered devices')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const list = await withAccess(dataDir(cmd), (a) => a.listDevices());
      if (opts.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
      else if (list.length === 0) process.stdout.write('no devices registered\n');
      else for (const d of list) process.stdout.write(`${d.deviceId}\t${d.status}\t${d.connectionState}\tc2d queued: ${d.cloudToDeviceMessageCount}\n`);
    });
  device
    .command('delete <id>')
    .description('delete a device (its queued cloud-to-device messages are purged)')
    .action(async (id: string, _opts: object, cmd: Command) => {
      await withAccess(dataDir(cmd), (a) => a.deleteDevice(id));
      process.stdout.write(`deleted ${id}\n`);
    });

  hub
    .command('events')
    .description('print device-to-cloud messages the hub stored')
    .option('--device <id>', 'only this device')
    .option('--from <sequence>', 'start at this sequence number', positive, 0)
    .option('--limit <n>', 'at most this many (without --follow)', positive, 100)
    .option('--follow', 'keep printing new messages as they arrive')
    .option('--json', 'one JSON object per line')
    .option('--decode', 'one JSON reading per line for fieldlink.readings messages (others as usual)')
    .action(async (opts: { device?: string; from: number; limit: number; follow?: boolean; json?: boolean; decode?: boolean }, cmd: Command) => {
      const data = dataDir(cmd);
      const print = (e: StoredEvent): void => {
        const decoded = opts.decode ? decodedEventLines(e) : undefined;
        if (decoded) for (const line of decoded) process.stdout.write(`${line}\n`);
        else process.stdout.write(`${opts.json ? JSON.stringify(e) : formatEvent(e)}\n`);
      };
      const q = { ...(opts.device === undefined ? {} : { deviceId: opts.device }), fromSequence: opts.from };
      const access = await openHubAccess(data);
      try {
        if (opts.follow && access.mode === 'running') {
          access.close();
          await followRunning(data, q, print);
          return;
        }
        let from = opts.from;
        for (;;) {
          const page = await access.events({ ...q, fromSequence: from, limit: opts.follow ? 1000 : opts.limit });
          page.forEach(print);
          const last = page.at(-1);
          if (last) from = last.sequenceNumber + 1;
          if (!opts.follow) return;
          // Offline follow: the hub may start later and write to the same file; poll it.
          await new Promise((r) => setTimeout(r, 500));
        }
      } finally {
        access.close();
      }
    });

  hub
    .command('meter')
    .description('print the meter: D2C messages, bytes, billed 4 KB units, C2D sent, refusals, per device')
    .option('--json', 'print JSON')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const m = await withAccess(dataDir(cmd), (a) => a.meter());
      process.stdout.write(`${opts.json ? JSON.stringify(m, null, 2) : formatMeter(m)}\n`);
    });

  hub
    .command('logs')
    .description("the hub's resource logs, as Azure Monitor records them")
    .command('connections')
    .description('print device connect and disconnect records (the Connections category), oldest first')
    .option('--since <time>', 'from this time: ISO 8601 with a zone, ms since 1970, or a look-back such as 30m, 2h, 7d', since)
    .option('--json', 'print {"records":[...]} as an Azure Monitor log blob holds them')
    .action(async (opts: { since?: number; json?: boolean }, cmd: Command) => {
      const records = await withAccess(dataDir(cmd), async (a) => {
        const all: ConnectionLogRecord[] = [];
        let afterSeq: number | undefined;
        do {
          const page = await a.connectionLog({ sinceMs: opts.since ?? 0, limit: 1000, ...(afterSeq === undefined ? {} : { afterSeq }) });
          all.push(...page.records);
          afterSeq = page.continuation;
        } while (afterSeq !== undefined);
        return all;
      });
      if (opts.json) process.stdout.write(`${JSON.stringify({ records }, null, 2)}\n`);
      else if (records.length === 0) process.stdout.write('no connection records\n');
      else for (const r of records) process.stdout.write(`${formatConnectionRecord(r)}\n`);
    });
}
