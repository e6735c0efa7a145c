/**
 * Worker-thread entry of SqliteOutbox: owns the SQLite connection so that commits (and their
 * fsyncs) block this thread, never the event loop. Requests are handled one at a time, in order.
 */
import { parentPort } from 'node:worker_threads';
import type { RequestEnvelope, ResponseEnvelope, StoreRequest, StoreResults } from './sqlite-outbox-protocol.js';
import { SqliteOutboxStore } from './sqlite-outbox-store.js';

if (parentPort === null) throw new Error('sqlite-outbox-worker must run in a worker thread');
const port = parentPort;
let store: SqliteOutboxStore | undefined;

function opened(): SqliteOutboxStore {
  if (store === undefined) throw new Error('outbox store is not open');
  return store;
}

function handle(request: StoreRequest): StoreResults[StoreRequest['op']] {
  switch (request.op) {
    case 'open':
      if (store !== undefined) throw new Error('outbox store is already open');
      store = new SqliteOutboxStore(request.options, request.monoMs);
      return null;
    case 'append':
      return opened().append(request.group, request.monoMs, request.freeBytes);
    case 'peek':
      return opened().peek(request.limit, request.maxBytes, request.monoMs, request.afterId);
    case 'ack':
      return opened().ack(request.ids, request.monoMs);
    case 'stats':
      return opened().stats(request.monoMs);
    case 'recordBatch':
      opened().recordBatch(request.batch);
      return null;
    case 'pendingBatches':
      return opened().pendingBatches();
    case 'rebaseUnsynced':
      return opened().rebaseUnsynced(request.bootId, request.offsetMs);
    case 'setLimits':
      opened().setLimits({ maxBytes: request.maxBytes, minFreeBytes: request.minFreeBytes, ttlMs: request.ttlMs });
      return null;
    case 'close':
      store?.close(request.monoMs);
      store = undefined;
      return null;
  }
}

port.on('message', (envelope: RequestEnvelope) => {
  let response: ResponseEnvelope;
  try {
    response = { id: envelope.id, ok: true, result: handle(envelope.request) };
  } catch (e) {
    const err = e as Error & { code?: unknown };
    response = {
      id: envelope.id,
      ok: false,
      error: typeof err.code === 'string' ? { message: String(err.message), sqliteCode: err.code } : { message: String(err.message) },
    };
  }
  // The seqs of an append travel as a transferred buffer, not a copy.
  if (response.ok && response.result instanceof Float64Array) port.postMessage(response, [response.result.buffer as ArrayBuffer]);
  else port.postMessage(response);
  if (envelope.request.op === 'close') port.close();
});
