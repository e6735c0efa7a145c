import { randomUUID } from 'node:crypto';
import rhea from 'rhea';
import type { Connection, Container, EventContext, Message, Receiver, Sender } from 'rhea';
import type { TestHub } from './hub.js';
import { within } from './deadline.js';

const WAIT = 5000;
const HOST = 'localhost';

export interface AmqpErr {
  condition: string | undefined;
  description: string | undefined;
}

export type AttachOutcome = { attached: true } | { attached: false; error: AmqpErr | undefined };

export interface CbsReply {
  status: unknown;
  description: unknown;
}

/** The error a link was detached with, if any. */
export function errorOf(link: Sender | Receiver): AmqpErr | undefined {
  const e = (link as unknown as { remote?: { detach?: { error?: { condition?: unknown; description?: unknown } } } }).remote?.detach?.error;
  if (!e) return undefined;
  return {
    condition: e.condition === undefined ? undefined : String(e.condition),
    description: e.description === undefined ? undefined : String(e.description),
  };
}

/** A bare AMQP 1.0 client over TLS, no SASL (like the SDKs), with promise helpers. */
export class RawAmqp {
  private cbsOut: Sender | undefined;
  private readonly pendingCbs = new Map<string, (r: CbsReply) => void>();
  private closed = false;

  private constructor(
    readonly container: Container,
    readonly conn: Connection,
  ) {}

  static async connect(th: TestHub): Promise<RawAmqp> {
    const container = rhea.create_container({ id: `raw-${randomUUID().slice(0, 8)}` });
    // Link errors we did not ask about must not become uncaught exceptions.
    container.on('error', () => undefined);
    const conn = container.connect({
      host: '127.0.0.1',
      port: th.hub.hub.amqpPort,
      transport: 'tls',
      ca: th.hub.ca,
      servername: HOST,
      reconnect: false,
    } as never);
    const client = new RawAmqp(container, conn);
    try {
      await within(
        WAIT,
        'amqp connection open',
        new Promise<void>((resolve, reject) => {
          conn.once('connection_open', () => resolve());
          conn.once('connection_error', (ctx: EventContext) => reject(new Error(`connection error: ${String(ctx.connection.error)}`)));
          conn.once('disconnected', (ctx: EventContext) => reject(new Error(`disconnected: ${String(ctx.error)}`)));
        }),
      );
    } catch (err) {
      await client.close();
      throw err;
    }
    return client;
  }

  /**
   * Attaches a link and reports what the hub did with it: attached (it echoed the terminus) or
   * detached with an error (a refusing peer answers with a null terminus, then detaches).
   */
  attach<L extends Sender | Receiver>(role: 'sender' | 'receiver', address: string): { link: L; outcome: Promise<AttachOutcome> } {
    const link = (
      role === 'sender' ? this.conn.open_sender({ target: { address } }) : this.conn.open_receiver({ source: { address }, autoaccept: true })
    ) as L;
    const outcome = new Promise<AttachOutcome>((resolve) => {
      link.on(`${role}_open`, () => {
        // A refusing peer's terminus is an AMQP null (a described wrapper with no address).
        const remote = (link as unknown as { remote: { attach?: { source?: { address?: unknown }; target?: { address?: unknown } } } }).remote.attach;
        const terminus = role === 'sender' ? remote?.target : remote?.source;
        if (terminus?.address === address) resolve({ attached: true });
      });
      link.on(`${role}_error`, () => undefined);
      link.on(`${role}_close`, () => resolve({ attached: false, error: errorOf(link) }));
    });
    return { link, outcome: within(WAIT, `attach ${role} ${address}`, outcome) };
  }

  async attachSender(address: string): Promise<{ link: Sender; outcome: AttachOutcome }> {
    const { link, outcome } = this.attach<Sender>('sender', address);
    return { link, outcome: await outcome };
  }

  async attachReceiver(address: string): Promise<{ link: Receiver; outcome: AttachOutcome }> {
    const { link, outcome } = this.attach<Receiver>('receiver', address);
    return { link, outcome: await outcome };
  }

  private async cbsLinks(): Promise<Sender> {
    if (this.cbsOut) return this.cbsOut;
    const [out, inn] = await Promise.all([this.attachSender('$cbs'), this.attachReceiver('$cbs')]);
    if (!out.outcome.attached || !inn.outcome.attached) throw new Error('hub refused the $cbs links');
    inn.link.on('message', (ctx: EventContext) => {
      const m = ctx.message as Message;
      const props = (m.application_properties ?? {}) as Record<string, unknown>;
      const resolve = this.pendingCbs.get(String(m.correlation_id));
      if (resolve) resolve({ status: props['status-code'], description: props['status-description'] });
    });
    this.cbsOut = out.link;
    return out.link;
  }

  /** Sends a CBS request (body and application properties as given) and awaits the correlated reply. */
  async cbs(body: unknown, props: Record<string, unknown>): Promise<CbsReply> {
    const out = await this.cbsLinks();
    const id = randomUUID();
    const reply = new Promise<CbsReply>((resolve) => this.pendingCbs.set(id, resolve));
    out.send({ to: '$cbs', reply_to: 'cbs', message_id: id, application_properties: props, body } as Message);
    try {
      return await within(WAIT, 'cbs reply', reply);
    } finally {
      this.pendingCbs.delete(id);
    }
  }

  putToken(token: unknown, audience: string): Promise<CbsReply> {
    return this.cbs(token, { operation: 'put-token', type: 'servicebus.windows.net:sastoken', name: audience });
  }

  /** Sends a message on `sender` and waits for the hub's disposition. */
  async deliver(sender: Sender, msg: Message): Promise<{ outcome: string; error: AmqpErr | undefined }> {
    await within(WAIT, 'sender credit', new Promise<void>((resolve) => (sender.sendable() ? resolve() : sender.once('sendable', () => resolve()))));
    const delivery = sender.send(msg);
    return within(
      WAIT,
      'delivery outcome',
      new Promise((resolve) => {
        for (const outcome of ['accepted', 'rejected', 'released', 'modified'] as const) {
          sender.on(outcome, (ctx: EventContext) => {
            if (ctx.delivery !== delivery) return;
            const state = (ctx.delivery as unknown as { remote_state?: { error?: { condition?: unknown; description?: unknown } } }).remote_state;
            const e = state?.error;
            resolve({ outcome, error: e ? { condition: String(e.condition), description: String(e.description) } : undefined });
          });
        }
      }),
    );
  }

  /** Closes politely; if the hub does not answer in time, cuts the socket. Never throws. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const socket = (this.conn as unknown as { socket?: { destroy(): void; destroyed?: boolean } }).socket;
    if (!this.conn.is_open()) {
      socket?.destroy();
      return;
    }
    const done = new Promise<void>((resolve) => {
      this.conn.once('connection_close', () => resolve());
      this.conn.once('disconnected', () => resolve());
    });
    this.conn.close();
    await within(2000, 'amqp close', done).catch(() => undefined);
    socket?.destroy();
  }
}
