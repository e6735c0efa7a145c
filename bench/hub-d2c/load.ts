/* The clients: SDK device clients over AMQP, each sending 1 KB events as fast as acks come back. */
import { performance } from 'node:perf_hooks';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';

export type DeviceClient = InstanceType<typeof deviceSdk.Client>;

export const EVENT_BYTES = 1024;

const OPEN_BATCH = 10;
const OPEN_TIMEOUT_MS = 20_000;
const CLOSE_TIMEOUT_MS = 5_000;

/** A 1 KB JSON document, the shape a gateway sends (text, so the hub stores it as UTF-8). */
export function eventPayload(bytes = EVENT_BYTES): Buffer {
  const head = '{"gateway":"bench","readings":"';
  const tail = '"}';
  return Buffer.from(head + 'x'.repeat(bytes - head.length - tail.length) + tail, 'utf8');
}

async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function openClient(connectionString: string, ca: string, into: DeviceClient[]): Promise<void> {
  const client = deviceSdk.Client.fromConnectionString(connectionString, deviceAmqp.Amqp);
  // Tracked before anything can fail, so the caller's cleanup closes it whatever happens next.
  into.push(client);
  // Awaited: the SDK first tries `ca` as a file name, asynchronously; an open() meanwhile skips the CA.
  await client.setOptions({ ca });
  // The SDK's default policy retries silently for minutes; a benchmark should fail fast instead.
  client.setRetryPolicy(new common.NoRetry());
  await within(OPEN_TIMEOUT_MS, 'device client open', client.open());
}

/** Opens one client per connection string, a batch at a time so TLS handshakes do not pile up. */
export async function openClients(connectionStrings: readonly string[], ca: string, into: DeviceClient[]): Promise<void> {
  for (let i = 0; i < connectionStrings.length; i += OPEN_BATCH) {
    await Promise.all(connectionStrings.slice(i, i + OPEN_BATCH).map((cs) => openClient(cs, ca, into)));
  }
}

export async function closeClients(clients: readonly DeviceClient[]): Promise<void> {
  await Promise.allSettled(clients.map((c) => within(CLOSE_TIMEOUT_MS, 'device client close', c.close())));
}

/** When a lane stops: after a number of sends, or at a deadline. */
export type Budget = { count: number } | { until: number };

export interface LoadResult {
  acked: number;
  wallMs: number;
}

/**
 * Every client runs `window` lanes; each lane sends one event and awaits its ack before the next
 * (window 1 is "as fast as acks allow"). A count budget is per lane; a deadline is shared.
 */
export async function drive(clients: readonly DeviceClient[], budget: Budget, window: number, payload: Buffer): Promise<LoadResult> {
  const state = { acked: 0, failed: false };
  const lane = async (client: DeviceClient): Promise<void> => {
    let left = 'count' in budget ? budget.count : Infinity;
    const more = (): boolean => !state.failed && left-- > 0 && ('until' in budget ? performance.now() < budget.until : true);
    try {
      while (more()) {
        await client.sendEvent(new common.Message(payload));
        state.acked++;
      }
    } catch (err) {
      // The other lanes stop at their next send rather than run on against a broken phase.
      state.failed = true;
      throw err;
    }
  };
  const start = performance.now();
  await Promise.all(clients.flatMap((c) => Array.from({ length: window }, () => lane(c))));
  return { acked: state.acked, wallMs: performance.now() - start };
}
