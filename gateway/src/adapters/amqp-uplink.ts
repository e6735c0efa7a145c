/**
 * The uplink (ports/uplink.ts) over the Azure IoT device SDK on AMQP. The SDK's own retries are
 * off (NoRetry: they are silent and last up to 240 s); every operation has our deadline instead,
 * and a deadline that fires tears the client down, so a hung SDK call cannot leak: pending
 * operations reject and the caller opens a fresh client. Errors are classified by the SDK error's
 * constructor name (docs/local-hub.md: compare names, not `instanceof`).
 */
import deviceSdk from 'azure-iot-device';
import deviceAmqp from 'azure-iot-device-amqp';
import common from 'azure-iot-common';
import { systemClock, type Clock } from '../../../common/clock.js';
import type { Logger } from '../../../common/log.js';
import {
  nextUtcMidnight,
  UplinkError,
  type IncomingCommand,
  type OutgoingMessage,
  type TwinDocument,
  type TwinSection,
  type Uplink,
  type UplinkErrorKind,
} from '../ports/uplink.js';

type Client = InstanceType<typeof deviceSdk.Client>;
type Twin = Awaited<ReturnType<Client['getTwin']>>;
type SdkMessage = InstanceType<typeof common.Message>;

export interface AmqpUplinkOptions {
  readonly connectionString: string;
  /** PEM of a CA to trust (the local hub's); passed with tokenRenewal in one setOptions call. */
  readonly ca?: string;
  readonly tokenRenewal?: { readonly tokenValidTimeInSeconds: number; readonly tokenRenewalMarginInSeconds: number };
  /** Deadline of open and of every send/twin/settle call (default 30 s). */
  readonly deadlineMs?: number;
  /** For deadlines (monotonic) and the quota reset time (wall). */
  readonly clock?: Clock;
  readonly log?: Logger;
}

const NAME_KIND: Record<string, UplinkErrorKind> = {
  ThrottlingError: 'throttled',
  IotHubQuotaExceededError: 'quota',
  UnauthorizedError: 'auth',
  DeviceNotFoundError: 'auth',
  MessageTooLargeError: 'tooLarge',
  NotConnectedError: 'unreachable',
  TimeoutError: 'timeout',
  ServiceUnavailableError: 'unreachable',
};
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN']);

function describe(err: unknown): string {
  const e = err as { message?: string; amqpError?: { description?: string } } | undefined;
  const reason = e?.amqpError?.description;
  return reason ? `${e?.message ?? ''}: ${reason}` : (e?.message ?? String(err));
}

/** Classifies an SDK (or transport) error. `nowMs` is for the quota reset time. */
export function classifyUplinkError(err: unknown, nowMs: number, what: string): UplinkError {
  if (err instanceof UplinkError) return err;
  const e = err as { name?: string; code?: string; constructor?: { name?: string }; transportError?: unknown } | undefined;
  const names = [e?.constructor?.name, e?.name].filter((n): n is string => typeof n === 'string');
  let kind: UplinkErrorKind = 'other';
  for (const n of names) {
    const k = NAME_KIND[n];
    if (k !== undefined) {
      kind = k;
      break;
    }
  }
  const inner = e?.transportError as { code?: string } | undefined;
  if (kind === 'other' && (NET_CODES.has(e?.code ?? '') || NET_CODES.has(inner?.code ?? ''))) kind = 'unreachable';
  const message = `${what}: ${kind === 'auth' ? 'IoT Hub rejected the credentials' : kind}: ${describe(err)}`;
  return new UplinkError(kind, { message, cause: err, ...(kind === 'quota' ? { retryAt: nextUtcMidnight(nowMs) } : {}), details: { sdkError: names[0] } });
}

function propertiesOf(m: SdkMessage): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < m.properties.count(); i++) {
    const p = m.properties.getItem(i);
    out[p.key] = String(p.value);
  }
  return out;
}

export class AmqpUplink implements Uplink {
  readonly #opts: AmqpUplinkOptions;
  readonly #clock: Clock;
  readonly #deadlineMs: number;
  #client: Client | undefined;
  #twin: Twin | undefined;
  #opening: Promise<void> | undefined;
  /** Rejecters of operations in progress on the current client, for teardown. */
  readonly #pending = new Set<(e: UplinkError) => void>();
  readonly #commandHandlers = new Set<(c: IncomingCommand) => void>();
  readonly #desiredHandlers = new Set<(p: TwinSection) => void>();
  readonly #disconnectHandlers = new Set<(e: UplinkError) => void>();

  constructor(opts: AmqpUplinkOptions) {
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#deadlineMs = opts.deadlineMs ?? 30_000;
  }

  get isOpen(): boolean {
    return this.#client !== undefined && this.#opening === undefined;
  }

