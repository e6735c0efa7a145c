/*
 * Cloud companion API under load (autocannon): `GET /v1/gateways` over a fleet of 100 gateways
 * with realistic reported state, and wake commands (`POST /v1/gateways/:id/commands`) against
 * the local IoT Hub, each against a bare Fastify route returning the same JSON, interleaved in
 * the same run. The hub runs in a child process (../gateway-drain/hub-child.ts) and autocannon
 * in another (load.ts); this process serves the companion and the bare baseline.
 *
 *   npm run bench:cloud-api                        # build, then the default run (~1.5 min)
 *   node dist/bench/cloud-api/run.js --rounds 5 --seconds 5
 *   node dist/bench/cloud-api/run.js --help
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { Session } from 'node:inspector/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';
import Fastify, { type FastifyInstance } from 'fastify';
import { createLogger } from '../../common/log.js';
import { deviceConnectionString, readHubFile } from '../../cloud/hub/data-dir.js';
import { createRegistry, hubTargetFromFile } from '../../cloud/hub/service-clients.js';
import { commandBodySchema, sharedSchemas } from '../../cloud/src/api-schemas.js';
import { issueToken } from '../../cloud/src/auth.js';
import { problemSchema } from '../../cloud/src/problem.js';
import { startCloudServer, type RunningCloud } from '../../cloud/src/server.js';
import { CloudStore } from '../../cloud/src/store.js';
import { reportedState, type SourceActivity } from '../../gateway/src/app/reported-state.js';
import type { PowerPhase } from '../../gateway/src/domain/power-state.js';
import { killHubs, startHub, type HubProcess } from '../gateway-drain/hub-process.js';
import { killLoaders, startLoader, type LoadJob, type LoadProcess, type LoadResult } from './load-process.js';
import { positiveInt } from '../args.js';
import { cleanupOnExit } from '../cleanup.js';
import { fmt, median } from '../stats.js';
import { seededRandom } from '../../common/seeded-random.js';

const USAGE = `usage: node dist/bench/cloud-api/run.js [options]
  --gateways N     fleet size (default 100)
  --rounds R       subject/baseline pairs per steady-state measurement, interleaved; medians printed (default 3)
  --seconds S      length of one measured phase (default 5)
  --connections C  autocannon connections (default 10)
  --profile DIR    write a V8 CPU profile of this process (the companion) for each measured
                   companion phase to DIR (summarise with dist/bench/hub-d2c/profile-summary.js);
                   profiling slows the companion: take numbers from an unprofiled run`;

const TARGET_FLEET_RATIO = 0.7;
const WAKE_BODY = JSON.stringify({ type: 'wake', forS: 60 });
/** Parallel device connections while writing reported state (setup, not timed). */
const SETUP_BATCH = 10;

interface Config {
  gateways: number;
  rounds: number;
  seconds: number;
  connections: number;
  profile: string | undefined;
}

function parseConfig(argv: string[]): Config | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      gateways: { type: 'string' },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      connections: { type: 'string' },
      profile: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  return {
    gateways: positiveInt('gateways', values.gateways, 100),
    rounds: positiveInt('rounds', values.rounds, 3),
    seconds: positiveInt('seconds', values.seconds, 5),
    connections: positiveInt('connections', values.connections, 10),
    profile: values.profile === undefined ? undefined : resolve(values.profile),
  };
}

const progress = (line: string): void => void process.stderr.write(`${line}\n`);

const gatewayId = (i: number): string => `bench-gw-${String(i).padStart(3, '0')}`;

/**
 * What gateway `i` reports, as the gateway builds it (reportedState): three sources, an outbox,
 * a schedule. Most asleep, every 5th online; every 7th with a source down and reporting errors,
 * every 8th with uplink failures, every 13th with a recent uplink error. (None is late or silent:
 * the hub's last-activity time of each, the write just made, counts as a check-in.)
 */
