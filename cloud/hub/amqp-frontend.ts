import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:tls';
import rhea, { type Connection, type Delivery, type EventContext, type Message, type Receiver, type Sender } from 'rhea';
import type { Logger } from '../../common/log.js';
import { canActAsDevice, requireRight, type Authenticator, type Principal } from './access.js';
import { asString, bodyBytes, dataSection, idToString, messageSize, plainMap } from './amqp-message.js';
import { C2dQueue, parseAck, type C2dMessage, type C2dProperties } from './c2d-queue.js';
import type { ConnectionLog, ConnectionOperation, DisconnectReason } from './connection-log.js';
import { HubError } from './hub-errors.js';
import type { D2cIntake } from './d2c-intake.js';
import type { Meter } from './meter.js';
import type { DeviceRegistry } from './registry.js';

export interface MethodResult {
  status: number;
  payload: unknown;
}

export interface AmqpFrontendDeps {
  registry: DeviceRegistry;
  c2d: C2dQueue;
  d2c: D2cIntake;
  meter: Meter;
  auth: Authenticator;
  log: Logger;
  now: () => number;
  /** Gets a Connections resource-log record for every device connect and disconnect. */
  connectionLog?: ConnectionLog;
}

/** What a link on a connection is for, decided once when it attaches. */
type LinkRole =
  | { kind: 'cbs-in' }
  | { kind: 'cbs-out' }
  | { kind: 'd2c'; deviceId: string }
  | { kind: 'c2d'; deviceId: string }
  | { kind: 'twin-in'; deviceId: string }
  | { kind: 'twin-out'; deviceId: string }
  | { kind: 'methods-in'; deviceId: string }
  | { kind: 'methods-out'; deviceId: string }
  | { kind: 'service-c2d' }
  | { kind: 'feedback' };

interface ConnState {
  readonly id: string;
  readonly devices: Map<string, Principal>;
  service: Principal | undefined;
  readonly roles: Map<Sender | Receiver, LinkRole>;
  /** Devices whose desired-property notifications this connection subscribed to. */
  readonly desiredSubscribers: Set<string>;
  closed: boolean;
  /** Read at open: a socket that has gone no longer reports its peer. */
  readonly remoteAddress: string | undefined;
}

const DEVICE_LINK = /^\/devices\/([^/]+)\/(messages\/events|messages\/devicebound|twin|methods\/devicebound)\/?$/;
const FEEDBACK_ADDRESS = '/messages/serviceBound/feedback';
const SERVICE_C2D_ADDRESS = '/messages/devicebound';
const SERVICE_C2D_TO = /^\/devices\/([^/]+)\/messages\/devicebound\/?$/;
const FEEDBACK_BATCH = 100;

