/*
 * The server under test, in a process of its own so its CPU time is not mixed with the
 * clients'. argv: <hub|sink> <devices> <dataDir>. Talks to run.ts over IPC (ipc.ts).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { createLogger } from '../../common/log.js';
import { LocalHub } from '../../cloud/hub/local-hub.js';
import { sampleCpu } from './cpu.js';
import { isServerKind, type FromServer, type Request, type ServerKind, type ToServer } from './ipc.js';
import { sinkConnectionStrings, startSink } from './sink.js';

interface BenchServer {
  ca: string;
  connectionStrings: string[];
  messages(): number;
  stop(): Promise<void>;
}

function send(msg: FromServer): void {
  process.send?.(msg);
}

async function startHub(devices: number, dataDir: string): Promise<BenchServer> {
  const hub = await LocalHub.start({ dataDir, amqpPort: 0, httpsPort: 0, log: createLogger({ name: 'bench-hub', level: 'warn' }) });
  const connectionStrings = Array.from({ length: devices }, (_, i) => hub.createDevice(`bench-${i}`));
  return {
    ca: hub.ca,
    connectionStrings,
    // The meter is the hub's own record of what it admitted: it must match what clients saw acked.
    messages: () => hub.meter.snapshot().totals['d2c.messages'] ?? 0,
    stop: () => hub.stop(),
  };
}

async function startSinkServer(devices: number): Promise<BenchServer> {
  const sink = await startSink();
  return { ca: sink.ca, connectionStrings: sinkConnectionStrings(sink.port, devices), messages: () => sink.messages(), stop: () => sink.close() };
}

function start(kind: ServerKind, devices: number, dataDir: string): Promise<BenchServer> {
  return kind === 'hub' ? startHub(devices, dataDir) : startSinkServer(devices);
}

/** The profiler is attached only when asked, so unprofiled runs pay nothing for it. */
let profiler: Session | undefined;

async function profile(msg: Extract<Request, { type: 'profile-start' | 'profile-stop' }>): Promise<void> {
  if (msg.type === 'profile-start') {
    profiler = new Session();
    profiler.connect();
    await profiler.post('Profiler.enable');
    await profiler.post('Profiler.start');
    return;
  }
  if (!profiler) throw new Error('profile-stop without profile-start');
  const { profile } = await profiler.post('Profiler.stop');
  writeFileSync(msg.file, JSON.stringify(profile));
  profiler.disconnect();
  profiler = undefined;
}

function answer(server: BenchServer, msg: Request): void {
  if (msg.type === 'cpu') return send({ type: 'cpu', id: msg.id, sample: sampleCpu() });
  if (msg.type === 'count') return send({ type: 'count', id: msg.id, messages: server.messages() });
  profile(msg).then(
    () => send({ type: 'done', id: msg.id }),
    (err: unknown) => send({ type: 'done', id: msg.id, error: String(err) }),
  );
}

function serve(server: BenchServer): void {
  process.on('message', (raw) => {
    const msg = raw as ToServer;
    if (msg.type === 'stop') void stopAndExit(server);
    else answer(server, msg);
  });
}

async function stopAndExit(server: BenchServer): Promise<void> {
  // Bounded: a stuck socket must not keep the server (and its port) alive.
  const timer = setTimeout(() => process.exit(0), 3000);
  await server.stop().catch(() => undefined);
  clearTimeout(timer);
  process.exit(0);
}

async function main(): Promise<void> {
  // An orphaned server would hold a port and a core; the IPC channel closes when the parent dies.
  process.on('disconnect', () => process.exit(1));
  const [kind, devicesArg, dataDir] = process.argv.slice(2);
  const devices = Number(devicesArg);
  if (!isServerKind(kind) || !Number.isInteger(devices) || devices < 1 || !dataDir) {
    throw new Error(`usage: server.js <hub|sink> <devices> <dataDir>, got ${process.argv.slice(2).join(' ')}`);
  }
  const server = await start(kind, devices, dataDir);
  serve(server);
  send({ type: 'ready', ca: server.ca, connectionStrings: server.connectionStrings });
}

main().catch((err: unknown) => {
  const failed: FromServer = { type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  // Exit only once the report is out: process.send is asynchronous.
  if (process.send) process.send(failed, undefined, undefined, () => process.exit(1));
  else process.exit(1);
});