function reportedFor(i: number, now: number): Record<string, unknown> {
  // Seeded: every run builds the same fleet.
  const r = seededRandom(i + 1);
  const checkInIntervalS = i % 4 === 0 ? 900 : 3_600;
  const phase: PowerPhase = i % 5 === 0 ? 'online' : 'standby';
  const lastCheckInMs = now - Math.floor(r() * checkInIntervalS * 1000 * 0.8);
  const sources = new Map<string, SourceActivity>();
  const names = ['modbus.tank-1', 'ble.env-sensors', `serial.flow-${i % 3}`];
  names.forEach((name, k) => {
    const errors = i % 7 === 0 && k === 1 ? 3 + Math.floor(r() * 20) : 0;
    sources.set(name, {
      health: { connected: errors === 0, errors, reconnects: Math.floor(r() * 5) },
      readings: 10_000 + Math.floor(r() * 500_000),
      lastSeenMs: lastCheckInMs - Math.floor(r() * 60_000),
      samplingErrors: 0,
      ...(name.startsWith('ble.')
        ? {
            devices: {
              'A4:C1:38:00:00:01': { paired: true, rssi: -60 - Math.floor(r() * 30), battery: 40 + Math.floor(r() * 60) },
              'A4:C1:38:00:00:02': { paired: true, rssi: -60 - Math.floor(r() * 30), battery: 40 + Math.floor(r() * 60) },
            },
          }
        : {}),
    });
  });
  const depth = phase === 'online' ? Math.floor(r() * 50) : Math.floor(r() * 5_000);
  return reportedState({
    firmwareVersion: i % 9 === 0 ? '0.9.4' : '1.0.2',
    phase,
    lastCheckInMs,
    lastWakeReason: i % 6 === 0 ? 'command' : 'schedule',
    uplinkFailures: i % 8 === 5 ? 1 + Math.floor(r() * 3) : 0,
    checkInIntervalS,
    onlineWindowS: 120,
    outbox: {
      depth,
      bytes: depth * 180,
      oldestAgeMs: depth === 0 ? undefined : Math.floor(r() * checkInIntervalS * 1000),
      pending: 0,
      commits: 1_000 + Math.floor(r() * 10_000),
      counters: { appended: 200_000 + Math.floor(r() * 100_000), sent: 200_000, evicted: 0, evictedAlarms: 0, expired: 0 },
    },
    sources,
    clockTrusted: true,
    bootId: randomBytes(8).toString('hex'),
    lastUplinkError: i % 13 === 0 ? { kind: 'unreachable', message: 'connect ETIMEDOUT 52.174.0.1:5671', atMs: now - 600_000 } : undefined,
    readingsThinned: 0,
    config: { config: { appliedVersion: 0, desiredVersion: 0, status: 'applied', errors: [] } },
  });
}

async function inBatches<T>(items: readonly T[], size: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let at = 0; at < items.length; at += size) await Promise.all(items.slice(at, at + size).map(fn));
}

/** Creates the gateways in the hub and writes each one's reported state through a device client. */
async function createFleet(hub: HubProcess, ids: readonly string[]): Promise<void> {
  const registry = createRegistry(hubTargetFromFile(hub.hubJson, 'registryReadWrite'));
  const hubFile = readHubFile(hub.hubJson);
  const now = Date.now();
  await inBatches(
    ids.map((id, i) => ({ id, i })),
    SETUP_BATCH,
    async ({ id, i }) => {
      const primaryKey = randomBytes(32).toString('base64');
      await registry.create({ deviceId: id, status: 'enabled', authentication: { symmetricKey: { primaryKey, secondaryKey: randomBytes(32).toString('base64') } } });
      const client = deviceSdk.Client.fromConnectionString(deviceConnectionString(hubFile, id, primaryKey), deviceAmqp.Amqp);
      // One awaited setOptions: the SDK first tries `ca` as a file name, asynchronously.
      await client.setOptions({ ca: hub.ca });
      client.setRetryPolicy(new common.NoRetry());
      try {
        await client.open();
        const twin = await client.getTwin();
        const patch = reportedFor(i, now);
        await new Promise<void>((resolve, reject) => twin.properties.reported.update(patch, (err?: Error) => (err ? reject(err) : resolve())));
      } finally {
        await client.close();
      }
    },
  );
}

async function getJson(url: string, token: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  return { status: res.status, body: await res.json() };
}

/**
 * The baseline: bare Fastify on loopback, one GET and one POST route answering the companion's
 * own JSON, with the companion's response schemas (same serialiser) but no auth, no hooks, no
 * logging, no hub and no store.
 */
