import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { CpuSample } from './ipc.js';

export function sampleCpu(): CpuSample {
  const cpu = process.cpuUsage();
  const elu = performance.eventLoopUtilization();
  return { cpuMicros: cpu.user + cpu.system, eluActiveMs: elu.active, eluIdleMs: elu.idle };
}

export interface CpuDelta {
  cpuMs: number;
  /** Fraction of the phase the event loop was running JS or native callbacks (0..1). */
  eluBusy: number;
}

export function cpuDelta(before: CpuSample, after: CpuSample): CpuDelta {
  const active = after.eluActiveMs - before.eluActiveMs;
  const idle = after.eluIdleMs - before.eluIdleMs;
  return { cpuMs: (after.cpuMicros - before.cpuMicros) / 1000, eluBusy: active + idle > 0 ? active / (active + idle) : 0 };
}

/** Whole-machine CPU counters (all processes), to tell idle cores from cores taken by something else. */
export interface MachineSample {
  busyMs: number;
  totalMs: number;
}

export function sampleMachine(): MachineSample {
  let busyMs = 0;
  let totalMs = 0;
  for (const { times } of cpus()) {
    const busy = times.user + times.nice + times.sys + times.irq;
    busyMs += busy;
    totalMs += busy + times.idle;
  }
  return { busyMs, totalMs };
}

/** Fraction of all cores busy between two samples, whoever used them. */
export function machineBusy(before: MachineSample, after: MachineSample): number {
  const total = after.totalMs - before.totalMs;
  return total > 0 ? (after.busyMs - before.busyMs) / total : 0;
}
