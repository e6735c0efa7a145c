import type { ChildProcess } from 'node:child_process';

/** What a benchmark's forked helper sends once started, or when it could not start. */
export type ReadyMessage = { readonly type: 'ready' } | { readonly type: 'failed'; readonly message: string };

/** The child's `ready` message; rejects on `failed`, on exit first, or after `timeoutMs`. */
export function waitForChildReady<R extends { readonly type: 'ready' }>(child: ChildProcess, what: string, timeoutMs: number): Promise<R> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs} ms`)), timeoutMs);
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`${what} exited with code ${code} before it was ready`));
    };
    child.once('exit', onExit);
    child.on('message', (raw) => {
      const msg = raw as { type?: unknown; message?: unknown };
      if (msg.type !== 'ready' && msg.type !== 'failed') return;
      clearTimeout(timer);
      child.off('exit', onExit);
      if (msg.type === 'ready') resolve(raw as R);
      else reject(new Error(`${what} failed to start: ${String(msg.message)}`));
    });
  });
}
