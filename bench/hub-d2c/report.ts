/* Phase results → medians per (clients, server) → the printed tables and the --json document. */
import type { ServerKind } from './ipc.js';

export interface PhaseResult {
  kind: ServerKind;
  clients: number;
  window: number;
  repeat: number;
  messages: number;
  wallMs: number;
  serverCpuMs: number;
  clientCpuMs: number;
  serverEluBusy: number;
  clientEluBusy: number;
  /** Fraction of all the machine's cores busy during the phase, any process (os.cpus()). */
  machineBusy: number;
  /** What the server says it took in (hub: meter d2c.messages) vs warm-up + acked. */
  serverCounted: number;
  expectedCounted: number;
}

export interface Summary {
  kind: ServerKind;
  clients: number;
  repeats: number;
  msgsPerSec: number;
  serverCpuMsPer1k: number;
  clientCpuMsPer1k: number;
  /** CPU time over wall time: 1.0 is one core fully used. */
  serverCores: number;
  clientCores: number;
  serverEluBusy: number;
  clientEluBusy: number;
  machineBusy: number;
  /** Little's law: messages in flight / throughput. */
  meanAckMs: number;
  countMismatches: number;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  if (sorted.length === 0) return NaN;
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

export function summarise(phases: readonly PhaseResult[], kind: ServerKind, clients: number): Summary | undefined {
  const mine = phases.filter((p) => p.kind === kind && p.clients === clients);
  const first = mine[0];
  if (!first) return undefined;
  const m = (f: (p: PhaseResult) => number): number => median(mine.map(f));
  const msgsPerSec = m((p) => (p.messages * 1000) / p.wallMs);
  return {
    kind,
    clients,
    repeats: mine.length,
    msgsPerSec,
    serverCpuMsPer1k: m((p) => (p.serverCpuMs * 1000) / p.messages),
    clientCpuMsPer1k: m((p) => (p.clientCpuMs * 1000) / p.messages),
    serverCores: m((p) => p.serverCpuMs / p.wallMs),
    clientCores: m((p) => p.clientCpuMs / p.wallMs),
    serverEluBusy: m((p) => p.serverEluBusy),
    clientEluBusy: m((p) => p.clientEluBusy),
    machineBusy: m((p) => p.machineBusy),
    meanAckMs: (clients * first.window * 1000) / msgsPerSec,
    countMismatches: mine.filter((p) => p.serverCounted !== p.expectedCounted).length,
  };
}

const num = (v: number, digits: number): string =>
  Number.isFinite(v) ? v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '-';
const pct = (v: number): string => (Number.isFinite(v) ? `${(v * 100).toFixed(0)}%` : '-');

type Row = [label: string, sink: string, hub: string, ratio: string];

function rows(sink: Summary, hub: Summary, cores: number): Row[] {
  const ratio = (a: number, b: number): string => num(a / b, 2);
  const share = (s: Summary): string => {
    const server = s.serverCores / cores;
    const clients = s.clientCores / cores;
    // Sampled separately, so "other" can come out slightly negative; it is noise below a few %.
    return [server, clients, Math.max(0, s.machineBusy - server - clients), 1 - s.machineBusy].map(pct).join(' / ');
  };
  return [
    ['messages/s', num(sink.msgsPerSec, 0), num(hub.msgsPerSec, 0), ratio(hub.msgsPerSec, sink.msgsPerSec)],
    ['mean ack round trip, ms', num(sink.meanAckMs, 2), num(hub.meanAckMs, 2), ratio(hub.meanAckMs, sink.meanAckMs)],
    ['server CPU ms / 1,000 msgs', num(sink.serverCpuMsPer1k, 1), num(hub.serverCpuMsPer1k, 1), ratio(hub.serverCpuMsPer1k, sink.serverCpuMsPer1k)],
    ['clients CPU ms / 1,000 msgs', num(sink.clientCpuMsPer1k, 1), num(hub.clientCpuMsPer1k, 1), ratio(hub.clientCpuMsPer1k, sink.clientCpuMsPer1k)],
    [`cores used: server (of ${cores})`, num(sink.serverCores, 2), num(hub.serverCores, 2), ''],
    [`cores used: clients (of ${cores})`, num(sink.clientCores, 2), num(hub.clientCores, 2), ''],
    ['share server/clients/other/idle', share(sink), share(hub), ''],
    ['event loop busy: server', pct(sink.serverEluBusy), pct(hub.serverEluBusy), ''],
    ['event loop busy: clients', pct(sink.clientEluBusy), pct(hub.clientEluBusy), ''],
  ];
}

export function table(sink: Summary, hub: Summary, cores: number, title: string): string {
  const header: Row = ['', 'sink', 'hub', 'hub/sink'];
  const body = rows(sink, hub, cores);
  const widths = [0, 1, 2, 3].map((i) => Math.max(...[header, ...body].map((r) => r[i]?.length ?? 0)));
  const line = (r: Row): string => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[0] ?? 0) : cell.padStart(widths[i] ?? 0))).join('   ').trimEnd();
  const warnings = [sink, hub]
    .filter((s) => s.countMismatches > 0)
    .map((s) => `  WARNING: ${s.kind} counted a different number of messages than clients saw acked in ${s.countMismatches} phase(s)`);
  return [title, line(header), ...body.map(line), ...warnings].join('\n');
}
