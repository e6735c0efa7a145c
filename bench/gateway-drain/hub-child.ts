/*
 * The local IoT Hub in a process of its own, so its CPU does not share the gateway side's event
 * loop. argv: <dataDir>. Talks to hub-process.ts over IPC: 'ready' once listening, then answers
 * 'cpu' samples and exits on 'stop' (or when the parent goes away).
 */
import { createLogger } from '../../common/log.js';
import { hubFilePath } from '../../cloud/hub/data-dir.js';
import { LocalHub } from '../../cloud/hub/local-hub.js';
import { sampleCpu } from '../hub-d2c/cpu.js';
import type { FromHub, ToHub } from './hub-process.js';

function send(msg: FromHub): void {
  process.send?.(msg);
}

async function main(): Promise<void> {
  // An orphaned hub would hold a port and a core; the IPC channel closes when the parent dies.
  process.on('disconnect', () => process.exit(1));
  const dataDir = process.argv[2];
  if (!dataDir) throw new Error('usage: hub-child.js <dataDir>');
  // No rate limit or daily quota (the defaults): the benchmark measures the gateway, not throttling.
  const hub = await LocalHub.start({ dataDir, amqpPort: 0, httpsPort: 0, log: createLogger({ name: 'bench-hub', level: 'warn' }) });
  process.on('message', (raw) => {
    const msg = raw as ToHub;
    if (msg.type === 'cpu') send({ type: 'cpu', id: msg.id, sample: sampleCpu() });
    else if (msg.type === 'stop') {
      // Bounded: a stuck socket must not keep the hub (and its port) alive.
      setTimeout(() => process.exit(0), 3000).unref();
      hub.stop().finally(() => process.exit(0));
    }
  });
  send({ type: 'ready', ca: hub.ca, hubJson: hubFilePath(dataDir) });
}

main().catch((err: unknown) => {
  const failed: FromHub = { type: 'failed', message: err instanceof Error ? (err.stack ?? err.message) : String(err) };
  // Exit only once the report is out: process.send is asynchronous.
  if (process.send) process.send(failed, undefined, undefined, () => process.exit(1));
  else process.exit(1);
});
