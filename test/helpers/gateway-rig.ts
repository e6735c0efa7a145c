/**
 * End-to-end rig for the gateway: a local hub (real AMQP/TLS), thermostat emulators on real
 * ptys, a config file, and the gateway either in this process (startGatewayFromConfig) or as a
 * child process (`fieldlink gateway`, for kill -9). Everything is torn down by t.teardown, even
 * when the test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { LocalHubOptions } from '../../cloud/hub/local-hub.js';
import { readEvents } from '../../cloud/hub/event-store.js';
import type { Logger } from '../../common/log.js';
import type { Reading } from '../../sensors/contract/reading.js';
import { ThermostatEmulator, type EmittedReading, type FaultSchedule } from '../../sensors/serial-thermostat/emulator.js';
import { FirmataEmulator } from '../../sensors/firmata/emulator.js';
import type { GatewayRuntime } from '../../gateway/src/app/gateway.js';
import type { PowerPhase } from '../../gateway/src/domain/power-state.js';
import { parseGatewayConfig, type LoadedGatewayConfig } from '../../gateway/src/config/load-config.js';
import { decodeTelemetry } from '../../gateway/src/contract/telemetry.js';
import { startGatewayFromConfig, type StartGatewayOptions } from '../../gateway/src/main.js';
import { captureLog, startTestHub, type CapturedLog, type TestHub } from './hub.js';

export const CLI = fileURLToPath(new URL('../../cli/fieldlink.js', import.meta.url));

export interface RigOptions {
  readonly thermostats?: number;
  /** Merged over the rig's fast defaults (check-in 10 s, window 2 s, sample = report = 1 s). */
  readonly settings?: Record<string, unknown>;
  readonly clockTrust?: { source: 'assume' | 'timedate1'; pollIntervalS?: number };
  readonly hub?: Partial<LocalHubOptions>;
  readonly deviceId?: string;
  /** Firmata boards (emulated on ptys), each with a TMP36 on A0 (config ids board-1, …). */
  readonly boards?: number;
  /** More config sources, e.g. a BLE adapter whose fake BlueZ the test runs. */
  readonly extraSources?: readonly Record<string, unknown>[];
  /** Emulator faults, e.g. garbage on the line (every emulator). */
  readonly faults?: FaultSchedule;
  /** More top-level config file keys, e.g. pairingMode. */
  readonly configExtra?: Record<string, unknown>;
}

export interface HubReading extends Reading {
  readonly messageId: string;
}

export interface GatewayChild {
  readonly process: ChildProcess;
  /** Parsed log lines from its stderr so far. */
  readonly lines: Record<string, unknown>[];
  /** Resolves with the exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

export interface Rig {
  readonly th: TestHub;
  readonly dir: string;
  readonly deviceId: string;
  readonly configPath: string;
  readonly dataDir: string;
  readonly emulators: ThermostatEmulator[];
  readonly boards: FirmataEmulator[];
  readonly config: () => LoadedGatewayConfig;
  /** Starts the gateway in this process; stopped at teardown if the test did not. */
  startInProcess(opts?: Partial<StartGatewayOptions>): Promise<{ rt: GatewayRuntime; log: CapturedLog }>;
  /** Starts `fieldlink gateway` as a child (log level info, JSON lines kept); killed at teardown. */
  spawnGateway(env?: Record<string, string>): GatewayChild;
  /** Every reading the hub stored for the gateway, decoded, in arrival order. */
  hubReadings(): HubReading[];
  /** Emulator reading logs (what the devices sent), all emulators. */
  emitted(): EmittedReading[];
}

