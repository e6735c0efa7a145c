/*
 * Device-to-cloud throughput of the local IoT Hub against a bare rhea TLS sink, with 1, 10 and
 * 50 SDK device clients sending 1 KB events as fast as acks allow. The server runs in a child
 * process so its CPU time is measured apart from the clients'; both share the machine's cores.
 *
 *   npm run bench:hub-d2c                       # full run (~1 min)
 *   node dist/bench/hub-d2c/run.js --quick      # 1 s phases, 1 and 10 clients
 *   node dist/bench/hub-d2c/run.js --help
 */
import { mkdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { cpuDelta, machineBusy, sampleCpu, sampleMachine } from './cpu.js';
import type { ServerKind } from './ipc.js';
import { closeClients, drive, EVENT_BYTES, eventPayload, openClients, type DeviceClient } from './load.js';
import { summarise, table, type PhaseResult, type Summary } from './report.js';
import { killAllServers, startServer } from './server-process.js';
import { positiveInt } from '../args.js';

interface Config {
  seconds: number;
  clientCounts: number[];
  repeats: number;
  window: number;
  warmup: number;
  json: boolean;
  /** Where to write a CPU profile of each hub phase's measured window, if anywhere. */
  profileDir: string | undefined;
}

const USAGE = `usage: node dist/bench/hub-d2c/run.js [options]
  --seconds N       measured seconds per phase (default 5; --quick: 1)
  --clients LIST    client counts, comma-separated (default 1,10,50; --quick: 1,10)
  --repeats R       phases per (server, clients), interleaved sink/hub; medians printed (default 1)
  --window W        events in flight per client; 1 = wait for each ack (default 1)
  --warmup M        warm-up events per phase, spread over the clients (default 200)
  --quick           short smoke run
  --json            print results as JSON on stdout (progress still goes to stderr)
  --profile DIR     write a V8 CPU profile of each hub phase's measured window to DIR
                    (profiling slows the hub: do not read throughput from such a run)`;

function parseConfig(argv: string[]): Config | undefined {
  const { values } = parseArgs({
    args: argv,
    options: {
      seconds: { type: 'string' },
      clients: { type: 'string' },
      repeats: { type: 'string' },
      window: { type: 'string' },
      warmup: { type: 'string' },
      quick: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      profile: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) return undefined;
  const quick = values.quick === true;
  const clientCounts = (values.clients ?? (quick ? '1,10' : '1,10,50')).split(',').map((c) => positiveInt('clients', c.trim(), 1));
  return {
    seconds: positiveInt('seconds', values.seconds, quick ? 1 : 5),
    clientCounts,
    repeats: positiveInt('repeats', values.repeats, 1),
    window: positiveInt('window', values.window, 1),
    warmup: positiveInt('warmup', values.warmup, 200),
    json: values.json === true,
    profileDir: values.profile === undefined ? undefined : resolve(values.profile),
  };
}

const progress = (line: string): void => void process.stderr.write(`${line}\n`);

async function runPhase(cfg: Config, kind: ServerKind, clients: number, repeat: number): Promise<PhaseResult> {
  const payload = eventPayload();
  const server = await startServer(kind, clients);
  const devices: DeviceClient[] = [];
  try {
    await openClients(server.connectionStrings, server.ca, devices);
    // Warm-up attaches every D2C link and lets V8 optimise the hot paths before the clock starts.
    const warm = await drive(devices, { count: Math.max(2, Math.ceil(cfg.warmup / clients / cfg.window)) }, cfg.window, payload);
    const profiling = cfg.profileDir !== undefined && kind === 'hub';
    if (profiling) await server.profileStart();
    const serverBefore = await server.cpu();
    const clientBefore = sampleCpu();
    const machineBefore = sampleMachine();
    const load = await drive(devices, { until: performance.now() + cfg.seconds * 1000 }, cfg.window, payload);
    const machineAfter = sampleMachine();
    const clientAfter = sampleCpu();
    const serverAfter = await server.cpu();
    if (profiling && cfg.profileDir) await server.profileStop(join(cfg.profileDir, `hub-${clients}c-r${repeat}.cpuprofile`));
    const serverUse = cpuDelta(serverBefore, serverAfter);
    const clientUse = cpuDelta(clientBefore, clientAfter);
    return {
      kind,
      clients,
      window: cfg.window,
      repeat,
      messages: load.acked,
      wallMs: load.wallMs,
      serverCpuMs: serverUse.cpuMs,
      clientCpuMs: clientUse.cpuMs,
      serverEluBusy: serverUse.eluBusy,
      clientEluBusy: clientUse.eluBusy,
      machineBusy: machineBusy(machineBefore, machineAfter),
      serverCounted: await server.messages(),
      expectedCounted: warm.acked + load.acked,
    };
  } finally {
    await closeClients(devices);
    await server.stop();
  }
}

/** Sink and hub alternate, and swap order each repeat, so drift in machine load hits both. */
function schedule(cfg: Config): { kind: ServerKind; clients: number; repeat: number }[] {
  const out: { kind: ServerKind; clients: number; repeat: number }[] = [];
  for (const clients of cfg.clientCounts) {
    for (let repeat = 0; repeat < cfg.repeats; repeat++) {
      const order: ServerKind[] = repeat % 2 === 0 ? ['sink', 'hub'] : ['hub', 'sink'];
      for (const kind of order) out.push({ kind, clients, repeat });
    }
  }
  return out;
}

function describe(p: PhaseResult): string {
  const rate = Math.round((p.messages * 1000) / p.wallMs);
  const check = p.serverCounted === p.expectedCounted ? 'count ok' : `COUNT MISMATCH: server ${p.serverCounted}, acked ${p.expectedCounted}`;
  return `  ${p.kind.padEnd(4)} ${String(p.clients).padStart(3)} clients: ${rate} msg/s, server ${p.serverCpuMs.toFixed(0)} ms CPU, clients ${p.clientCpuMs.toFixed(0)} ms CPU (${check})`;
}

function report(cfg: Config, phases: PhaseResult[], cores: number): void {
  const summaries: Summary[] = [];
  const tables: string[] = [];
  for (const clients of cfg.clientCounts) {
    const sink = summarise(phases, 'sink', clients);
    const hub = summarise(phases, 'hub', clients);
    if (!sink || !hub) continue;
    summaries.push(sink, hub);
    const how = cfg.repeats > 1 ? `median of ${cfg.repeats}` : '1 run';
    tables.push(table(sink, hub, cores, `${clients} client${clients === 1 ? '' : 's'}, window ${cfg.window}, ${EVENT_BYTES}-byte events, ${cfg.seconds} s phases, ${how}`));
  }
  if (cfg.json) {
    const doc = { node: process.version, cores, eventBytes: EVENT_BYTES, config: cfg, summaries, phases };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  console.log(`\nhub-d2c: local IoT Hub vs bare rhea TLS sink (${cores} cores, node ${process.version})`);
  console.log('CPU is user+system time; clients = this process (SDK device clients); share = of all cores;');
  console.log('other = cores busy with processes outside the benchmark (noise); event loop busy near 100% = that side is the bottleneck.\n');
  console.log(tables.join('\n\n'));
}

async function main(): Promise<number> {
  const cfg = parseConfig(process.argv.slice(2));
  if (!cfg) {
    console.log(USAGE);
    return 0;
  }
  if (cfg.profileDir) mkdirSync(cfg.profileDir, { recursive: true });
  const cores = availableParallelism();
  const phases: PhaseResult[] = [];
  const started = performance.now();
  for (const step of schedule(cfg)) {
    const result = await runPhase(cfg, step.kind, step.clients, step.repeat).catch((cause: unknown) => {
      throw new Error(`phase ${step.kind} with ${step.clients} clients failed`, { cause });
    });
    progress(describe(result));
    phases.push(result);
  }
  progress(`  (${((performance.now() - started) / 1000).toFixed(1)} s in all)`);
  report(cfg, phases, cores);
  return phases.some((p) => p.serverCounted !== p.expectedCounted) ? 1 : 0;
}

// Server children must not outlive us, whatever ends this process.
process.on('exit', killAllServers);
process.on('SIGINT', () => {
  killAllServers();
  process.exit(130);
});

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    // console.error prints the cause chain too: which phase, then what the SDK or server said.
    console.error(err);
    killAllServers();
    process.exitCode = 1;
  },
);
