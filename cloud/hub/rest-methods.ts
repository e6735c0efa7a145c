import { HubError } from './hub-errors.js';
import type { MethodResult } from './amqp-frontend.js';
import type { RouteModule } from './rest-frontend.js';

export type InvokeMethod = (deviceId: string, methodName: string, payload: unknown, responseTimeoutMs: number, connectTimeoutMs: number) => Promise<MethodResult>;

// IoT Hub's bounds for direct methods: response 5-300 s (default 30), connect 0-300 s (default 0).
const RESPONSE_S = { min: 5, max: 300, fallback: 30 };
const CONNECT_S = { min: 0, max: 300, fallback: 0 };

function seconds(value: unknown, name: string, range: { min: number; max: number; fallback: number }): number {
  if (value === undefined || value === null) return range.fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < range.min || value > range.max) {
    throw new HubError('ArgumentInvalid', `${name} must be a whole number of seconds from ${range.min} to ${range.max}`);
  }
  return value;
}

/** `POST /twins/{id}/methods`: what `Client.invokeDeviceMethod` calls. Needs ServiceConnect. */
export function methodRoutes(invoke: InvokeMethod): RouteModule {
  return (app, ctx) => {
    app.post<{ Params: { id: string }; Body: Record<string, unknown> | undefined }>('/twins/:id/methods', async (req, reply) => {
      ctx.principal(req, 'ServiceConnect');
      const body = req.body;
      if (typeof body !== 'object' || body === null) throw new HubError('ArgumentInvalid', 'the body must be a JSON object with methodName');
      const { methodName, payload } = body;
      if (typeof methodName !== 'string' || methodName === '' || methodName.length > 128) {
        throw new HubError('ArgumentInvalid', 'methodName must be a non-empty string of at most 128 characters');
      }
      const responseS = seconds(body.responseTimeoutInSeconds, 'responseTimeoutInSeconds', RESPONSE_S);
      const connectS = seconds(body.connectTimeoutInSeconds, 'connectTimeoutInSeconds', CONNECT_S);
      ctx.deps.registry.require(req.params.id);
      const result = await invoke(req.params.id, methodName, payload, responseS * 1000, connectS * 1000);
      return reply.type('application/json; charset=utf-8').send(result);
    });
  };
}
