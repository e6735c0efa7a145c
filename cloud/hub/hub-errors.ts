/**
 * Refusals the hub answers with, in IoT Hub's own vocabulary: the REST status and `ErrorCode`
 * the service SDK parses (`{"Message":"ErrorCode:<code>;<text>"}`) and the AMQP error condition
 * the SDKs translate (azure-iot-amqp-base amqp_common_errors.js, azure-iothub amqp_service_errors.js).
 */
export type HubErrorCode =
  | 'ArgumentInvalid'
  | 'Unauthorized'
  | 'Forbidden'
  | 'DeviceNotFound'
  | 'DeviceAlreadyExists'
  | 'PreconditionFailed'
  | 'DeviceMaximumQueueDepthExceeded'
  | 'MessageTooLarge'
  | 'DeviceDisabled'
  | 'ThrottlingException'
  | 'IotHubQuotaExceeded'
  | 'NotFound'
  | 'DeviceNotOnline'
  | 'GatewayTimeout'
  | 'ServerError';

const table: Record<HubErrorCode, { status: number; amqp: string }> = {
  ArgumentInvalid: { status: 400, amqp: 'com.microsoft:argument-error' },
  Unauthorized: { status: 401, amqp: 'amqp:unauthorized-access' },
  Forbidden: { status: 403, amqp: 'amqp:unauthorized-access' },
  DeviceNotFound: { status: 404, amqp: 'amqp:not-found' },
  NotFound: { status: 404, amqp: 'amqp:not-found' },
  DeviceAlreadyExists: { status: 409, amqp: 'com.microsoft:device-already-exists' },
  PreconditionFailed: { status: 412, amqp: 'com.microsoft:precondition-failed' },
  DeviceMaximumQueueDepthExceeded: { status: 403, amqp: 'amqp:resource-limit-exceeded' },
  MessageTooLarge: { status: 413, amqp: 'amqp:link:message-size-exceeded' },
  DeviceDisabled: { status: 401, amqp: 'amqp:unauthorized-access' },
  ThrottlingException: { status: 429, amqp: 'com.microsoft:device-container-throttled' },
  IotHubQuotaExceeded: { status: 403, amqp: 'com.microsoft:quota-exceeded' },
  DeviceNotOnline: { status: 404, amqp: 'amqp:not-found' },
  GatewayTimeout: { status: 504, amqp: 'com.microsoft:timeout' },
  ServerError: { status: 500, amqp: 'amqp:internal-error' },
};

export class HubError extends Error {
  readonly status: number;
  readonly amqpCondition: string;
  constructor(readonly code: HubErrorCode, message: string) {
    super(message);
    this.name = 'HubError';
    this.status = table[code].status;
    this.amqpCondition = table[code].amqp;
  }

  /** The body IoT Hub returns, which `azure-iothub`'s `Http.parseErrorBody` understands. */
  restBody(trackingId: string, now: Date): { Message: string; ExceptionMessage: string } {
    return {
      Message: `ErrorCode:${this.code};${this.message}`,
      ExceptionMessage: `Tracking ID:${trackingId}-TimeStamp:${now.toISOString()}`,
    };
  }

  amqpError(): { condition: string; description: string } {
    return { condition: this.amqpCondition, description: this.message };
  }
}
