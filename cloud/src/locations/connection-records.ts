/**
 * One IoT Hub `Connections` resource-log record, checked and reduced to what the fleet-location
 * analytics need. Azure Monitor writes these records (diagnostic settings → Event Hub or
 * storage; the local hub's /_local/logs/connections): top-level `time`, `operationName`,
 * `category`, `level`, and `properties` as a JSON *string* holding `deviceId` and
 * `maskedIpAddress` (cloud/hub/connection-log.ts has the full shape).
 */
import { GATEWAY_ID_PATTERN } from '../../../gateway/src/contract/gateway-config.js';
import type { ConnectionOperation } from '../../hub/connection-log.js';
import { isObject } from '../../hub/twin-patch.js';
import { IpAddressError, parseIpAddress } from './ip-address.js';

export interface ConnectionEvent {
  deviceId: string;
  /** Epoch ms. */
  time: number;
  operation: ConnectionOperation;
  /** A connect the hub refused (level Error, a status code): not activity, and its address is not the device's site. */
  failed: boolean;
  /** As logged, e.g. `203.0.113.XXX`; null when the hub logged none. */
  maskedIp: string | null;
}

export type RecordCheck =
  | { kind: 'event'; event: ConnectionEvent }
  /** Another category or operation: not an error, just not ours (diagnostic settings can mix categories). */
  | { kind: 'skipped'; reason: string }
  | { kind: 'rejected'; reason: string };

const DEVICE_ID = new RegExp(GATEWAY_ID_PATTERN);
/** Azure writes ISO 8601 UTC; anything Date.parse reads is accepted, a time far outside the fleet's life is not. */
const EARLIEST_MS = Date.UTC(2015, 0, 1);
const FUTURE_SLACK_MS = 24 * 3600_000;

const rejected = (reason: string): RecordCheck => ({ kind: 'rejected', reason });

/** Masked addresses repeat (a gateway checks in from the same one for months): each is parsed once. */
const addressChecks = new Map<string, string | null>();
const ADDRESS_CHECKS_MAX = 65_536;

/** Why `ip` is not an address, or null when it is one. */
function addressProblem(ip: string): string | null {
  const known = addressChecks.get(ip);
  if (known !== undefined) return known;
  let problem: string | null = null;
  try {
    parseIpAddress(ip);
  } catch (err) {
    if (!(err instanceof IpAddressError)) throw err;
    problem = err.message;
  }
  if (addressChecks.size >= ADDRESS_CHECKS_MAX) addressChecks.clear();
  addressChecks.set(ip, problem);
  return problem;
}

/** Checks one record; `nowMs` bounds its time (a clock a day ahead of ours is still believed). */
export function checkConnectionRecord(record: unknown, nowMs: number): RecordCheck {
  if (!isObject(record)) return rejected(`a record must be an object, not ${Array.isArray(record) ? 'an array' : record === null ? 'null' : typeof record}`);
  if (record.category !== 'Connections') return { kind: 'skipped', reason: `category ${JSON.stringify(record.category ?? null)} is not Connections` };
  const operation = record.operationName;
  if (operation !== 'deviceConnect' && operation !== 'deviceDisconnect') return { kind: 'skipped', reason: `operationName ${JSON.stringify(operation ?? null)} is not deviceConnect or deviceDisconnect` };
  if (typeof record.time !== 'string') return rejected('time is missing or not a string');
  const time = Date.parse(record.time);
  if (!Number.isFinite(time)) return rejected(`time "${record.time.slice(0, 40)}" is not an ISO 8601 time`);
  if (time < EARLIEST_MS || time > nowMs + FUTURE_SLACK_MS) return rejected(`time ${record.time.slice(0, 40)} is outside ${new Date(EARLIEST_MS).toISOString().slice(0, 10)} .. now`);

  let properties: unknown = record.properties;
  if (typeof properties === 'string') {
    try {
      properties = JSON.parse(properties);
    } catch (err) {
      return rejected(`properties is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (!isObject(properties)) return rejected('properties is missing or not a JSON object');
  const deviceId = properties.deviceId;
  if (typeof deviceId !== 'string' || !DEVICE_ID.test(deviceId)) return rejected(`properties.deviceId ${JSON.stringify(deviceId ?? null).slice(0, 140)} is not an IoT Hub device id`);

  const ip = properties.maskedIpAddress;
  let maskedIp: string | null = null;
  if (typeof ip === 'string' && ip !== '') {
    const problem = addressProblem(ip);
    if (problem !== null) return rejected(`properties.maskedIpAddress: ${problem}`);
    maskedIp = ip;
  } else if (ip !== undefined && ip !== null && ip !== '') {
    return rejected('properties.maskedIpAddress must be a string or null');
  }
  const status = properties.statusCode;
  const failed = record.level === 'Error' || (typeof status === 'string' && status !== '' && !status.startsWith('2')) || (typeof status === 'number' && (status < 200 || status > 299));
  return { kind: 'event', event: { deviceId, time, operation, failed: operation === 'deviceConnect' && failed, maskedIp } };
}
