/** JSON schemas shared by the companion's gateway, command and config routes (and the OpenAPI document). */
import { GATEWAY_ID_PATTERN } from '../../gateway/src/contract/gateway-config.js';
import { WAKE_MAX_S } from '../../gateway/src/contract/commands.js';
import { CONFIG_STATES, HEALTH_STATES } from './gateway-view.js';
import { COMMAND_STATUSES } from './store.js';

export const gatewayIdParams = {
  type: 'object',
  required: ['id'],
  properties: { id: { type: 'string', pattern: GATEWAY_ID_PATTERN, description: 'The gateway id (its IoT Hub device id)' } },
} as const;

const isoTime = { type: 'string', format: 'date-time' } as const;
const nullable = <T extends object>(s: T) => ({ ...s, nullable: true }) as const;

export const commandSchema = {
  $id: 'Command',
  type: 'object',
  required: ['id', 'gateway', 'type', 'payload', 'status', 'statusReason', 'created', 'updated', 'expiresAt', 'requestedBy'],
  properties: {
    id: { type: 'string', description: 'Command id; also the C2D message id IoT Hub feedback names' },
    gateway: { type: 'string' },
    type: { type: 'string', enum: ['wake', 'measure', 'sleep'] },
    payload: { type: 'object', additionalProperties: true, description: 'The C2D message body sent to the gateway' },
    status: { type: 'string', enum: [...COMMAND_STATUSES] },
    statusReason: { type: 'string', nullable: true, description: "IoT Hub's feedback (or the send error) that set the status" },
    created: isoTime,
    updated: isoTime,
    expiresAt: isoTime,
    requestedBy: { type: 'string', description: 'Token name, or `companion` for a follow-up it sent itself' },
    stayForS: { type: 'integer', nullable: true, description: 'Wake only: the longest stay asked while it was queued' },
    followUp: { type: 'string', nullable: true, description: 'Id of the follow-up wake sent to honour a longer stay' },
    followUpOf: { type: 'string', nullable: true },
  },
} as const;

export const commandBodySchema = {
  type: 'object',
  required: ['type'],
  additionalProperties: false,
  description: 'A gateway command (gateway/src/contract/commands.ts): {type:"wake",forS}, {type:"measure",sources?} or {type:"sleep"}',
  properties: {
    type: { type: 'string', enum: ['wake', 'measure', 'sleep'] },
    forS: { type: 'integer', minimum: 1, maximum: WAKE_MAX_S, description: 'wake: seconds to stay online once received' },
    sources: { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 1, description: 'measure: source ids or prefixes (omit for all)' },
    expiresInS: {
      type: 'integer',
      minimum: 10,
      maximum: WAKE_MAX_S,
      description: "Drop the command if the gateway has not taken it by then (default: a little over its check-in interval)",
    },
  },
} as const;

export const gatewaySummarySchema = {
  $id: 'GatewaySummary',
  type: 'object',
  required: ['id', 'health', 'healthReasons', 'connected', 'power', 'outbox', 'sourcesWithErrors', 'config', 'firmware'],
  properties: {
    id: { type: 'string' },
    health: { type: 'string', enum: [...HEALTH_STATES], description: 'Judged from the check-in schedule: asleep and on time is ok' },
    healthReasons: { type: 'array', items: { type: 'string' } },
    connected: { type: 'boolean', description: 'Connected to IoT Hub now (false while in standby, by design)' },
    power: {
      type: 'object',
      required: ['state', 'lastCheckIn', 'lastWakeReason', 'checkInIntervalS', 'nextCheckIn'],
      properties: {
        state: { type: 'string', nullable: true },
        lastCheckIn: nullable(isoTime),
        lastWakeReason: { type: 'string', nullable: true },
        checkInIntervalS: { type: 'integer' },
        nextCheckIn: nullable(isoTime),
      },
    },
    outbox: {
      type: 'object',
      nullable: true,
      required: ['depth', 'oldestAgeS'],
      properties: { depth: { type: 'integer' }, oldestAgeS: { type: 'integer', nullable: true } },
    },
    sourcesWithErrors: { type: 'array', items: { type: 'string' } },
    config: { type: 'object', required: ['status'], properties: { status: { type: 'string', enum: [...CONFIG_STATES] } } },
    firmware: { type: 'string', nullable: true },
  },
} as const;

export const configViewSchema = {
  $id: 'ConfigView',
  type: 'object',
  required: ['etag', 'desired', 'desiredVersion', 'reported', 'status', 'errors'],
  properties: {
    etag: { type: 'string', description: 'Send it back in If-Match to change the config safely' },
    desired: { type: 'object', additionalProperties: true, description: 'Desired properties (gateway settings) without $-keys' },
    desiredVersion: { type: 'integer' },
    reported: {
      type: 'object',
      nullable: true,
      additionalProperties: true,
      description: "The gateway's acknowledgement (reported `config`): appliedVersion, desiredVersion, status, errors",
    },
    status: { type: 'string', enum: [...CONFIG_STATES], description: 'applied: the gateway runs the desired version; pending: not yet acknowledged; rejected: see errors' },
    errors: { type: 'array', items: { type: 'object', additionalProperties: true } },
  },
} as const;

export const sharedSchemas = [commandSchema, gatewaySummarySchema, configViewSchema] as const;
