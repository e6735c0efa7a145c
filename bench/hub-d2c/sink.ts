/*
 * The baseline: a bare rhea 3 TLS AMQP server speaking just enough of the IoT Hub device
 * protocol (shared/iothub-protocol.md §1, §2, §4.1) for the device SDK to open and sendEvent.
 * It does what any AMQP server on this stack must do (TLS, framing, decode, settle) and nothing
 * the hub adds (token checks, SQLite, metering), so hub/sink isolates the hub's own cost.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import rhea, { type Connection, type EventContext, type Message, type Sender } from 'rhea';
import { createCa, createServerCert } from '../../cloud/hub/certs.js';

export interface Sink {
  readonly ca: string;
  readonly port: number;
  /** Messages accepted on links other than $cbs. */
  messages(): number;
  close(): Promise<void>;
}

const CBS = '$cbs';

export async function startSink(): Promise<Sink> {
  const ca = createCa('Fieldlink bench sink CA');
  const cert = createServerCert(ca, ['localhost', '127.0.0.1']);
  const container = rhea.create_container({ id: 'fieldlink-bench-sink', autoaccept: false });
  const cbsReplies = new Map<Connection, Sender>();
  let count = 0;

  // Echoing the terminus is what makes the attach reply a proper answer (§4).
  container.on('receiver_open', (ctx: EventContext) => {
    ctx.receiver?.set_target({ address: ctx.receiver.target?.address });
  });
  container.on('sender_open', (ctx: EventContext) => {
    const sender = ctx.sender;
    if (!sender) return;
    const address = sender.source?.address;
    sender.set_source({ address });
    if (address === CBS) cbsReplies.set(ctx.connection, sender);
  });
  container.on('message', (ctx: EventContext) => {
    ctx.delivery?.accept();
    const message = ctx.message;
    if (!message) return;
    if (ctx.receiver?.target?.address === CBS) answerPutToken(cbsReplies.get(ctx.connection), message);
    else count++;
  });
  const forget = (ctx: EventContext): void => void cbsReplies.delete(ctx.connection);
  container.on('connection_close', forget);
  container.on('disconnected', forget);
  // Without a listener rhea rethrows connection errors and would kill the sink mid-run.
  container.on('error', () => undefined);

  const server = container.listen({ port: 0, host: '127.0.0.1', transport: 'tls', key: cert.keyPem, cert: cert.certPem });
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return {
    ca: ca.certPem,
    port: (server.address() as AddressInfo).port,
    messages: () => count,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Every put-token succeeds: the SDK only needs numeric 200 and the request's message_id back (§2). */
function answerPutToken(reply: Sender | undefined, request: Message): void {
  reply?.send({
    to: typeof request.reply_to === 'string' ? request.reply_to : undefined,
    correlation_id: request.message_id,
    application_properties: { 'status-code': 200, 'status-description': 'OK' },
    body: null,
  });
}

/** Device connection strings for the sink: it checks no key, so any base64 will do. */
export function sinkConnectionStrings(port: number, devices: number): string[] {
  const key = randomBytes(32).toString('base64');
  return Array.from({ length: devices }, (_, i) => `HostName=localhost;DeviceId=bench-${i};SharedAccessKey=${key};GatewayHostName=localhost:${port}`);
}
