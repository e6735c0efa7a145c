/**
 * The gateway's reported properties (design §4): rollups, never lists that grow with time, so
 * the reported section stays far below IoT Hub's 32 KB cap whatever the uptime.
 */
import { redactSecrets } from '../../../common/log.js';
import type { ConfigAck } from '../domain/twin-reconcile.js';
import type { PowerPhase } from '../domain/power-state.js';
import type { OutboxStats } from '../ports/outbox.js';
import type { SourceHealth } from '../ports/gateway-source.js';

export interface SourceActivity {
  readonly health: SourceHealth;
  /** Per paired device (BLE): pairing state, RSSI, battery. */
  readonly devices?: Record<string, Record<string, unknown>>;
  /** Readings from this source committed to the outbox since start. */
  readonly readings: number;
  /** Wall-clock ms of the last committed reading (undefined: none yet). */
  readonly lastSeenMs: number | undefined;
  /** Sampling settings the device refused or did not acknowledge. */
  readonly samplingErrors: number;
}

export interface ReportedStateInput {
  readonly firmwareVersion: string;
  readonly phase: PowerPhase;
  readonly lastCheckInMs: number | undefined;
  readonly lastWakeReason: string | undefined;
  readonly uplinkFailures: number;
  /** The schedule in effect, so the cloud can judge whether a silent gateway is late or asleep. */
  readonly checkInIntervalS: number;
  readonly onlineWindowS: number;
  readonly outbox: OutboxStats | undefined;
  readonly sources: ReadonlyMap<string, SourceActivity>;
  readonly clockTrusted: boolean;
  readonly bootId: string;
  readonly lastUplinkError: { readonly kind: string; readonly message: string; readonly atMs: number } | undefined;
  readonly readingsThinned: number;
  readonly config: ConfigAck;
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** Twin property names may not contain `.`, `$` or spaces (IoT Hub twin rules). */
export function twinKey(id: string): string {
  return id.replace(/[.$ ]/g, '_');
}

const MAX_ERROR_TEXT = 200;

export function reportedState(input: ReportedStateInput): Record<string, unknown> {
  const sources: Record<string, unknown> = {};
  for (const [id, a] of input.sources) {
    sources[twinKey(id)] = {
      connected: a.health.connected,
      lastSeen: iso(a.lastSeenMs),
      readings: a.readings,
      errors: a.health.errors,
      reconnects: a.health.reconnects,
      samplingErrors: a.samplingErrors,
      ...(a.devices === undefined ? {} : { devices: a.devices }),
    };
  }
  const o = input.outbox;
  const e = input.lastUplinkError;
  return {
    firmware: { version: input.firmwareVersion },
    power: {
      state: input.phase,
      lastCheckIn: iso(input.lastCheckInMs),
      lastWakeReason: input.lastWakeReason ?? null,
      uplinkFailures: input.uplinkFailures,
      checkInIntervalS: input.checkInIntervalS,
      onlineWindowS: input.onlineWindowS,
    },
    outbox:
      o === undefined
        ? null
        : {
            depth: o.depth,
            bytes: o.bytes,
            oldestAgeS: o.oldestAgeMs === undefined ? null : Math.round(o.oldestAgeMs / 1000),
            appended: o.counters.appended,
            sent: o.counters.sent,
            evicted: o.counters.evicted,
            evictedAlarms: o.counters.evictedAlarms,
            expired: o.counters.expired,
            thinned: input.readingsThinned,
          },
    sources,
    clock: { trusted: input.clockTrusted, bootId: input.bootId },
    uplink: {
      lastError: e === undefined ? null : { kind: e.kind, message: redactSecrets(e.message).slice(0, MAX_ERROR_TEXT), at: iso(e.atMs) },
    },
    ...input.config,
  };
}
