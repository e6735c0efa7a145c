/**
 * Wake / measure / sleep commands to gateways as IoT Hub cloud-to-device messages, tracked from
 * the request to the gateway's answer (IoT Hub's feedback stream).
 *
 * A sleeping gateway takes its messages only at its next check-in, and IoT Hub holds at most 50
 * per device; a queued message cannot be changed. So:
 * - a command identical to one still pending returns that one (`coalesced`), and any wake joins
 *   the pending wake: 100 impatient operators put one message in the queue, not 100;
 * - a wake asking for a longer stay than the pending one is honoured by a follow-up wake sent as
 *   soon as the first is delivered (the gateway is online then, so it takes it at once);
 * - at most `maxPending` commands per gateway are pending at a time (headroom under 50).
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../common/clock.js';
import { FieldlinkError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import { WAKE_MAX_S, type Command } from '../../gateway/src/contract/commands.js';
import type { FeedbackRecord, FleetHub } from './fleet-hub.js';
import type { CloudStore, CommandRecord, CommandStatus } from './store.js';

export const DEFAULT_MAX_PENDING = 40;
/** A follow-up wake goes to a gateway that is online right now: it needs no long expiry. */
const FOLLOW_UP_EXPIRY_MS = 10 * 60_000;
/** Past its expiry plus this, a command with no feedback is taken as expired (feedback can be lost). */
export const FEEDBACK_GRACE_MS = 10 * 60_000;
/** Default expiry: the check-in interval plus this share of it plus a fixed margin. */
const EXPIRY_SHARE = 0.25;
const EXPIRY_MARGIN_MS = 5 * 60_000;

/** IoT Hub feedback status → our command status. */
const feedbackStatus: Record<string, CommandStatus> = {
  Success: 'delivered',
  Rejected: 'rejected',
  Expired: 'expired',
  DeliveryCountExceeded: 'undeliverable',
  Purged: 'undeliverable',
};

export interface IssueResult {
  command: CommandRecord;
  coalesced: boolean;
  note?: string;
}

export interface CommandServiceOptions {
  store: CloudStore;
  hub: FleetHub;
  clock: Clock;
  log: Logger;
  maxPending?: number;
}

/** Default expiry: a little longer than one check-in interval, at most IoT Hub's two days. */
export function defaultExpiryMs(checkInIntervalS: number): number {
  const intervalMs = checkInIntervalS * 1000;
  return Math.min(WAKE_MAX_S * 1000, Math.round(intervalMs * (1 + EXPIRY_SHARE)) + EXPIRY_MARGIN_MS);
}

function sameCommand(a: CommandRecord, c: Command): boolean {
  if (a.type !== c.type) return false;
  if (c.type === 'wake') return true;
  return JSON.stringify(a.payload) === JSON.stringify(c);
}

export class CommandService {
  private readonly maxPending: number;

  constructor(private readonly o: CommandServiceOptions) {
    this.maxPending = o.maxPending ?? DEFAULT_MAX_PENDING;
  }

  /**
   * Queues `command` for `gateway` (or joins a pending one). The row is written before the send,
   * synchronously with the coalescing check, so concurrent requests see it; a failed send leaves
   * it `failed` with the reason and rethrows (the route answers 503). `checkInIntervalS` (the
   * gateway's) sets the default expiry.
   */
  async issue(gateway: string, command: Command, requestedBy: string, expiresInS: number | undefined, checkInIntervalS: number): Promise<IssueResult> {
    const now = this.o.clock.now();
    const pending = this.o.store.pendingCommands(gateway, now);
    const same = pending.find((p) => sameCommand(p, command));
    if (same) return this.join(same, command);
    if (pending.length >= this.maxPending) {
      throw new FieldlinkError('COMMAND_QUEUE_FULL', {
        message: `gateway "${gateway}" already has ${pending.length} commands waiting (at most ${this.maxPending}); wait for them to be delivered or expire`,
        details: { gateway, pending: pending.length, max: this.maxPending },
      });
    }
    const expiresAt = now + (expiresInS !== undefined ? expiresInS * 1000 : defaultExpiryMs(checkInIntervalS));
    const id = randomUUID();
    const record = this.o.store.insertCommand({
      id,
      gateway,
      type: command.type,
      payload: { ...command },
      status: 'sending',
      messageId: id,
      created: now,
      expiresAt,
      requestedBy,
      stayForS: command.type === 'wake' ? command.forS : null,
      followUpOf: null,
    });
    await this.send(record);
    return { command: this.o.store.findCommand(id) ?? record, coalesced: false };
  }

