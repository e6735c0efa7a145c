/**
 * Bluetooth SIG assigned numbers the emulated wearables use, and their 128-bit form as BlueZ
 * shows them on D-Bus (lower case, on the Bluetooth base UUID).
 */

/** `0000xxxx-0000-1000-8000-00805f9b34fb` for a 16-bit assigned number. */
export function bluetoothUuid(assigned: number): string {
  if (!Number.isInteger(assigned) || assigned < 0 || assigned > 0xffff) throw new RangeError(`not a 16-bit UUID: ${assigned}`);
  return `0000${assigned.toString(16).padStart(4, '0')}-0000-1000-8000-00805f9b34fb`;
}

export const SERVICE = {
  healthThermometer: 0x1809,
  heartRate: 0x180d,
  battery: 0x180f,
  environmentalSensing: 0x181a,
} as const;

export const CHARACTERISTIC = {
  temperatureMeasurement: 0x2a1c,
  batteryLevel: 0x2a19,
  heartRateMeasurement: 0x2a37,
  temperature: 0x2a6e,
  humidity: 0x2a6f,
  uvIndex: 0x2a76,
} as const;

/** The 128-bit UUIDs, for clients (`getPrimaryService`, `getCharacteristic`). */
export const UUID = {
  healthThermometerService: bluetoothUuid(SERVICE.healthThermometer),
  heartRateService: bluetoothUuid(SERVICE.heartRate),
  batteryService: bluetoothUuid(SERVICE.battery),
  environmentalSensingService: bluetoothUuid(SERVICE.environmentalSensing),
  temperatureMeasurement: bluetoothUuid(CHARACTERISTIC.temperatureMeasurement),
  batteryLevel: bluetoothUuid(CHARACTERISTIC.batteryLevel),
  heartRateMeasurement: bluetoothUuid(CHARACTERISTIC.heartRateMeasurement),
  temperature: bluetoothUuid(CHARACTERISTIC.temperature),
  humidity: bluetoothUuid(CHARACTERISTIC.humidity),
  uvIndex: bluetoothUuid(CHARACTERISTIC.uvIndex),
} as const;