  open(signal?: AbortSignal): Promise<void> {
    if (this.isOpen) return Promise.resolve();
    this.#opening ??= this.#open(signal).finally(() => {
      this.#opening = undefined;
    });
    return this.#opening;
  }

  async #open(signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const client = deviceSdk.Client.fromConnectionString(this.#opts.connectionString, deviceAmqp.Amqp);
    this.#client = client;
    // Until open resolves, a failure is reported by the open call itself (with its real cause).
    client.on('error', (err: unknown) => this.#lost(client, err));
    client.on('disconnect', (err: unknown) => this.#lost(client, err));
    const onAbort = (): void => this.#teardown(client, new UplinkError('other', { message: 'uplink open aborted', cause: signal?.reason }));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // One call with every option: each setOptions replaces the transport's options. Awaited:
      // the SDK first tries `ca` as a file name, asynchronously.
      const options: Record<string, unknown> = {};
      if (this.#opts.ca !== undefined) options.ca = this.#opts.ca;
      if (this.#opts.tokenRenewal !== undefined) options.tokenRenewal = { ...this.#opts.tokenRenewal };
      if (Object.keys(options).length > 0) await this.#op(client, 'uplink setOptions', () => client.setOptions(options));
      client.setRetryPolicy(new common.NoRetry());
      client.on('message', (m: SdkMessage) => this.#onMessage(client, m));
      await this.#op(client, 'uplink open', () => client.open());
      // Subscribing to desired patches needs the twin link; the SDK holds the Twin afterwards.
      const twin = await this.#op(client, 'uplink twin', () => client.getTwin());
      // Subscribe first and wait for the hub's answer: the SDK's own subscription (on adding a
      // listener) runs in the background, and a patch sent before it completes is never pushed.
      const subscribable = twin as unknown as { enableTwinDesiredPropertiesUpdates(cb: (err?: Error) => void): void };
      await this.#op(
        client,
        'uplink desired-property subscription',
        () => new Promise<void>((resolve, reject) => subscribable.enableTwinDesiredPropertiesUpdates((err) => (err ? reject(err) : resolve()))),
      );
      twin.on('error', (err: unknown) => this.#opts.log?.warn({ err }, 'uplink twin error'));
      twin.on('properties.desired', (patch: TwinSection) => {
        if (this.#client !== client) return;
        for (const h of this.#desiredHandlers) h(patch);
      });
      this.#twin = twin;
      this.#opts.log?.info('uplink open');
    } catch (err) {
      this.#teardown(client, err instanceof UplinkError ? err : classifyUplinkError(err, this.#clock.now(), 'uplink open'));
      throw err instanceof UplinkError ? err : classifyUplinkError(err, this.#clock.now(), 'uplink open');
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async send(message: OutgoingMessage): Promise<void> {
    const client = this.#requireOpen('send');
    const m = new common.Message(message.body);
    m.messageId = message.messageId;
    if (message.contentType !== undefined) m.contentType = message.contentType as never;
    if (message.contentEncoding !== undefined) m.contentEncoding = message.contentEncoding as never;
    for (const [k, v] of Object.entries(message.properties ?? {})) m.properties.add(k, v);
    await this.#op(client, `send ${message.messageId}`, () => client.sendEvent(m));
  }

  async getTwin(): Promise<TwinDocument> {
    const client = this.#requireOpen('getTwin');
    const twin = await this.#op(client, 'getTwin', () => client.getTwin());
    this.#twin = twin;
    const props = twin.properties as unknown as { desired: TwinSection; reported: TwinSection };
    const plain = (s: TwinSection): TwinSection => JSON.parse(JSON.stringify(s, (k, v: unknown) => (k === 'update' ? undefined : v))) as TwinSection;
    return { desired: plain(props.desired), reported: plain(props.reported) };
  }

  async reportProperties(patch: TwinSection): Promise<void> {
    const client = this.#requireOpen('reportProperties');
    const twin = this.#twin ?? (await this.#op(client, 'getTwin', () => client.getTwin()));
    this.#twin = twin;
    await this.#op(
      client,
      'reportProperties',
      () =>
        new Promise<void>((resolve, reject) => {
          twin.properties.reported.update(patch, (err?: Error) => (err ? reject(err) : resolve()));
        }),
    );
  }

  async close(): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    this.#detach(client, new UplinkError('unreachable', { message: 'uplink closed' }));
    await this.#closeClient(client);
  }

  onCommand(handler: (command: IncomingCommand) => void): () => void {
    this.#commandHandlers.add(handler);
    return () => this.#commandHandlers.delete(handler);
  }

  onDesiredPatch(handler: (patch: TwinSection) => void): () => void {
    this.#desiredHandlers.add(handler);
    return () => this.#desiredHandlers.delete(handler);
  }

  onDisconnect(handler: (error: UplinkError) => void): () => void {
    this.#disconnectHandlers.add(handler);
    return () => this.#disconnectHandlers.delete(handler);
  }

  #requireOpen(what: string): Client {
    if (this.#client === undefined || this.#opening !== undefined) throw new UplinkError('unreachable', { message: `${what}: uplink is not open` });
    return this.#client;
  }

  /**
   * Runs one SDK call with the deadline. On timeout the client is torn down (every pending
   * operation rejects) so a hung call cannot keep the connection half-alive.
   */
  #op<T>(client: Client, what: string, call: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = new AbortController();
      const settle = (): void => {
        this.#pending.delete(fail);
        timer.abort();
      };
      const fail = (e: UplinkError): void => {
        settle();
        reject(e);
      };
      this.#pending.add(fail);
      this.#clock.sleep(this.#deadlineMs, timer.signal).then(
        () => {
          const e = new UplinkError('timeout', { message: `${what}: no answer within ${this.#deadlineMs} ms` });
          fail(e);
          this.#teardown(client, new UplinkError('timeout', { message: `torn down after ${what} timed out` }));
        },
        () => undefined,
      );
      let started: Promise<T>;
      try {
        started = call();
      } catch (err) {
        started = Promise.reject(err as Error);
      }
      started.then(
        (v) => {
          if (!this.#pending.has(fail)) return;
          settle();
          resolve(v);
        },
        (err: unknown) => {
          if (!this.#pending.has(fail)) return;
          fail(classifyUplinkError(err, this.#clock.now(), what));
        },
      );
    });
  }

  /** Settlements run one after another (see settleWith). */
  #settling: Promise<void> = Promise.resolve();

  #onMessage(client: Client, m: SdkMessage): void {
    if (this.#client !== client) return;
    let settled = false;
    const settleWith = (what: 'complete' | 'reject' | 'abandon') => async (): Promise<void> => {
      if (settled) throw new RangeError(`C2D message ${String(m.messageId)} already settled`);
      settled = true;
      const settle = async (): Promise<void> => {
        const current = this.#requireOpen(what);
        await this.#op(current, `${what} C2D ${String(m.messageId)}`, () => current[what](m).then(() => undefined));
        // rhea (1.0.24 in the device SDK) writes the dispositions queued in one tick as ranges and
        // gives a range of two the first one's outcome: a reject right after a complete went out
        // as accepted. One settlement per turn of the event loop keeps each outcome its own.
        await new Promise<void>((resolve) => setImmediate(resolve));
      };
      const run = this.#settling.then(settle);
      this.#settling = run.catch(() => undefined);
      await run;
    };
    const data = m.getData() as Buffer | string;
    const command: IncomingCommand = {
      messageId: m.messageId === undefined || m.messageId === null ? undefined : String(m.messageId),
      body: Buffer.isBuffer(data) ? data : Buffer.from(String(data)),
      contentType: m.contentType ?? undefined,
      properties: propertiesOf(m),
      complete: settleWith('complete'),
      reject: settleWith('reject'),
      abandon: settleWith('abandon'),
    };
    for (const h of this.#commandHandlers) h(command);
  }

  #lost(client: Client, err: unknown): void {
    // While opening, the open call reports the failure with its real cause (or its deadline fires).
    if (this.#client !== client || this.#opening !== undefined) return;
    const e = classifyUplinkError(err, this.#clock.now(), 'uplink disconnected');
    const lost = e.kind === 'other' ? new UplinkError('unreachable', { message: e.message, cause: err }) : e;
    this.#opts.log?.warn({ err: lost }, 'uplink disconnected');
    this.#teardown(client, lost);
    for (const h of this.#disconnectHandlers) h(lost);
  }

  /** Forgets the client, rejects its pending operations and closes it in the background. */
  #teardown(client: Client, reason: UplinkError): void {
    if (this.#client !== client) return;
    this.#detach(client, reason);
    void this.#closeClient(client);
  }

  /** Closes an SDK client, giving up after the deadline (a hung close is abandoned). */
  async #closeClient(client: Client): Promise<void> {
    const timer = new AbortController();
    await Promise.race([client.close().then(() => undefined), this.#clock.sleep(this.#deadlineMs, timer.signal)])
      .catch(() => undefined)
      .finally(() => timer.abort());
  }

  #detach(client: Client, reason: UplinkError): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#twin = undefined;
    client.removeAllListeners('message');
    client.removeAllListeners('disconnect');
    // Keep a no-op error listener: an 'error' with no listener would crash the process.
    client.removeAllListeners('error');
    client.on('error', () => undefined);
    for (const reject of [...this.#pending]) reject(reason);
  }
}
