/*
 * The load generator in a process of its own (autocannon), so its CPU does not share the
 * servers' event loop. Talks to load-process.ts over IPC: 'ready' once started, then one
 * 'result' (or 'error') per 'run' job; exits on 'stop' or when the parent goes away.
 */
import { performance } from 'node:perf_hooks';
import autocannon from 'autocannon';
import type { FromLoad, LoadJob, LoadResult, ToLoad } from './load-process.js';

function send(msg: FromLoad): void {
  process.send?.(msg);
}

/** Nearest-rank percentile of sorted values (ms). */
function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank] ?? NaN;
}

async function run(job: LoadJob): Promise<LoadResult> {
  let next = 0;
  const coalesced = { yes: 0, no: 0, other: 0 };
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let done!: (r: { err: unknown; result: autocannon.Result }) => void;
  const finished = new Promise<{ err: unknown; result: autocannon.Result }>((resolve) => (done = resolve));
  const options: autocannon.Options = {
    url: job.url,
    connections: job.connections,
    ...(job.amount === undefined ? { duration: job.durationS ?? 5 } : { amount: job.amount }),
    timeout: 30,
    requests: [
      {
        method: job.method,
        headers: job.headers,
        ...(job.body === undefined ? {} : { body: job.body }),
        // The paths are cycled over all connections: one shared counter.
        setupRequest: (req) => ({ ...req, path: job.paths[next++ % job.paths.length] ?? '/' }),
        ...(job.countCoalesced
          ? {
              onResponse: (status: number, body: string) => {
                if (status !== 202) return;
                try {
                  const parsed = JSON.parse(body) as { coalesced?: unknown };
                  if (parsed.coalesced === true) coalesced.yes++;
                  else if (parsed.coalesced === false) coalesced.no++;
                  else coalesced.other++;
                } catch {
                  coalesced.other++;
                }
              },
            }
          : {}),
      },
    ],
  };
  const t0 = performance.now();
  let lastAt = t0;
  const instance = autocannon(options, (err: unknown, result) => done({ err, result }));
  // autocannon's own histogram keeps whole milliseconds; the event carries the float.
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    latencies.push(responseTime);
    lastAt = performance.now();
    statuses[statusCode] = (statuses[statusCode] ?? 0) + 1;
  });
  const { err, result } = await finished;
  // Up to the last response, not to autocannon's end: with `amount` it stops on its 1 s tick.
  const elapsedS = (lastAt - t0) / 1000;
  if (err) throw err instanceof Error ? err : new Error(String(err));
  latencies.sort((a, b) => a - b);
  const completed = latencies.length;
  return {
    completed,
    durationS: elapsedS,
    rps: completed / elapsedS,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    meanMs: completed === 0 ? NaN : latencies.reduce((s, x) => s + x, 0) / completed,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statuses,
    ...(job.countCoalesced ? { coalesced } : {}),
  };
}

function main(): void {
  process.on('disconnect', () => process.exit(1));
  process.on('message', (raw) => {
    const msg = raw as ToLoad;
    if (msg.type === 'stop') process.exit(0);
    run(msg.job).then(
      (result) => send({ type: 'result', id: msg.id, result }),
      (err: unknown) => send({ type: 'error', id: msg.id, message: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  });
  send({ type: 'ready' });
}

main();