export const fastSettings = {
  sampling: { serial: { sampleIntervalS: 1, reportIntervalS: 1 } },
  checkInIntervalS: 10,
  onlineWindowS: 2,
  outbox: { commitIntervalMs: 200 },
  packer: { budgetUnits: 1, encoding: 'json+gzip' },
};

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const cur = out[k];
    out[k] = typeof v === 'object' && v !== null && !Array.isArray(v) && typeof cur === 'object' && cur !== null ? merge(cur as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

function killHard(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

export async function startRig(t: Test, opts: RigOptions = {}): Promise<Rig> {
  const th = await startTestHub(opts.hub);
  const emulators: ThermostatEmulator[] = [];
  const children = new Set<ChildProcess>();
  const runtimes = new Set<GatewayRuntime>();
  t.teardown(async () => {
    for (const rt of runtimes) await rt.stop().catch(() => undefined);
    for (const c of children) await killHard(c);
    for (const b of boards) await b.stop().catch(() => undefined);
    for (const e of emulators) {
      const pid = e.socatPid;
      await e.stop().catch(() => undefined);
      if (pid !== undefined) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    await th.cleanup();
  });
  const dir = th.dir;
  const deviceId = opts.deviceId ?? 'gw-e2e';
  const connectionString = th.hub.createDevice(deviceId);
  const n = opts.thermostats ?? 2;
  const sources: Record<string, unknown>[] = [];
  for (let i = 1; i <= n; i++) {
    const emu = await ThermostatEmulator.start({
      link: join(dir, `thermo-${i}`),
      rateHz: 1,
      seed: 100 + i,
      deviceId: `thermo-${i}`,
      readingLog: join(dir, `thermo-${i}.jsonl`),
      ...(opts.faults === undefined ? {} : { faults: opts.faults }),
    });
    emulators.push(emu);
    sources.push({ id: `thermo-${i}`, family: 'serial', path: emu.link, baudRate: 9600 });
  }
  const boards: FirmataEmulator[] = [];
  for (let i = 1; i <= (opts.boards ?? 0); i++) {
    const board = await FirmataEmulator.start({
      link: join(dir, `board-${i}`),
      boardId: `board-${i}`,
      seed: 200 + i,
      analog: { 0: { controller: 'TMP36', sine: { meanC: 21, amplitudeC: 3, periodMs: 20_000 } } },
      readingLog: join(dir, `board-${i}.jsonl`),
    });
    boards.push(board);
    sources.push({ id: `board-${i}`, family: 'firmata', path: board.link, baudRate: 57600, thermometers: [{ pin: 'A0', controller: 'TMP36' }] });
  }
  sources.push(...(opts.extraSources ?? []));
  const caFile = join(dir, 'hub-ca.pem');
  writeFileSync(caFile, th.hub.ca);
  const csFile = join(dir, 'connection-string');
  writeFileSync(csFile, connectionString, { mode: 0o600 });
  const dataDir = join(dir, 'gateway');
  const configDoc = {
    gatewayId: deviceId,
    connectionStringFile: csFile,
    caFile,
    dataDir,
    clockTrust: opts.clockTrust ?? { source: 'assume' },
    sources,
    settings: merge(fastSettings, opts.settings ?? {}),
    ...opts.configExtra,
  };
  const configPath = join(dir, 'gateway.json');
  writeFileSync(configPath, JSON.stringify(configDoc, null, 2));
  const config = (): LoadedGatewayConfig => parseGatewayConfig(JSON.parse(readFileSync(configPath, 'utf8')), configPath, dir, { env: {} });

  return {
    th,
    dir,
    deviceId,
    configPath,
    dataDir,
    emulators,
    boards,
    config,
    async startInProcess(more = {}) {
      const log = captureLog('debug');
      const rt = await startGatewayFromConfig(config(), {
        log: log.logger as Logger,
        firmwareVersion: '0.0.0-test',
        uplinkDeadlineMs: 10_000,
        ...more,
        runtime: { retryBaseMs: 500, retryMaxMs: 2000, reportEveryMs: 1000, samplingRetryMs: 500, forwarder: { network: { baseMs: 200, maxMs: 1000 }, throttle: { baseMs: 200, maxMs: 1000 } }, ...more.runtime },
      });
      runtimes.add(rt);
      return { rt, log };
    },
    spawnGateway(env = {}) {
      const child = spawn(process.execPath, [CLI, 'gateway', '--config', configPath, '--log-level', 'info'], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(child);
      // pino writes JSON lines to stdout; stderr carries only crashes (kept as plain lines).
      const lines: Record<string, unknown>[] = [];
      let partial = '';
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', (chunk: string) => lines.push({ msg: 'stderr', text: chunk }));
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', (chunk: string) => {
        partial += chunk;
        const parts = partial.split('\n');
        partial = parts.pop() ?? '';
        for (const l of parts) {
          if (!l.trim()) continue;
          try {
            lines.push(JSON.parse(l) as Record<string, unknown>);
          } catch {
            lines.push({ msg: l });
          }
        }
      });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      return { process: child, lines, exited };
    },
    hubReadings() {
      const out: HubReading[] = [];
      for (const e of readEvents(th.hub.db, { deviceId, limit: 1_000_000 })) {
        const body = Buffer.from(e.body, e.bodyEncoding === 'base64' ? 'base64' : 'utf8');
        for (const r of decodeTelemetry(body, e.contentEncoding)) out.push({ ...r, messageId: e.messageId ?? '' });
      }
      return out;
    },
    emitted() {
      const out: EmittedReading[] = [];
      for (let i = 1; i <= n; i++) {
        let text = '';
        try {
          text = readFileSync(join(dir, `thermo-${i}.jsonl`), 'utf8');
        } catch {
          continue;
        }
        for (const line of text.split('\n')) if (line.trim()) out.push(JSON.parse(line) as EmittedReading);
      }
      return out;
    },
  };
}

/** Per source, the seqs seen; and duplicates that came under a different message id (a bug). */
export function seqAnalysis(readings: readonly HubReading[]): { perSource: Map<string, number[]>; foreignDuplicates: string[] } {
  const firstMessage = new Map<string, string>();
  const perSource = new Map<string, number[]>();
  const foreignDuplicates: string[] = [];
  for (const r of readings) {
    const key = `${r.source}#${r.seq}`;
    const prev = firstMessage.get(key);
    if (prev === undefined) {
      firstMessage.set(key, r.messageId);
      const list = perSource.get(r.source) ?? [];
      list.push(r.seq);
      perSource.set(r.source, list);
    } else if (prev !== r.messageId) {
      foreignDuplicates.push(`${key} in ${prev} and ${r.messageId}`);
    }
  }
  for (const list of perSource.values()) list.sort((a, b) => a - b);
  return { perSource, foreignDuplicates };
}

/** Seqs missing from 1..max for each source (a gap means a committed reading was lost). */
export function seqGaps(perSource: ReadonlyMap<string, readonly number[]>): string[] {
  const gaps: string[] = [];
  for (const [source, seqs] of perSource) {
    let expect = 1;
    for (const s of seqs) {
      if (s !== expect) gaps.push(`${source}: ${expect}..${s - 1}`);
      expect = s + 1;
    }
  }
  return gaps;
}
/** Records (phase, time) on every phase change. */
export function phaseLog(rt: GatewayRuntime): { log: { phase: PowerPhase; at: number }[]; stop(): void } {
  const log = [{ phase: rt.powerState.phase, at: Date.now() }];
  const timer = setInterval(() => {
    const p = rt.powerState.phase;
    if (log.at(-1)?.phase !== p) log.push({ phase: p, at: Date.now() });
  }, 10);
  return { log, stop: () => clearInterval(timer) };
}

