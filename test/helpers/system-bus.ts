import type { Test } from 'tap';

/**
 * Points node-ble (dbus-next's systemBus(), which reads DBUS_SYSTEM_BUS_ADDRESS when a session
 * opens) at a private bus for the rest of the test; the previous value is restored at teardown.
 */
export function useSystemBus(t: Test, address: string): void {
  const previous = process.env.DBUS_SYSTEM_BUS_ADDRESS;
  process.env.DBUS_SYSTEM_BUS_ADDRESS = address;
  t.teardown(() => {
    if (previous === undefined) delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
    else process.env.DBUS_SYSTEM_BUS_ADDRESS = previous;
  });
}
