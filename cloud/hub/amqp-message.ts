import rhea from 'rhea';

/** rhea hands message ids back as Buffers for AMQP uuid; IoT Hub shows them as strings. */
export function idToString(id: unknown): string | null {
  if (id === undefined || id === null) return null;
  if (Buffer.isBuffer(id) && id.length === 16) {
    const h = id.toString('hex');
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  if (Buffer.isBuffer(id)) return id.toString('hex');
  return String(id);
}

/** The message body as bytes, whichever section type carried it. */
export function bodyBytes(body: unknown): Buffer {
  if (body === undefined || body === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(body)) return body;
  if (typeof body === 'string') return Buffer.from(body, 'utf8');
  if (typeof body === 'object' && 'typecode' in body && 'content' in body) {
    const content = (body as { content: unknown }).content;
    if (Buffer.isBuffer(content)) return content;
    if (Array.isArray(content)) return Buffer.concat(content.filter((c): c is Buffer => Buffer.isBuffer(c)));
    return Buffer.from(typeof content === 'string' ? content : JSON.stringify(content), 'utf8');
  }
  return Buffer.from(JSON.stringify(body), 'utf8');
}

export function dataSection(bytes: Buffer): unknown {
  return rhea.message.data_section(bytes);
}

/** Plain JSON-safe copy of AMQP property maps (Dates as ISO strings, Buffers as base64). */
export function plainMap(map: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!map || typeof map !== 'object') return out;
  for (const [k, v] of Object.entries(map as Record<string, unknown>)) {
    if (v instanceof Date) out[k] = v.toISOString();
    else if (Buffer.isBuffer(v)) out[k] = v.toString('base64');
    else if (typeof v === 'bigint') out[k] = v.toString();
    else out[k] = v;
  }
  return out;
}

/**
 * IoT Hub's message size: body plus the names and values of system and application
 * properties. It decides the 256 KB cap and the 4 KB billing units.
 */
export function messageSize(msg: rhea.Message, body: Buffer): number {
  let size = body.length;
  const add = (k: string, v: unknown): void => {
    if (v === undefined || v === null) return;
    size += Buffer.byteLength(k) + (Buffer.isBuffer(v) ? v.length : Buffer.byteLength(v instanceof Date ? v.toISOString() : String(v)));
  };
  for (const k of ['message_id', 'correlation_id', 'content_type', 'content_encoding', 'user_id', 'to', 'absolute_expiry_time'] as const) {
    add(k, (msg as unknown as Record<string, unknown>)[k]);
  }
  for (const [k, v] of Object.entries(msg.application_properties ?? {})) add(k, v);
  for (const [k, v] of Object.entries(msg.message_annotations ?? {})) add(k, v);
  return size;
}

export function asString(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  return typeof v === 'string' ? v : String(v);
}