async function startBare(fleetBody: unknown, wakeBody: unknown): Promise<{ url: string; app: FastifyInstance }> {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  app.addSchema(problemSchema);
  for (const schema of sharedSchemas) app.addSchema(schema);
  app.get(
    '/v1/gateways',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            required: ['gateways', 'total', 'nextCursor', 'asOf', 'stale'],
            properties: {
              gateways: { type: 'array', items: { $ref: 'GatewaySummary#' } },
              total: { type: 'integer' },
              nextCursor: { type: 'string', nullable: true },
              asOf: { type: 'string', format: 'date-time' },
              stale: { type: 'boolean' },
              refreshError: { type: 'string' },
            },
          },
        },
      },
    },
    async () => fleetBody,
  );
  app.post(
    '/v1/gateways/:id/commands',
    {
      schema: {
        body: commandBodySchema,
        response: { 202: { type: 'object', required: ['command', 'coalesced'], properties: { command: { $ref: 'Command#' }, coalesced: { type: 'boolean' }, note: { type: 'string' } } } },
      },
    },
    async (_req, reply) => {
      void reply.code(202);
      return wakeBody;
    },
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  const addr = app.server.address();
  if (addr === null || typeof addr === 'string') throw new Error('bare server has no port');
  return { url: `http://127.0.0.1:${addr.port}`, app };
}

interface Side {
  runs: LoadResult[];
}
const med = (s: Side, k: 'rps' | 'p50Ms' | 'p99Ms'): number => median(s.runs.map((r) => r[k]));

function describe(label: string, r: LoadResult): string {
  const bad = r.non2xx + r.errors > 0 ? `  non-2xx ${r.non2xx}, errors ${r.errors} ${JSON.stringify(r.statuses)}` : '';
  return `  ${label.padEnd(22)} ${fmt(r.rps).padStart(7)} req/s  p50 ${fmt(r.p50Ms, 2)} ms  p99 ${fmt(r.p99Ms, 2)} ms  (${fmt(r.completed)} responses)${bad}`;
}

/** Runs `job`, recording a CPU profile of this process into `file` if given. */
async function profiled(load: LoadProcess, job: LoadJob, file: string | undefined): Promise<LoadResult> {
  if (file === undefined) return load.run(job);
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
    const res = await load.run(job);
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(file, JSON.stringify(profile));
    progress(`  profile: ${file}`);
    return res;
  } finally {
    session.disconnect();
  }
}

/** Subject and baseline alternately (A B, B A, …), `rounds` pairs. */
async function interleaved(
  load: LoadProcess,
  rounds: number,
  label: string,
  subject: LoadJob,
  baseline: LoadJob,
  profileDir?: string,
): Promise<{ subject: Side; baseline: Side }> {
  const out = { subject: { runs: [] as LoadResult[] }, baseline: { runs: [] as LoadResult[] } };
  // Warm-up (JIT, connection pools, the fleet memo): not recorded.
  await load.run({ ...subject, durationS: 1 });
  await load.run({ ...baseline, durationS: 1 });
  for (let r = 0; r < rounds; r++) {
    for (const which of r % 2 === 0 ? (['subject', 'baseline'] as const) : (['baseline', 'subject'] as const)) {
      const res =
        which === 'subject' ? await profiled(load, subject, profileDir === undefined ? undefined : join(profileDir, `${label}-r${r + 1}.cpuprofile`)) : await load.run(baseline);
      out[which].runs.push(res);
      progress(describe(`${label} ${which} r${r + 1}`, res));
    }
  }
  return out;
}

interface Row {
  name: string;
  subject: { rps: number; p50Ms: number; p99Ms: number };
  baseline: { rps: number; p50Ms: number; p99Ms: number };
}

function rowOf(name: string, subject: Side, baseline: Side): Row {
  const pick = (s: Side) => ({ rps: med(s, 'rps'), p50Ms: med(s, 'p50Ms'), p99Ms: med(s, 'p99Ms') });
  return { name, subject: pick(subject), baseline: pick(baseline) };
}