  private join(existing: CommandRecord, command: Command): IssueResult {
    if (command.type !== 'wake') return { command: existing, coalesced: true };
    const asked = command.forS;
    const stay = existing.stayForS ?? asked;
    if (asked <= stay) return { command: existing, coalesced: true };
    this.o.store.setStayForS(existing.id, asked, this.o.clock.now());
    return {
      command: this.o.store.findCommand(existing.id) ?? existing,
      coalesced: true,
      note: `a queued message cannot be changed: when this wake is delivered, a follow-up wake for ${asked} s is sent at once (the gateway is online then)`,
    };
  }

  private async send(record: CommandRecord): Promise<void> {
    try {
      await this.o.hub.sendCommand(record.gateway, JSON.stringify(record.payload), { messageId: record.messageId, expiresAtMs: record.expiresAt });
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      this.o.store.setCommandStatus(record.id, ['sending'], 'failed', reason, this.o.clock.now());
      throw err;
    }
    // Feedback may already have settled it (a gateway online right now answers within ms).
    this.o.store.setCommandStatus(record.id, ['sending'], 'queued', null, this.o.clock.now());
  }

  get(id: string): CommandRecord {
    const c = this.o.store.findCommand(id);
    if (!c) throw new FieldlinkError('COMMAND_NOT_FOUND', { message: `no command with id "${id}"`, details: { id } });
    return c;
  }

  list(gateway: string, limit: number): CommandRecord[] {
    return this.o.store.listCommands(gateway, limit);
  }

  /** Applies a batch of feedback records; returns the commands it settled. Idempotent. */
  applyFeedback(records: readonly FeedbackRecord[]): CommandRecord[] {
    const settled: CommandRecord[] = [];
    const now = this.o.clock.now();
    for (const r of records) {
      const to = feedbackStatus[r.statusCode];
      if (!to) {
        this.o.log.warn({ statusCode: r.statusCode, messageId: r.originalMessageId }, 'unknown feedback status ignored');
        continue;
      }
      const c = this.o.store.settleByMessageId(r.originalMessageId, to, `${r.statusCode}: ${r.description}`, now);
      if (!c) continue;
      settled.push(c);
      this.o.log.info({ command: c.id, gateway: c.gateway, type: c.type, status: c.status }, 'command settled by IoT Hub feedback');
      if (c.status === 'delivered') this.followUpIfLonger(c);
    }
    return settled;
  }

  /** Pending commands long past their expiry with no feedback: expired (the hub dropped them). */
  expireOverdue(): CommandRecord[] {
    const expired = this.o.store.expireOverdue(this.o.clock.now(), FEEDBACK_GRACE_MS, 'no feedback from IoT Hub by its expiry; taken as expired');
    for (const c of expired) this.o.log.warn({ command: c.id, gateway: c.gateway }, 'command expired without feedback');
    return expired;
  }

  private followUpIfLonger(c: CommandRecord): void {
    const sent = typeof c.payload.forS === 'number' ? c.payload.forS : undefined;
    if (c.type !== 'wake' || sent === undefined || c.stayForS === null || c.stayForS <= sent || c.followUp !== null) return;
    const now = this.o.clock.now();
    const id = randomUUID();
    const followUp = this.o.store.insertCommand({
      id,
      gateway: c.gateway,
      type: 'wake',
      payload: { type: 'wake', forS: c.stayForS },
      status: 'sending',
      messageId: id,
      created: now,
      expiresAt: now + FOLLOW_UP_EXPIRY_MS,
      requestedBy: 'companion',
      stayForS: c.stayForS,
      followUpOf: c.id,
    });
    this.o.store.setFollowUp(c.id, id);
    this.send(followUp).then(
      () => this.o.log.info({ command: id, of: c.id, forS: c.stayForS }, 'follow-up wake sent for a longer stay'),
      (err: unknown) => this.o.log.warn({ command: id, of: c.id, reason: err instanceof Error ? err.message : String(err) }, 'follow-up wake not sent'),
    );
  }
}
