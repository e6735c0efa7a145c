/**
 * Minimal local types for the parts of johnny-five 2.1 (CommonJS, ships no types) and of the
 * firmata-io board-io it brings that sensors/firmata uses. Not complete: add what you call.
 * The Firmata types live here too so no import names 'firmata-io' (not a direct dependency of
 * ours: it arrives through johnny-five → firmata; source.ts loads it relative to johnny-five).
 */
declare module 'johnny-five' {
  import type { EventEmitter } from 'node:events';

  /** firmata-io's Board: the io plugin johnny-five drives. */
  export interface FirmataIo extends EventEmitter {
    isReady: boolean;
    readonly MODES: { readonly ANALOG: number; readonly INPUT: number; readonly OUTPUT: number };
    /** Index = analog channel, value = digital pin number (filled by the analog-mapping reply). */
    readonly analogPins: number[];
    readonly pins: Array<{ supportedModes: number[]; analogChannel?: number; mode?: number; report?: number }>;
    readonly firmware: { name?: string; version?: { major: number; minor: number } };
    readonly version: { major?: number; minor?: number };
    /** The 'reportVersionTimeout' timer; a plain setTimeout firmata-io never clears if no version came. */
    reportVersionTimeoutId?: NodeJS.Timeout;
    pinMode(pin: number, mode: number): void;
    /** Turns reporting on for analog channel `channel` and adds a listener for its values. */
    analogRead(channel: number, callback: (raw: number) => void): void;
    reportAnalogPin(channel: number, value: 0 | 1): void;
    setSamplingInterval(ms: number): void;
  }

  export interface FirmataOptions {
    /** How long to wait for the board's own REPORT_VERSION before asking for it (default 5000). */
    readonly reportVersionTimeout?: number;
    readonly samplingInterval?: number;
  }

  /** `new Firmata(port, options)`: `port` is any stream-like transport (our serialport 13 port). */
  export type FirmataConstructor = new (port: object, options?: FirmataOptions) => FirmataIo;

  /** `require('firmata-io')`: binds a default transport class and returns the Firmata class. */
  export interface FirmataIoModule {
    (transport: unknown): FirmataConstructor;
    readonly Firmata: FirmataConstructor;
  }

  export interface BoardOptions {
    readonly io: FirmataIo;
    readonly id?: string;
    /** false: no REPL on stdin. */
    readonly repl: false;
    /** false: no console.log of j5's own messages. */
    readonly debug: false;
    /** false: j5 does not install a SIGINT handler that exits the process. */
    readonly sigint: false;
    /** ms from the io's 'connect' to 'ready' before the board emits 'error' (default 10 s). */
    readonly timeout?: number;
  }

  /**
   * Emits 'connect', 'ready', 'error' (also as a log event: it MUST have a listener or it
   * throws), and after ready forwards the io's 'close', 'disconnect', 'error', 'string'.
   */
  export class Board extends EventEmitter {
    constructor(options: BoardOptions);
    readonly id: string;
    isReady: boolean;
    isConnected: boolean;
    readonly io: FirmataIo;
    /** The connect→ready timeout (a setTimeout), or null. */
    timer: NodeJS.Timeout | null;
    /** j5's module-level list of every Board ever constructed (never pruned outside its test mode). */
    static readonly cache: Board[];
  }

  const five: { readonly Board: typeof Board };
  export default five;
}
