/**
 * The emulator side of bench/ble-fanout, in its own process so that its CPU is not the gateway's:
 * a private dbus-daemon and the fake BlueZ on it with `n` heart-rate wearables notifying at
 * `rateHz`. Driven by run.ts over the IPC channel (protocol.ts); exits when told to or when the
 * channel closes (the parent died), and the dbus-daemon dies with it (see private-bus.ts).
 *
 *   node dist/bench/ble-fanout/child.js <n> <rateHz> <seed>
 */
import { setMaxListeners } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { startFakeBluez, type EmulatedWearable, type FakeBluez } from '../../sensors/ble/emulator/fake-bluez.js';
import { startPrivateBus, type PrivateBus } from '../../sensors/dbus/private-bus.js';
import { wearableAddress, type ChildMessage, type ParentMessage } from './protocol.js';

const [nArg, rateArg, seedArg] = process.argv.slice(2);
const N = Number(nArg);
const RATE_HZ = Number(rateArg);
const SEED = Number(seedArg ?? '1');
// The fake's discovery sleeps once per wearable on the adapter's discovery signal: N listeners at
// once, harmless, but past 10 Node warns about a leak.
setMaxListeners(Math.max(10, N + 10));

function send(msg: ChildMessage): void {
  process.send?.(msg);
}

/** The dbus-daemon under the private bus's sh supervisor (its direct child), by /proc. */
function daemonPid(supervisor: number | undefined): number | undefined {
  if (supervisor === undefined) return undefined;
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const comm = stat.slice(stat.indexOf('(') + 1, close);
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === supervisor && comm === 'dbus-daemon') return Number(name);
    } catch {
      // Gone while we looked.
    }
  }
  return undefined;
}

let bus: PrivateBus | undefined;
let fake: FakeBluez | undefined;
const wearables: EmulatedWearable[] = [];
let stopping: Promise<void> | undefined;

function stop(code: number): Promise<void> {
  stopping ??= (async () => {
    await fake?.stop().catch(() => undefined);
    await bus?.stop().catch(() => undefined);
    process.exit(code);
  })();
  return stopping;
}

process.on('disconnect', () => void stop(0));

process.on('message', (raw: unknown) => {
  const msg = raw as ParentMessage;
  switch (msg.type) {
    case 'sample': {
      const cpu = process.cpuUsage();
      const elu = performance.eventLoopUtilization();
      send({ type: 'sample', id: msg.id, emitted: fake?.emitted.length ?? 0, cpuMicros: cpu.user + cpu.system, eluActiveMs: elu.active, eluIdleMs: elu.idle });
      break;
    }
    case 'quiesce': {
      // Each notify loop sends at most one more value (the one whose timer is running), then
      // sleeps for 1000 s; wait out that last interval before reporting the final count.
      for (const w of wearables) w.setRateHz(0.001);
      setTimeout(() => send({ type: 'quiesced', id: msg.id, emitted: fake?.emitted.length ?? 0 }), Math.ceil(3000 / RATE_HZ) + 50);
      break;
    }
    case 'stop':
      void stop(0);
      break;
  }
});

try {
  if (!(Number.isInteger(N) && N >= 1 && RATE_HZ > 0)) throw new Error(`usage: child.js <n> <rateHz> <seed>, got ${process.argv.slice(2).join(' ')}`);
  bus = await startPrivateBus();
  // Every emitted reading is kept, so `emitted.length` is the total (about 100 bytes each).
  fake = await startFakeBluez({ address: bus.address, keepEmitted: Number.MAX_SAFE_INTEGER });
  for (let i = 0; i < N; i++) wearables.push(fake.addWearable({ address: wearableAddress(i), services: ['heart_rate'], rateHz: RATE_HZ, seed: SEED * 1000 + i }));
  send({ type: 'ready', busAddress: bus.address, daemonPid: daemonPid(bus.pid) });
} catch (e) {
  send({ type: 'failed', message: e instanceof Error ? e.message : String(e) });
  await stop(1);
}
