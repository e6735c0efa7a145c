import { MAX_CONNECTION_LOG_PAGE, parseSince, type ConnectionLog } from './connection-log.js';
import { HubError } from './hub-errors.js';
import type { RouteModule } from './rest-frontend.js';

// IoT Hub's own paged reads (registry queries) carry the cursor in this header, both ways.
const CONTINUATION = 'x-ms-continuation';

function cursor(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text === '') return undefined;
  if (!/^\d{1,16}$/.test(text)) throw new HubError('ArgumentInvalid', `${CONTINUATION} must be the value a previous page returned`);
  return Number(text);
}

/**
 * `GET /_local/logs/connections?since=&limit=`: the Connections resource log as Azure Monitor
 * writes it, `{"records":[...]}` oldest first. `since` is ms since the epoch or an ISO 8601
 * time; when more records match than `limit` (1-1000, default 1000), the reply carries
 * `x-ms-continuation`, which the next request sends back. Needs ServiceConnect.
 */
export function connectionLogRoutes(log: ConnectionLog): RouteModule {
  return (app, ctx) => {
    app.get('/_local/logs/connections', async (req, reply) => {
      ctx.principal(req, 'ServiceConnect');
      const q = req.query as Record<string, unknown>;
      const since = q.since === undefined || q.since === '' ? 0 : parseSince(String(q.since));
      let limit = MAX_CONNECTION_LOG_PAGE;
      if (q.limit !== undefined && q.limit !== '') {
        limit = Number(q.limit);
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_CONNECTION_LOG_PAGE) {
          throw new HubError('ArgumentInvalid', `limit must be an integer from 1 to ${MAX_CONNECTION_LOG_PAGE}`);
        }
      }
      const afterSeq = cursor(req.headers[CONTINUATION]);
      const page = log.read({ sinceMs: since, limit, ...(afterSeq === undefined ? {} : { afterSeq }) });
      if (page.continuation !== undefined) void reply.header(CONTINUATION, String(page.continuation));
      return reply.type('application/json; charset=utf-8').send({ records: page.records });
    });
  };
}
