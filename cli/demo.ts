import type { Command } from 'commander';
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';
import common from 'azure-iot-common';
import { createLogger } from '../common/log.js';
import { shutdownSignal } from '../common/shutdown-signal.js';
import { DEFAULT_DATA_DIR, hubFilePath } from '../cloud/hub/data-dir.js';
import { formatEvent } from '../cloud/hub/cli.js';
import { LocalHub } from '../cloud/hub/local-hub.js';
import type { StoredEvent } from '../cloud/hub/event-store.js';

const DEMO_DEVICE = 'demo-thermostat';

/**
 * `fieldlink demo`: the whole system on the embedded default, so a newcomer sees data flow.
 * Today that is the local IoT Hub and one device sending through the official device SDK
 * over AMQP; the gateway, cloud companion and emulated sensors join it as they are built.
 */
export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the local IoT Hub with a demo device sending readings, and print what arrives')
    .option('--data <dir>', 'hub data directory', DEFAULT_DATA_DIR)
    .option('--interval <ms>', 'how often the demo device sends', (v) => Number(v), 2000)
    .option('--log-level <level>', 'pino log level', 'warn')
    .action(async (opts: { data: string; interval: number; logLevel: string }) => {
      const log = createLogger({ name: 'fieldlink', level: opts.logLevel });
      const hub = await LocalHub.start({ dataDir: opts.data, log });
      const say = (line: string): void => {
        process.stdout.write(`${line}\n`);
      };
      say(`local IoT Hub: amqps://${hub.hub.hostName}:${hub.hub.amqpPort}  https://${hub.hub.hostName}:${hub.hub.httpsPort}`);
      say(`  connection strings: ${hubFilePath(opts.data)} (mode 0600)`);
      say(`  in another terminal: npx fieldlink hub meter --data ${opts.data}`);
      if (!hub.registry.get(DEMO_DEVICE)) hub.createDevice(DEMO_DEVICE);
      const onEvent = (e: StoredEvent): void => say(`hub received ${formatEvent(e)}`);
      hub.events.on('event', onEvent);

      const device = deviceSdk.Client.fromConnectionString(hub.deviceConnectionString(DEMO_DEVICE), deviceAmqp.Amqp);
      // Awaited: the SDK reads `ca` as a file name first, asynchronously.
      await device.setOptions({ ca: hub.ca });
      device.setRetryPolicy(new common.NoRetry());
      await device.open();
      say(`device ${DEMO_DEVICE} connected over AMQP; sending a reading every ${opts.interval} ms (Ctrl-C stops)`);

      let seq = 0;
      const send = async (): Promise<void> => {
        seq += 1;
        const reading = { source: `${DEMO_DEVICE}/temperature`, kind: 'temperature', value: Math.round((20 + 3 * Math.sin(seq / 5)) * 10) / 10, unit: 'Cel', seq, ts: Date.now() };
        const msg = new common.Message(JSON.stringify(reading));
        msg.contentType = 'application/json';
        msg.contentEncoding = 'utf-8';
        msg.messageId = `${DEMO_DEVICE}-${seq}`;
        try {
          await device.sendEvent(msg);
        } catch (err) {
          log.warn({ err }, 'demo send failed');
        }
      };
      await send();
      const timer = setInterval(() => void send(), opts.interval);

      await shutdownSignal(log);
      clearInterval(timer);
      hub.events.off('event', onEvent);
      await device.close().catch(() => undefined);
      const totals = hub.meter.snapshot().totals;
      say(`stopping: ${totals['d2c.messages'] ?? 0} device-to-cloud messages, ${totals['d2c.units'] ?? 0} billed 4 KB units in this data dir`);
      await hub.stop();
    });
}
