/**
 * Composition root of the gateway (design §3): reads the config, opens the real adapters
 * (SQLite outbox, AMQP uplink, serial thermostats, timedate1 clock trust) and starts the
 * runtime. Nothing else in the gateway knows which adapters exist.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock, type Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { AmqpUplink } from './adapters/amqp-uplink.js';
import { APPLIED_CONFIG_FILE, JsonFileAppliedConfigStore } from './adapters/applied-config-store.js';
import { linuxBootClock } from './adapters/linux-boot-clock.js';
import { BleWearablesSource } from './adapters/ble-wearables-source.js';
import { FirmataBoardSource } from './adapters/firmata-board-source.js';
import { SerialThermostatSource } from './adapters/serial-thermostat-source.js';
import { SqliteOutbox } from './adapters/sqlite-outbox.js';
import { Timedate1ClockTrust } from './adapters/timedate1-clock-trust.js';
import { GatewayRuntime, outboxLimits, type GatewayRuntimeOptions, type Settings } from './app/gateway.js';
import { describeConfig, validateSettings, type LoadedGatewayConfig } from './config/load-config.js';
import { initialReconcileState } from './domain/twin-reconcile.js';
import { AssumedClockTrust, type BootClock, type ClockTrust } from './ports/clock-trust.js';
import type { GatewaySource } from './ports/gateway-source.js';

export const OUTBOX_FILE = 'outbox.sqlite';

export interface StartGatewayOptions {
  readonly log: Logger;
  readonly clock?: Clock;
  readonly firmwareVersion: string;
  /** Runtime tuning for tests and the demo (retry backoff, report cadence, forwarder). */
  readonly runtime?: Partial<Pick<GatewayRuntimeOptions, 'retryBaseMs' | 'retryMaxMs' | 'reportEveryMs' | 'deviceStateReportMs' | 'onlineForwardDelayMs' | 'forwarder' | 'samplingRetryMs' | 'watermarkCheckMs'>>;
  /** Defaults to the Linux boot (boot_id, CLOCK_MONOTONIC); tests simulate reboots. */
  readonly bootClock?: BootClock;
  /** Defaults to what the config's clockTrust says. */
  readonly clockTrust?: ClockTrust;
  /** Uplink deadline per operation (default 30 s). */
  readonly uplinkDeadlineMs?: number;
}

function buildSources(config: LoadedGatewayConfig, settings: Settings, clock: Clock, log: Logger): GatewaySource[] {
  const sources: GatewaySource[] = [];
  for (const s of config.sources) {
    switch (s.family) {
      case 'serial':
        sources.push(new SerialThermostatSource({ configId: s.id, path: s.path, baudRate: s.baudRate, clock, log }));
        break;
      case 'firmata':
        sources.push(new FirmataBoardSource({ configId: s.id, path: s.path, baudRate: s.baudRate, thermometers: s.thermometers, clock, log }));
        break;
      case 'ble':
        sources.push(new BleWearablesSource({ configId: s.id, adapter: s.adapter, pairings: settings.pairings, clock, log }));
        break;
    }
  }
  return sources;
}

function clockTrustFor(config: LoadedGatewayConfig, clock: Clock, log: Logger): ClockTrust {
  if (config.clockTrust.source === 'assume') return new AssumedClockTrust();
  return new Timedate1ClockTrust({ pollIntervalMs: config.clockTrust.pollIntervalS * 1000, clock, log });
}

function readCa(path: string | undefined): string | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    throw new FieldlinkError('CONFIG_UNREADABLE', { message: `cannot read CA file ${path}`, cause, details: { path } });
  }
}

/** Starts the gateway from a loaded config; resolves once it runs (sources sampling). */
export async function startGatewayFromConfig(config: LoadedGatewayConfig, opts: StartGatewayOptions): Promise<GatewayRuntime> {
  const { log } = opts;
  const clock = opts.clock ?? systemClock;
  log.info({ config: describeConfig(config) }, 'gateway config loaded');
  mkdirSync(config.dataDir, { recursive: true, mode: 0o700 });
  const ca = readCa(config.caFile);

  const appliedConfig = new JsonFileAppliedConfigStore(join(config.dataDir, APPLIED_CONFIG_FILE), {
    onCorrupt: (err) => log.error({ err }, 'stored applied config unusable; using the config file settings'),
  });
  // The outbox opens with the limits in effect now (file settings + last applied desired).
  const storedDesired = await appliedConfig.load();
  const atBoot = initialReconcileState(config.settings, storedDesired, validateSettings).effective;
  const limits = outboxLimits(atBoot);
  const outbox = await SqliteOutbox.open({ path: join(config.dataDir, OUTBOX_FILE), clock, log, ...limits });
  try {
    const uplink = new AmqpUplink({
      connectionString: config.connectionString,
      ...(ca === undefined ? {} : { ca }),
      clock,
      log,
      ...(opts.uplinkDeadlineMs === undefined ? {} : { deadlineMs: opts.uplinkDeadlineMs }),
    });
    const rt = await GatewayRuntime.start({
      gatewayId: config.gatewayId,
      firmwareVersion: opts.firmwareVersion,
      fileSettings: config.settings,
      validate: validateSettings,
      appliedConfig,
      storedDesired,
      outbox,
      uplink,
      sources: buildSources(config, atBoot, clock, log),
      clock,
      clockTrust: opts.clockTrust ?? clockTrustFor(config, clock, log),
      bootClock: opts.bootClock ?? linuxBootClock(),
      log,
      ...opts.runtime,
    });
    if (config.pairingMode.onBootS > 0) rt.pairingMode(config.pairingMode.onBootS);
    return rt;
  } catch (e) {
    await outbox.close().catch(() => undefined);
    throw e;
  }
}