function printTable(cfg: Config, rows: Row[], cores: number): void {
  console.log(`\ncloud-api: companion vs bare Fastify route, same JSON (${cores} cores, node ${process.version})`);
  console.log('Machine note: 2 shared cores, noisy; the companion, the bare route, the hub child and the autocannon child share them.');
  console.log(`${cfg.gateways} gateways, ${cfg.connections} connections; steady state: medians of ${cfg.rounds} interleaved ${cfg.seconds} s phases each.`);
  console.log('ratio = companion req/s ÷ bare req/s (latency columns: companion ÷ bare, higher = slower).\n');
  const head = ['', 'companion req/s', 'p50 ms', 'p99 ms', 'bare req/s', 'p50 ms', 'p99 ms', 'ratio', 'p50 ×', 'p99 ×'];
  const body = rows.map((r) => [
    r.name,
    fmt(r.subject.rps),
    fmt(r.subject.p50Ms, 2),
    fmt(r.subject.p99Ms, 2),
    fmt(r.baseline.rps),
    fmt(r.baseline.p50Ms, 2),
    fmt(r.baseline.p99Ms, 2),
    fmt(r.subject.rps / r.baseline.rps, 2),
    fmt(r.subject.p50Ms / r.baseline.p50Ms, 1),
    fmt(r.subject.p99Ms / r.baseline.p99Ms, 1),
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((b) => (b[c] ?? '').length)));
  const line = (cells: string[]): string => cells.map((x, c) => (c === 0 ? x.padEnd(widths[c] ?? 0) : x.padStart(widths[c] ?? 0))).join('  ');
  console.log(line(head));
  for (const b of body) console.log(line(b));
}

