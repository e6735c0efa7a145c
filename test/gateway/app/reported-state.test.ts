import t from 'tap';
import { reportedState, twinKey, type SourceActivity } from '../../../gateway/src/app/reported-state.js';

const base = {
  firmwareVersion: '1.2.3',
  phase: 'online' as const,
  lastCheckInMs: Date.UTC(2026, 10, 23, 12, 0, 0),
  lastWakeReason: 'checkIn',
  uplinkFailures: 0,
  checkInIntervalS: 900,
  onlineWindowS: 60,
  outbox: { depth: 10, bytes: 2000, oldestAgeMs: 61_400, pending: 0, commits: 3, counters: { appended: 100, sent: 90, evicted: 0, evictedAlarms: 0, expired: 0 } },
  clockTrusted: true,
  bootId: 'b',
  readingsThinned: 4,
  config: { config: { appliedVersion: 3, desiredVersion: 3, status: 'applied' as const, errors: [] } },
};

t.test('twin keys: no dots, dollars or spaces (IoT Hub refuses them)', async (t) => {
  t.equal(twinKey('thermo.1 $x'), 'thermo_1__x');
});

t.test('reported state: rollups with ISO times; stays far under 32 KB with many sources; secrets scrubbed from errors', async (t) => {
  const sources = new Map<string, SourceActivity>();
  for (let i = 0; i < 64; i++) sources.set(`thermo.${i}`, { health: { connected: true, errors: 2, reconnects: 1 }, readings: 1e9, lastSeenMs: Date.now(), samplingErrors: 0 });
  const r = reportedState({
    ...base,
    sources,
    lastUplinkError: { kind: 'auth', message: `refused: HostName=h;DeviceId=d;SharedAccessKey=c2VjcmV0c2VjcmV0c2VjcmV0 ${'x'.repeat(500)}`, atMs: Date.now() },
  });
  const text = JSON.stringify(r);
  t.ok(text.length < 16 * 1024, `64 sources: ${text.length} bytes`);
  t.match(r, { power: { state: 'online', lastCheckIn: '2026-11-23T12:00:00.000Z', checkInIntervalS: 900, onlineWindowS: 60 }, outbox: { depth: 10, oldestAgeS: 61, thinned: 4 }, config: { appliedVersion: 3 } });
  t.ok((r.sources as Record<string, unknown>)['thermo_1'], 'source keys sanitised');
  t.notMatch(text, /c2VjcmV0c2VjcmV0/, 'the key in an error message is redacted');
  t.ok(((r.uplink as { lastError: { message: string } }).lastError.message.length) <= 200, 'error text capped');
});
