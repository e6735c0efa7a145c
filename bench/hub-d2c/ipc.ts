/** Messages between the benchmark parent (run.ts) and the server child (server.ts). */

export type ServerKind = 'hub' | 'sink';

export function isServerKind(v: unknown): v is ServerKind {
  return v === 'hub' || v === 'sink';
}

/** Cumulative counters of one process; the parent subtracts two samples to get a phase's share. */
export interface CpuSample {
  /** process.cpuUsage(): user + system, microseconds. */
  cpuMicros: number;
  /** performance.eventLoopUtilization(), milliseconds: how busy the one JS thread was. */
  eluActiveMs: number;
  eluIdleMs: number;
}

export type ToServer =
  | { type: 'cpu'; id: number }
  | { type: 'count'; id: number }
  /** V8 CPU profile of just the measured window (the startup's RSA key generation would swamp it). */
  | { type: 'profile-start'; id: number }
  | { type: 'profile-stop'; id: number; file: string }
  | { type: 'stop' };

export type Request = Exclude<ToServer, { type: 'stop' }>;

export type FromServer =
  | { type: 'ready'; ca: string; connectionStrings: string[] }
  | { type: 'failed'; message: string }
  | { type: 'cpu'; id: number; sample: CpuSample }
  /** D2C messages the server took in since it started (for the hub, its meter's d2c.messages). */
  | { type: 'count'; id: number; messages: number }
  | { type: 'done'; id: number; error?: string };

export type Reply = Extract<FromServer, { id: number }>;