const dirs = new Set<string>();
function removeDirs(): void {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  dirs.clear();
}

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv.slice(2));
  if (!cfg) {
    console.log(USAGE);
    return;
  }
  cleanupOnExit(() => {
    killHubs();
    killLoaders();
    removeDirs();
  });

  const work = mkdtempSync(join(tmpdir(), 'fieldlink-cloud-api-'));
  dirs.add(work);
  const log = createLogger({ name: 'bench-cloud-api', level: 'warn' });
  let hub: HubProcess | undefined;
  let cloud: RunningCloud | undefined;
  let bare: { url: string; app: FastifyInstance } | undefined;
  let load: LoadProcess | undefined;
  try {
    progress('starting the hub (child process) and the load generator (child process)');
    [hub, load] = await Promise.all([startHub(join(work, 'hub')), startLoader()]);
    const ids = Array.from({ length: cfg.gateways }, (_, i) => gatewayId(i));
    const t0 = Date.now();
    await createFleet(hub, ids);
    progress(`created ${ids.length} gateways with reported state in ${fmt((Date.now() - t0) / 1000, 1)} s`);

    const cloudDir = join(work, 'cloud');
    const store = CloudStore.open(cloudDir);
    let token: string;
    try {
      token = issueToken(store, { name: 'bench', role: 'operator', now: Date.now() }).token;
    } finally {
      store.close();
    }
    cloud = await startCloudServer({
      dataDir: cloudDir,
      port: 0,
      log,
      hub: { kind: 'file', hubJson: hub.hubJson },
      app: { rateLimit: { perSecond: 1e9, burst: 1e9 } },
    });
    const fleet = await getJson(`${cloud.url}/v1/gateways`, token);
    const fleetBody = fleet.body as { total?: number; gateways?: { health: string }[] };
    if (fleet.status !== 200 || fleetBody.total !== cfg.gateways) throw new Error(`GET /v1/gateways answered ${fleet.status} with total ${String(fleetBody.total)}, expected ${cfg.gateways}`);
    const healthMix: Record<string, number> = {};
    for (const g of fleetBody.gateways ?? []) healthMix[g.health] = (healthMix[g.health] ?? 0) + 1;
    const fleetBytes = Buffer.byteLength(JSON.stringify(fleet.body));
    progress(`fleet list: ${fmt(fleetBytes)} bytes, health ${JSON.stringify(healthMix)}`);

    const auth = { authorization: `Bearer ${token}` };
    const jsonAuth = { ...auth, 'content-type': 'application/json' };
    const steady = { connections: cfg.connections, durationS: cfg.seconds };
    const fleetJob = (url: string): LoadJob => ({ url, method: 'GET', paths: ['/v1/gateways'], headers: auth, ...steady });
    const wakePaths = ids.map((id) => `/v1/gateways/${id}/commands`);
    const wakeJob = (url: string): LoadJob => ({ url, method: 'POST', paths: wakePaths, headers: jsonAuth, body: WAKE_BODY, countCoalesced: true, ...steady });

    // The bare routes answer the companion's JSON: the fleet list as just fetched, a wake as
    // the companion answers a coalesced one (taken after the first-wake phase, below).
    const firstWakeForBody = await fetch(`${cloud.url}${wakePaths[0] ?? ''}`, { method: 'POST', headers: jsonAuth, body: WAKE_BODY });
    if (firstWakeForBody.status !== 202) throw new Error(`wake answered ${firstWakeForBody.status}: ${await firstWakeForBody.text()}`);
    const wakeBody = (await firstWakeForBody.json()) as unknown;
    bare = await startBare(fleet.body, { ...(wakeBody as object), coalesced: true });

    progress(`GET /v1/gateways: ${cfg.rounds} interleaved rounds of ${cfg.seconds} s`);
    if (cfg.profile !== undefined) mkdirSync(cfg.profile, { recursive: true });
    const fleetRuns = await interleaved(load, cfg.rounds, 'fleet', fleetJob(cloud.url), fleetJob(bare.url), cfg.profile);

    // (a) First wake per gateway: a real C2D send to the hub over AMQP. Gateway 0 took one
    // above (to learn the body), so these go to the other gateways, once each.
    const firstPaths = wakePaths.slice(1);
    progress(`first wakes: ${firstPaths.length} POSTs, one per gateway (C2D send each), ${cfg.connections} connections`);
    const firstWake = await load.run({ url: cloud.url, method: 'POST', paths: firstPaths, headers: jsonAuth, body: WAKE_BODY, countCoalesced: true, connections: cfg.connections, amount: firstPaths.length });
    progress(describe('first wake companion', firstWake));
    const firstBare = await load.run({ url: bare.url, method: 'POST', paths: firstPaths, headers: jsonAuth, body: WAKE_BODY, connections: cfg.connections, amount: firstPaths.length });
    progress(describe('first wake bare', firstBare));
    if (firstWake.coalesced?.no !== firstPaths.length) progress(`WARNING: expected ${firstPaths.length} uncoalesced first wakes, got ${JSON.stringify(firstWake.coalesced)}`);

    // (b) Steady state: every gateway has a pending wake, so each POST returns it (no send).
    progress(`coalesced wakes: ${cfg.rounds} interleaved rounds of ${cfg.seconds} s`);
    const wakeRuns = await interleaved(load, cfg.rounds, 'wake', wakeJob(cloud.url), wakeJob(bare.url), cfg.profile);
    const wakeCoalesced = wakeRuns.subject.runs.reduce((s, r) => s + (r.coalesced?.no ?? 0), 0);
    if (wakeCoalesced > 0) progress(`WARNING: ${wakeCoalesced} steady-state wakes were not coalesced (sent to the hub)`);

    const rows = [
      rowOf('GET /v1/gateways', fleetRuns.subject, fleetRuns.baseline),
      rowOf(`wake, first (C2D, n=${firstPaths.length})`, { runs: [firstWake] }, { runs: [firstBare] }),
      rowOf('wake, coalesced', wakeRuns.subject, wakeRuns.baseline),
    ];
    printTable(cfg, rows, availableParallelism());
    const fleetRatio = (rows[0]?.subject.rps ?? NaN) / (rows[0]?.baseline.rps ?? NaN);
    const ok = fleetRatio >= TARGET_FLEET_RATIO;
    console.log(`\nfleet-list ratio ${fmt(fleetRatio, 2)} (target >= ${TARGET_FLEET_RATIO}): ${ok ? 'met' : 'NOT met'}`);

    const all = [...fleetRuns.subject.runs, ...fleetRuns.baseline.runs, firstWake, firstBare, ...wakeRuns.subject.runs, ...wakeRuns.baseline.runs];
    const failures = all.reduce((s, r) => s + r.non2xx + r.errors, 0);
    if (failures > 0) {
      console.log(`FAILED: ${failures} non-2xx responses or connection errors (see progress lines)`);
      process.exitCode = 1;
    }
    const doc = {
      bench: 'cloud-api',
      node: process.version,
      cores: availableParallelism(),
      config: cfg,
      fleetBytes,
      healthMix,
      rows: rows.map((r) => ({ ...r, ratio: r.subject.rps / r.baseline.rps })),
      fleetRatio,
      target: TARGET_FLEET_RATIO,
      targetMet: ok,
      firstWakeCoalesced: firstWake.coalesced,
      failures,
    };
    console.log(JSON.stringify(doc));
  } finally {
    await load?.stop().catch(() => undefined);
    await bare?.app.close().catch(() => undefined);
    await cloud?.close().catch((err: unknown) => progress(`companion close failed: ${String(err)}`));
    await hub?.stop().catch(() => undefined);
    removeDirs();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.exitCode = 1;
});
