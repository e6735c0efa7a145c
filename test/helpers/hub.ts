import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';
import common from 'azure-iot-common';
import { createLogger, type Logger } from '../../common/log.js';
import { LocalHub, type LocalHubOptions } from '../../cloud/hub/local-hub.js';
import { hubFilePath } from '../../cloud/hub/data-dir.js';
import { createRegistry, createServiceClient, hubTargetFromFile } from '../../cloud/hub/service-clients.js';

/** Log lines captured as parsed JSON, for assertions on what was logged. */
export interface CapturedLog {
  readonly lines: Record<string, unknown>[];
  readonly logger: Logger;
}

export function captureLog(level = 'debug'): CapturedLog {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) lines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  return { lines, logger: createLogger({ name: 'test', level, destination }) };
}

export interface TestHub {
  hub: LocalHub;
  dir: string;
  hubJson: string;
  log: CapturedLog;
  restart(opts?: Partial<LocalHubOptions>): Promise<LocalHub>;
  cleanup(): Promise<void>;
}

/** A hub on free loopback ports in a fresh temp dir; cleanup stops it and removes the dir. */
export async function startTestHub(opts: Partial<LocalHubOptions> = {}): Promise<TestHub> {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-hub-'));
  const log = captureLog();
  const base: LocalHubOptions = { dataDir: join(dir, 'hub'), amqpPort: 0, httpsPort: 0, log: log.logger, ...opts };
  const state: TestHub = {
    hub: await LocalHub.start(base),
    dir,
    hubJson: hubFilePath(base.dataDir),
    log,
    async restart(more = {}) {
      await state.hub.stop();
      // Same ports as before (read back from hub.json), so connected clients can come back.
      const { amqpPort: _a, httpsPort: _h, ...rest } = base;
      state.hub = await LocalHub.start({ ...rest, ...more });
      return state.hub;
    },
    async cleanup() {
      await state.hub.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return state;
}

export function registryFor(t: TestHub, policy = 'iothubowner'): ReturnType<typeof createRegistry> {
  return createRegistry(hubTargetFromFile(t.hubJson, policy));
}

export function serviceClientFor(t: TestHub, policy = 'iothubowner'): ReturnType<typeof createServiceClient> {
  return createServiceClient(hubTargetFromFile(t.hubJson, policy));
}

export type DeviceClient = InstanceType<typeof deviceSdk.Client>;

/**
 * An SDK device client over AMQP trusting the hub's CA, with the SDK's silent retries off.
 * setOptions must be awaited: the SDK first tries `ca` as a file name, asynchronously, and an
 * open() issued meanwhile connects without the CA.
 */
export async function deviceClientFor(t: TestHub, connectionString: string, options: Record<string, unknown> = {}): Promise<DeviceClient> {
  const client = deviceSdk.Client.fromConnectionString(connectionString, deviceAmqp.Amqp);
  // One call: each setOptions replaces the transport's options, so a second call would drop ca.
  await client.setOptions({ ...options, ca: t.hub.ca });
  client.setRetryPolicy(new common.NoRetry());
  return client;
}

export interface FeedbackRecordJson {
  originalMessageId: string;
  deviceId: string;
  statusCode: string;
  description: string;
  enqueuedTimeUtc: string;
  deviceGenerationId: string;
}

/** Collects feedback records from the service SDK's feedback receiver. */
export async function collectFeedback(service: ReturnType<typeof createServiceClient>): Promise<{
  records: FeedbackRecordJson[];
  waitFor(pred: (r: FeedbackRecordJson) => boolean, ms: number): Promise<FeedbackRecordJson>;
}> {
  const { result: receiver } = await service.getFeedbackReceiver();
  const records: FeedbackRecordJson[] = [];
  receiver.on('message', (msg: { getData(): Buffer | string }) => {
    records.push(...(JSON.parse(msg.getData().toString()) as FeedbackRecordJson[]));
  });
  return {
    records,
    async waitFor(pred, ms) {
      const until = Date.now() + ms;
      for (;;) {
        const found = records.find(pred);
        if (found) return found;
        if (Date.now() > until) throw new Error(`feedback record not received within ${ms} ms; got ${JSON.stringify(records)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

/**
 * A retry policy for tests of recovery: a few quick retries of anything but authorisation
 * failures, instead of the SDK's silent four-minute backoff or NoRetry's giving up on C2D.
 */
export class QuickRetry {
  constructor(
    private readonly attempts = 20,
    private readonly delayMs = 100,
  ) {}

  shouldRetry(err: Error): boolean {
    return !['UnauthorizedError', 'DeviceNotFoundError', 'ArgumentError', 'MessageTooLargeError'].includes(err.name);
  }

  nextRetryTimeout(retryCount: number): number {
    return retryCount >= this.attempts ? -1 : this.delayMs;
  }
}
