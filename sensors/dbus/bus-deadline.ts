import type dbus from 'dbus-next';

/** `work`, or a rejection after `ms` or at the first bus error, whichever comes first. */
export async function withinBusDeadline<T>(ms: number, work: Promise<T>, bus: dbus.MessageBus): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  let onError: ((e: unknown) => void) | undefined;
  const failed = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from the bus within ${ms} ms`)), ms);
    onError = reject;
    bus.once('error', onError);
  });
  try {
    return await Promise.race([work, failed]);
  } finally {
    clearTimeout(timer);
    if (onError !== undefined) bus.off('error', onError);
  }
}