function decodeId(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * The hub's AMQP 1.0 endpoint (TLS, no SASL, CBS put-token) for both the device SDK and the
 * service SDK, with the link addresses documented in shared/iothub-protocol.md.
 */
export class AmqpFrontend {
  private readonly container = rhea.create_container({ id: 'fieldlink-local-hub', autoaccept: false } as never);
  private readonly conns = new Map<Connection, ConnState>();
  /** Outstanding deliveries we sent: C2D message seq or the feedback record seqs they carry. */
  private readonly c2dDeliveries = new Map<Delivery, number>();
  private readonly feedbackDeliveries = new Map<Delivery, number[]>();
  private readonly feedbackInFlight = new Set<number>();
  private server: Server | undefined;
  private readonly detach: (() => void)[] = [];
  /** Direct-method calls awaiting the device's reply, by correlation id. */
  private readonly pendingMethods = new Map<string, { deviceId: string; resolve: (r: MethodResult) => void }>();
  /** Callers waiting (connectTimeout) for a device's methods link, by device id. */
  private readonly methodLinkWaiters = new Map<string, Set<() => void>>();

  constructor(private readonly deps: AmqpFrontendDeps) {
    const c = this.container;
    c.on('connection_open', (ctx: EventContext) => this.onConnectionOpen(ctx));
    c.on('receiver_open', (ctx: EventContext) => this.guard(ctx, () => this.onReceiverOpen(ctx)));
    c.on('sender_open', (ctx: EventContext) => this.guard(ctx, () => this.onSenderOpen(ctx)));
    c.on('message', (ctx: EventContext) => this.guard(ctx, () => this.onMessage(ctx)));
    c.on('sendable', (ctx: EventContext) => this.guard(ctx, () => this.onSendable(ctx)));
    c.on('accepted', (ctx: EventContext) => this.onOutcome(ctx, 'accepted'));
    c.on('rejected', (ctx: EventContext) => this.onOutcome(ctx, 'rejected'));
    c.on('released', (ctx: EventContext) => this.onOutcome(ctx, 'released'));
    c.on('modified', (ctx: EventContext) => this.onOutcome(ctx, 'released'));
    c.on('sender_close', (ctx: EventContext) => this.onLinkGone(ctx.connection, ctx.sender));
    c.on('receiver_close', (ctx: EventContext) => this.onLinkGone(ctx.connection, ctx.receiver));
    c.on('connection_close', (ctx: EventContext) => this.onConnectionGone(ctx.connection, 'closed'));
    c.on('disconnected', (ctx: EventContext) => this.onConnectionGone(ctx.connection));
    c.on('error', (err: unknown) => this.deps.log.warn({ err }, 'amqp container error'));

    const onEnqueued = (deviceId: string): void => this.pumpC2d(deviceId);
    const onFeedback = (): void => this.pumpFeedbackAll();
    this.deps.c2d.on('enqueued', onEnqueued);
    this.deps.c2d.on('feedback', onFeedback);
    const offDesired = this.deps.registry.onDesiredPatch((deviceId, patch) => this.pushDesired(deviceId, patch));
    this.detach.push(() => this.deps.c2d.off('enqueued', onEnqueued), () => this.deps.c2d.off('feedback', onFeedback), offDesired);
  }

  async listen(port: number, host: string, tls: { key: string; cert: string }): Promise<number> {
    const server = this.container.listen({ port, host, transport: 'tls', key: tls.key, cert: tls.cert } as never) as unknown as Server;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    server.on('tlsClientError', (err) => this.deps.log.debug({ err: err.message }, 'amqp tls handshake failed'));
    return (server.address() as AddressInfo).port;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** Drops every connection as if the network went away (tests of client recovery use it). */
  dropConnections(): void {
    for (const conn of [...this.conns.keys()]) {
      const socket = (conn as unknown as { socket?: { destroy(): void } }).socket;
      socket?.destroy();
      this.onConnectionGone(conn);
    }
  }

  async close(): Promise<void> {
    for (const d of this.detach) d();
    // Drop the sockets without detach or close frames. azure-iot-device 1.18, told by the
    // server that links or the connection closed, tries to detach on the dead connection and
    // reconnects only after a 45 s rundown timer (measured: every restart); a dropped socket
    // it treats as a disconnect and is back within ~100 ms.
    this.dropConnections();
    const server = this.server;
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /**
   * Ends what expired tokens authorised, as IoT Hub does: a connection whose device or service
   * token passed its expiry without a renewal on $cbs loses that identity and its links.
   */
  expireTokens(): number {
    const now = this.deps.now();
    let expired = 0;
    for (const st of this.conns.values()) {
      const gone = new Set<string>();
      for (const [deviceId, principal] of st.devices) {
        if (principal.expiresAt > now) continue;
        st.devices.delete(deviceId);
        this.deps.registry.markConnected(deviceId, false);
        this.logConnection(st, 'deviceDisconnect', deviceId, principal, { reason: 'tokenExpired' });
        gone.add(deviceId);
      }
      const serviceGone = st.service !== undefined && st.service.expiresAt <= now;
      if (serviceGone) st.service = undefined;
      for (const [link, role] of st.roles) {
        const deviceLink = 'deviceId' in role && gone.has(role.deviceId);
        const serviceLink = serviceGone && (role.kind === 'service-c2d' || role.kind === 'feedback');
        if (!deviceLink && !serviceLink) continue;
        link.close({ condition: 'amqp:unauthorized-access', description: 'token expired; renew it on $cbs before it expires' });
        this.onLinkGone(link.connection, link);
      }
      expired += gone.size + (serviceGone ? 1 : 0);
    }
    return expired;
  }

  private guard(ctx: EventContext, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.deps.log.error({ err, connection: this.state(ctx.connection)?.id }, 'amqp handler failed');
      const link = ctx.receiver ?? ctx.sender;
      link?.close({ condition: 'amqp:internal-error', description: err instanceof Error ? err.message : 'internal error' });
    }
  }

  private state(conn: Connection): ConnState | undefined {
    return this.conns.get(conn);
  }

  private logConnection(st: ConnState, operation: ConnectionOperation, deviceId: string, principal: Principal, more: { sdkVersion?: string | undefined; reason?: DisconnectReason }): void {
    this.deps.connectionLog?.record(operation, {
      deviceId,
      protocol: 'Amqp',
      remoteAddress: st.remoteAddress,
      authScope: principal.kind === 'device' ? 'device' : 'hub',
      ...more,
    });
  }

  private onConnectionOpen(ctx: EventContext): void {
    const remoteAddress = (ctx.connection as unknown as { socket?: { remoteAddress?: string } }).socket?.remoteAddress;
    const st: ConnState = { id: randomUUID().slice(0, 8), devices: new Map(), service: undefined, roles: new Map(), desiredSubscribers: new Set(), closed: false, remoteAddress };
    this.conns.set(ctx.connection, st);
    this.deps.log.debug({ connection: st.id }, 'amqp connection opened');
  }

  private onConnectionGone(conn: Connection, reason: DisconnectReason = 'dropped'): void {
    const st = this.conns.get(conn);
    if (!st || st.closed) return;
    st.closed = true;
    for (const link of [...st.roles.keys()]) this.onLinkGone(conn, link);
    for (const [deviceId, principal] of st.devices) {
      this.deps.registry.markConnected(deviceId, false);
      this.logConnection(st, 'deviceDisconnect', deviceId, principal, { reason });
    }
    this.conns.delete(conn);
    this.deps.log.debug({ connection: st.id }, 'amqp connection closed');
  }

  private onLinkGone(conn: Connection, link: Sender | Receiver | undefined): void {
    if (!link) return;
    const st = this.conns.get(conn);
    const role = st?.roles.get(link);
    st?.roles.delete(link);
    if (!role) return;
    // Unsettled deliveries on a vanished link go back to their queues.
    if (role.kind === 'c2d') {
      for (const [delivery, seq] of this.c2dDeliveries) {
        if (delivery.link === link) {
          this.c2dDeliveries.delete(delivery);
          this.deps.c2d.unlock(seq);
        }
      }
    }
    if (role.kind === 'feedback') {
      for (const [delivery, seqs] of this.feedbackDeliveries) {
        if (delivery.link === link) {
          this.feedbackDeliveries.delete(delivery);
          for (const s of seqs) this.feedbackInFlight.delete(s);
        }
      }
      this.pumpFeedbackAll();
    }
    if (role.kind === 'twin-out' && st) st.desiredSubscribers.delete(role.deviceId);
  }

  private refuseLink(link: Sender | Receiver, err: HubError): void {
    this.deps.log.info({ address: link.is_sender() ? link.source?.address : link.target?.address, reason: err.message }, 'amqp link refused');
    link.close(err.amqpError());
  }

  private authorisedDevice(st: ConnState, deviceId: string): Principal {
    const principal = st.devices.get(deviceId) ?? (st.service && canActAsDevice(st.service, deviceId) ? st.service : undefined);
    if (!principal) throw new HubError('Unauthorized', `connection has no token for device "${deviceId}" (send put-token on $cbs first)`);
    if (principal.kind === 'policy') requireRight(principal, 'DeviceConnect');
    if (principal.expiresAt <= this.deps.now()) throw new HubError('Unauthorized', `token for device "${deviceId}" expired; renew it on $cbs`);
    if (this.deps.registry.status(deviceId) !== 'enabled') throw new HubError('Unauthorized', `device "${deviceId}" is disabled or deleted`);
    return principal;
  }

  private authorisedService(st: ConnState): Principal {
    const principal = st.service;
    if (!principal) throw new HubError('Unauthorized', 'connection has no service token (send put-token on $cbs first)');
    if (principal.expiresAt <= this.deps.now()) throw new HubError('Unauthorized', 'service token expired; renew it on $cbs');
    requireRight(principal, 'ServiceConnect');
    return principal;
  }

  private echoTerminus(link: Sender | Receiver, address: string): void {
    if (link.is_sender()) link.set_source({ address });
    else link.set_target({ address });
  }

  private linkRole(address: string, receiving: boolean, st: ConnState): LinkRole {
    if (address === '$cbs') return receiving ? { kind: 'cbs-in' } : { kind: 'cbs-out' };
    if (address === SERVICE_C2D_ADDRESS && receiving) {
      this.authorisedService(st);
      return { kind: 'service-c2d' };
    }
    if (address === FEEDBACK_ADDRESS && !receiving) {
      this.authorisedService(st);
      return { kind: 'feedback' };
    }
    const m = DEVICE_LINK.exec(address);
    if (m?.[1] && m[2]) {
      const deviceId = decodeId(m[1]);
      this.authorisedDevice(st, deviceId);
      switch (m[2]) {
        case 'messages/events':
          if (receiving) return { kind: 'd2c', deviceId };
          break;
        case 'messages/devicebound':
          if (!receiving) return { kind: 'c2d', deviceId };
          break;
        case 'twin':
          return receiving ? { kind: 'twin-in', deviceId } : { kind: 'twin-out', deviceId };
        default:
          return receiving ? { kind: 'methods-out', deviceId } : { kind: 'methods-in', deviceId };
      }
    }
    throw new HubError('NotFound', `no ${receiving ? 'sender' : 'receiver'} endpoint at "${address}"`);
  }

  private onReceiverOpen(ctx: EventContext): void {
    this.onLinkOpen(ctx, ctx.receiver as Receiver, true);
  }

  private onSenderOpen(ctx: EventContext): void {
    const sender = ctx.sender as Sender;
    const role = this.onLinkOpen(ctx, sender, false);
    if (role?.kind === 'c2d') queueMicrotask(() => this.pumpC2d(role.deviceId));
    if (role?.kind === 'feedback') queueMicrotask(() => this.pumpFeedback(sender));
    if (role?.kind === 'methods-in') for (const wake of this.methodLinkWaiters.get(role.deviceId) ?? []) wake();
  }

  /** Decides what an attaching link is for and echoes its terminus, or refuses it. */
  private onLinkOpen(ctx: EventContext, link: Sender | Receiver, receiving: boolean): LinkRole | undefined {
    const st = this.state(ctx.connection);
    const address = (receiving ? link.target?.address : link.source?.address) ?? '';
    if (!st) return undefined;
    try {
      const role = this.linkRole(address, receiving, st);
      st.roles.set(link, role);
      this.echoTerminus(link, address);
      return role;
    } catch (err) {
      if (err instanceof HubError) {
        this.refuseLink(link, err);
        return undefined;
      }
      throw err;
    }
  }

  private onMessage(ctx: EventContext): void {
    const st = this.state(ctx.connection);
    const receiver = ctx.receiver as Receiver;
    const role = st?.roles.get(receiver);
    const delivery = ctx.delivery as Delivery;
    const message = ctx.message as Message;
    if (!st || !role) {
      delivery.reject({ condition: 'amqp:not-found', description: 'link is not attached to a hub endpoint' });
      return;
    }
    switch (role.kind) {
      case 'cbs-in':
        return this.onCbsRequest(st, delivery, message);
      case 'd2c':
        return this.onDeviceEvent(st, role.deviceId, delivery, message);
      case 'twin-in':
        return this.onTwinRequest(st, role.deviceId, delivery, message);
      case 'service-c2d':
        return this.onServiceC2d(st, delivery, message);
      case 'methods-out':
        delivery.accept();
        return this.onMethodResponse(role.deviceId, message);
      default:
        delivery.reject({ condition: 'amqp:not-allowed', description: 'this link does not accept messages' });
    }
  }

  // ---- CBS -------------------------------------------------------------------------------

  private onCbsRequest(st: ConnState, delivery: Delivery, msg: Message): void {
    delivery.accept();
    const props = (msg.application_properties ?? {}) as Record<string, unknown>;
    const reply = (status: number, description: string): void => {
      const out = [...st.roles].find(([, r]) => r.kind === 'cbs-out')?.[0] as Sender | undefined;
      if (!out) {
        this.deps.log.warn({ connection: st.id }, 'cbs request without a $cbs receiver link to answer on');
        return;
      }
      out.send({
        to: asString(msg.reply_to),
        correlation_id: msg.message_id,
        application_properties: { 'status-code': status, 'status-description': description },
        body: null,
      } as Message);
    };
    if (props.operation !== 'put-token') return reply(400, `unsupported CBS operation "${String(props.operation)}"`);
    if (props.type !== 'servicebus.windows.net:sastoken') return reply(400, `unsupported token type "${String(props.type)}"`);
    const token = typeof msg.body === 'string' ? msg.body : undefined;
    const audience = asString(props.name);
    if (!token || !audience) return reply(400, 'put-token needs a string token body and a name (audience)');
    let principal: Principal;
    try {
      principal = this.deps.auth.authenticate(token);
    } catch (err) {
      const reason = err instanceof HubError ? err.message : 'token rejected';
      this.deps.log.info({ connection: st.id, audience: decodeId(audience), reason }, 'cbs put-token refused');
      // Hub-wide: the audience names whatever the client claims, so it cannot key the meter.
      this.deps.meter.add('', 'refused.auth.Unauthorized');
      return reply(401, reason);
    }
    if (principal.kind === 'device' || principal.deviceId !== undefined) {
      const deviceId = principal.deviceId as string;
      if (!canActAsDevice(principal, deviceId)) {
        return reply(401, `policy "${principal.kind === 'policy' ? principal.keyName : ''}" lacks the DeviceConnect permission for device "${deviceId}"`);
      }
      if (!st.devices.has(deviceId)) {
        this.deps.registry.markConnected(deviceId, true);
        // The SDK names itself in the properties of the links it attaches, $cbs among them.
        const version = (delivery.link.properties as Record<string, unknown> | undefined)?.['com.microsoft:client-version'];
        this.logConnection(st, 'deviceConnect', deviceId, principal, { sdkVersion: asString(version) });
      }
      st.devices.set(deviceId, principal);
    } else {
      st.service = principal;
    }
    reply(200, 'OK');
  }

  // ---- device-to-cloud -------------------------------------------------------------------

  private onDeviceEvent(st: ConnState, deviceId: string, delivery: Delivery, msg: Message): void {
    try {
      this.authorisedDevice(st, deviceId);
      const body = bodyBytes(msg.body);
      this.deps.d2c.submit(deviceId, messageSize(msg, body), body, {
        messageId: idToString(msg.message_id),
        correlationId: idToString(msg.correlation_id),
        contentType: asString(msg.content_type) ?? null,
        contentEncoding: asString(msg.content_encoding) ?? null,
        properties: plainMap(msg.application_properties),
        annotations: plainMap(msg.message_annotations),
      }, (err) => this.settle(delivery, err));
    } catch (err) {
      if (!(err instanceof HubError)) throw err;
      // Rejected, never released: the device SDK treats released as sent.
      delivery.reject(err.amqpError());
    }
  }

  /** Settles a delivery whose link may have gone meanwhile (the peer then resends). */
  private settle(delivery: Delivery, err: HubError | undefined): void {
    if (!delivery.link.is_open()) return;
    // Rejected, never released: the device SDK treats released as sent.
    if (err) delivery.reject(err.amqpError());
    else delivery.accept();
  }

  // ---- cloud-to-device -------------------------------------------------------------------

  private onServiceC2d(st: ConnState, delivery: Delivery, msg: Message): void {
    try {
      this.authorisedService(st);
      const to = asString(msg.to) ?? '';
      const m = SERVICE_C2D_TO.exec(to);
      if (!m?.[1]) throw new HubError('ArgumentInvalid', `"to" must be /devices/{deviceId}/messages/devicebound, got "${to}"`);
      const deviceId = decodeId(m[1]);
      const app = { ...((msg.application_properties ?? {}) as Record<string, string | number | boolean>) };
      const ack = parseAck(app['iothub-ack']);
      delete app['iothub-ack'];
      const body = bodyBytes(msg.body);
      const props: C2dProperties = { applicationProperties: app };
      const messageId = idToString(msg.message_id);
      if (messageId !== null) props.messageId = messageId;
      const correlationId = idToString(msg.correlation_id);
      if (correlationId !== null) props.correlationId = correlationId;
      const contentType = asString(msg.content_type);
      if (contentType) props.contentType = contentType;
      const contentEncoding = asString(msg.content_encoding);
      if (contentEncoding) props.contentEncoding = contentEncoding;
      const expiry = msg.absolute_expiry_time as Date | number | undefined;
      const expiresAt = expiry === undefined || expiry === null ? undefined : new Date(expiry).getTime();
      try {
        this.deps.c2d.enqueue(deviceId, props, body, ack, expiresAt);
      } catch (err) {
        if (err instanceof HubError) this.deps.meter.add(deviceId, `refused.c2d.${err.code}`);
        throw err;
      }
      this.deps.meter.add(deviceId, 'c2d.sent');
      delivery.accept();
    } catch (err) {
      if (!(err instanceof HubError)) throw err;
      this.deps.log.info({ reason: err.message }, 'cloud-to-device message refused');
      delivery.reject(err.amqpError());
    }
  }

  private c2dSenders(deviceId: string): Sender[] {
    const out: Sender[] = [];
    for (const st of this.conns.values()) {
      for (const [link, role] of st.roles) {
        if (role.kind === 'c2d' && role.deviceId === deviceId && link.is_sender() && link.is_open()) out.push(link as Sender);
      }
    }
    return out;
  }

  private pumpC2d(deviceId: string): void {
    for (const sender of this.c2dSenders(deviceId)) {
      while (sender.sendable()) {
        const msg = this.deps.c2d.takeNext(deviceId);
        if (!msg) return;
        const delivery = sender.send(this.toDeviceMessage(msg));
        this.c2dDeliveries.set(delivery, msg.seq);
      }
    }
  }

  private toDeviceMessage(m: C2dMessage): Message {
    const p = m.props;
    return {
      message_id: p.messageId,
      correlation_id: p.correlationId,
      content_type: p.contentType,
      content_encoding: p.contentEncoding,
      to: `/devices/${encodeURIComponent(m.deviceId)}/messages/devicebound`,
      absolute_expiry_time: new Date(m.expiresAt),
      creation_time: new Date(m.enqueuedAt),
      delivery_count: m.deliveryCount - 1,
      application_properties: { ...p.applicationProperties, ...(m.ack === 'none' ? {} : { 'iothub-ack': m.ack }) },
      message_annotations: { 'iothub-enqueuedtime': new Date(m.enqueuedAt) },
      body: dataSection(m.body),
    } as Message;
  }

  private onOutcome(ctx: EventContext, outcome: 'accepted' | 'rejected' | 'released'): void {
    const delivery = ctx.delivery as Delivery;
    const seq = this.c2dDeliveries.get(delivery);
    if (seq !== undefined) {
      this.c2dDeliveries.delete(delivery);
      if (outcome === 'accepted') this.deps.c2d.complete(seq);
      else if (outcome === 'rejected') this.deps.c2d.reject(seq);
      else this.deps.c2d.abandon(seq);
      return;
    }
    const fb = this.feedbackDeliveries.get(delivery);
    if (fb) {
      this.feedbackDeliveries.delete(delivery);
      for (const s of fb) this.feedbackInFlight.delete(s);
      // A rejected batch is dropped like IoT Hub dead-letters it; released goes out again.
      if (outcome !== 'released') this.deps.c2d.ackFeedback(fb);
      this.pumpFeedbackAll();
    }
  }

  private onSendable(ctx: EventContext): void {
    const st = this.state(ctx.connection);
    const sender = ctx.sender as Sender;
    const role = st?.roles.get(sender);
    if (role?.kind === 'c2d') this.pumpC2d(role.deviceId);
    if (role?.kind === 'feedback') this.pumpFeedback(sender);
  }

  private pumpFeedbackAll(): void {
    for (const st of this.conns.values()) {
      for (const [link, role] of st.roles) if (role.kind === 'feedback') this.pumpFeedback(link as Sender);
    }
  }

  private pumpFeedback(sender: Sender): void {
    while (sender.is_open() && sender.sendable()) {
      const pending = this.deps.c2d.pendingFeedback(FEEDBACK_BATCH + this.feedbackInFlight.size);
      const seqs: number[] = [];
      const records = [];
      for (let i = 0; i < pending.seqs.length && seqs.length < FEEDBACK_BATCH; i++) {
        const seq = pending.seqs[i] as number;
        if (this.feedbackInFlight.has(seq)) continue;
        seqs.push(seq);
        records.push(pending.records[i]);
      }
      if (seqs.length === 0) return;
      for (const s of seqs) this.feedbackInFlight.add(s);
      const delivery = sender.send({
        message_id: randomUUID(),
        content_type: 'application/vnd.microsoft.iothub.feedback.json',
        creation_time: new Date(this.deps.now()),
        body: dataSection(Buffer.from(JSON.stringify(records))),
      } as Message);
      this.feedbackDeliveries.set(delivery, seqs);
    }
  }

  // ---- direct methods --------------------------------------------------------------------

  private methodsLink(deviceId: string): Sender | undefined {
    for (const st of this.conns.values()) {
      for (const [link, role] of st.roles) {
        if (role.kind === 'methods-in' && role.deviceId === deviceId && link.is_open()) return link as Sender;
      }
    }
    return undefined;
  }

  private async waitForMethodsLink(deviceId: string, timeoutMs: number): Promise<Sender | undefined> {
    const ready = this.methodsLink(deviceId);
    if (ready || timeoutMs <= 0) return ready;
    await new Promise<void>((resolve) => {
      const waiters = this.methodLinkWaiters.get(deviceId) ?? new Set<() => void>();
      this.methodLinkWaiters.set(deviceId, waiters);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(done);
        if (waiters.size === 0) this.methodLinkWaiters.delete(deviceId);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      waiters.add(done);
    });
    return this.methodsLink(deviceId);
  }

  /**
   * Invokes a direct method as IoT Hub does: waits up to `connectTimeoutMs` for the device's
   * methods link (404 DeviceNotOnline otherwise), then up to `responseTimeoutMs` for its reply
   * (504 GatewayTimeout otherwise).
   */
  async invokeMethod(deviceId: string, methodName: string, payload: unknown, responseTimeoutMs: number, connectTimeoutMs: number): Promise<MethodResult> {
    const link = await this.waitForMethodsLink(deviceId, connectTimeoutMs);
    if (!link) throw new HubError('DeviceNotOnline', `Timed out waiting for device ${deviceId} to connect (it has no direct-method link open)`);
    const correlationId = randomUUID();
    return new Promise<MethodResult>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingMethods.delete(correlationId);
        reject(new HubError('GatewayTimeout', `Timed out waiting for the response from device ${deviceId} to method ${methodName} (${responseTimeoutMs} ms)`));
      }, responseTimeoutMs);
      this.pendingMethods.set(correlationId, {
        deviceId,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
      link.send({
        correlation_id: rhea.string_to_uuid(correlationId),
        application_properties: { 'IoThub-methodname': methodName },
        body: dataSection(Buffer.from(JSON.stringify(payload ?? null))),
      } as Message);
    });
  }

  private onMethodResponse(deviceId: string, msg: Message): void {
    const id = idToString(msg.correlation_id);
    const pending = id === null ? undefined : this.pendingMethods.get(id);
    // A late reply, or one for another device's call, is dropped: the caller has its answer.
    if (!pending || pending.deviceId !== deviceId || id === null) return;
    this.pendingMethods.delete(id);
    const status = Number((msg.application_properties as Record<string, unknown> | undefined)?.['IoThub-status']);
    const text = bodyBytes(msg.body).toString('utf8');
    let payload: unknown = null;
    try {
      payload = text.trim() === '' ? null : JSON.parse(text);
    } catch {
      payload = text; // IoT Hub requires JSON; pass what the device sent rather than lose it
    }
    pending.resolve({ status: Number.isInteger(status) ? status : 500, payload });
  }

  // ---- twin ------------------------------------------------------------------------------

  private twinOut(st: ConnState, deviceId: string): Sender | undefined {
    for (const [link, role] of st.roles) if (role.kind === 'twin-out' && role.deviceId === deviceId && link.is_open()) return link as Sender;
    return undefined;
  }

  private onTwinRequest(st: ConnState, deviceId: string, delivery: Delivery, msg: Message): void {
    delivery.accept();
    const ann = (msg.message_annotations ?? {}) as Record<string, unknown>;
    const operation = asString(ann.operation);
    const resource = asString(ann.resource);
    const respond = (status: number, body?: unknown, version?: number): void => {
      const out = this.twinOut(st, deviceId);
      if (!out) {
        this.deps.log.warn({ deviceId }, 'twin request with no twin receiver link to answer on');
        return;
      }
      const annotations: Record<string, unknown> = { status };
      if (version !== undefined) annotations.version = version;
      out.send({
        correlation_id: msg.correlation_id,
        message_annotations: annotations,
        body: dataSection(Buffer.from(body === undefined ? '' : JSON.stringify(body))),
      } as Message);
    };
    try {
      this.authorisedDevice(st, deviceId);
      if (operation === 'GET' && !resource) {
        respond(200, this.deps.registry.deviceTwinDocument(deviceId));
      } else if (operation === 'PATCH' && resource === '/properties/reported') {
        const text = bodyBytes(msg.body).toString('utf8');
        let patch: unknown;
        try {
          patch = JSON.parse(text);
        } catch {
          throw new HubError('ArgumentInvalid', 'reported-property patch is not valid JSON');
        }
        const twin = this.deps.registry.patchReported(deviceId, patch);
        this.deps.registry.touch(deviceId);
        respond(204, undefined, twin.reportedVersion);
      } else if (resource === '/notifications/twin/properties/desired' && (operation === 'PUT' || operation === 'DELETE')) {
        if (operation === 'PUT') st.desiredSubscribers.add(deviceId);
        else st.desiredSubscribers.delete(deviceId);
        respond(200);
      } else {
        throw new HubError('ArgumentInvalid', `unsupported twin operation ${operation ?? '(none)'} ${resource ?? ''}`.trim());
      }
    } catch (err) {
      if (!(err instanceof HubError)) throw err;
      respond(err.status, { errorCode: err.code, message: err.message });
    }
  }

  private pushDesired(deviceId: string, patch: Record<string, unknown>): void {
    for (const st of this.conns.values()) {
      if (!st.desiredSubscribers.has(deviceId)) continue;
      this.twinOut(st, deviceId)?.send({ body: dataSection(Buffer.from(JSON.stringify(patch))) } as Message);
    }
  }
}
