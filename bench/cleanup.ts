/**
 * Runs `cleanup` (kill children, remove temp directories) when the process exits, and on
 * SIGINT or SIGTERM before exiting with 130: a run stopped by hand leaves nothing behind.
 */
export function cleanupOnExit(cleanup: () => void): void {
  const onSignal = (): void => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.once('exit', cleanup);
}
