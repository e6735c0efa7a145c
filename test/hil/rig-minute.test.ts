/**
 * The whole rig under `npm start`'s scenario (hardware/scenarios/demo.yaml: three paired
 * wearables and a stranger over the emulated BlueZ, two serial thermostats, a Firmata board,
 * a wearable disconnecting at 40 s) for a minute, through the gateway to the local hub: per
 * source, the readings at the hub match what the emitters logged.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startRig as startScenarioRig } from '../../sensors/rig/rig.js';
import { loadScenarioFile } from '../../sensors/rig/scenario.js';
import { useSystemBus } from '../helpers/system-bus.js';
import { eventually } from '../helpers/deadline.js';
import { seqAnalysis, seqGaps, startRig } from '../helpers/gateway-rig.js';

// A minute of traffic plus start-up and drain: more than .taprc's 120 s on a loaded machine.
t.setTimeout(240_000);

const SCENARIO = new URL('../../../hardware/scenarios/demo.yaml', import.meta.url).pathname;
const RUN_MS = 60_000;
/** A reading is stamped by the gateway a few ms after the emitter logged it. */
const SKEW_MS = 500;

interface Emitted {
  readonly ts: number;
  readonly source: string;
  readonly fault?: string;
}

function emitted(dir: string): Emitted[] {
  const out: Emitted[] = [];
  for (const f of readdirSync(join(dir, 'emitted')).filter((n) => n.endsWith('.jsonl'))) {
    for (const line of readFileSync(join(dir, 'emitted', f), 'utf8').split('\n')) if (line.trim()) out.push(JSON.parse(line) as Emitted);
  }
  return out;
}

t.test(`demo scenario for ${RUN_MS / 1000} s: per-source counts at the hub match the emitters' logs`, async (t) => {
  const scenarioRig = await startScenarioRig(loadScenarioFile(SCENARIO));
  t.teardown(() => scenarioRig.stop());
  const { sources, settings, env } = scenarioRig.fragment;
  if (env.DBUS_SYSTEM_BUS_ADDRESS !== undefined) useSystemBus(t, env.DBUS_SYSTEM_BUS_ADDRESS);
  const rig = await startRig(t, {
    thermostats: 0,
    extraSources: sources as unknown as Record<string, unknown>[],
    settings: {
      checkInIntervalS: 15,
      // Report everything the devices send, so counts can be compared one for one.
      sampling: { serial: { sampleIntervalS: 1, reportIntervalS: 1 }, firmata: { sampleIntervalS: 1, reportIntervalS: 1 }, ble: { sampleIntervalS: 1, reportIntervalS: 1 } },
      pairings: settings.pairings,
    },
  });
  const { rt } = await rig.startInProcess();
  // Count from when every source delivers (the thermostats' INTERVAL applied, wearables subscribed).
  await eventually(20_000, 'every source committed', () => {
    const seen = new Set(rig.hubReadings().map((r) => r.source.split('/')[0]));
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    return ['serial:thermo-1', 'serial:thermo-2', 'firmata:board-1', 'ble:AA:BB:CC:DD:EE:01', 'ble:AA:BB:CC:DD:EE:02', 'ble:AA:BB:CC:DD:EE:03'].every((s) => seen.has(s)) ? true : undefined;
  });
  const from = Date.now() + 1000;
  await new Promise((r) => setTimeout(r, RUN_MS));
  const to = Date.now();
  await eventually(30_000, 'everything up to the end forwarded', async () => {
    if (rt.powerState.phase === 'standby') rt.wakeNow();
    const stats = await rt.outboxStats();
    return stats.depth === 0 && rt.status().readingsCommitted > 0 ? true : undefined;
  });

  const logged = emitted(scenarioRig.dir).filter((e) => e.fault === undefined && e.ts >= from && e.ts < to);
  const hub = rig.hubReadings();
  const perSource = new Map<string, { emitted: number; hub: number }>();
  for (const e of logged) {
    const c = perSource.get(e.source) ?? { emitted: 0, hub: 0 };
    c.emitted++;
    perSource.set(e.source, c);
  }
  const unique = new Map(hub.map((r) => [`${r.source}#${r.seq}`, r]));
  for (const r of unique.values()) {
    const c = perSource.get(r.source);
    if (c !== undefined && r.ts >= from && r.ts < to + SKEW_MS) c.hub++;
  }
  t.ok(perSource.size >= 10, `${perSource.size} sources emitted in the window`);
  const mismatched = [...perSource].filter(([, c]) => Math.abs(c.hub - c.emitted) > 1);
  t.same(mismatched, [], `every source's hub count within 1 of its emitted count (window edges): ${[...perSource].map(([s, c]) => `${s.replace(/^ble:AA:BB:CC:DD:/, '')} ${c.hub}/${c.emitted}`).join(', ')}`);
  t.notOk(hub.some((r) => r.source.startsWith('ble:AA:BB:CC:DD:EE:04')), 'nothing from the unpaired wearable');
  const fired = scenarioRig.fired.map((f) => `${f.fault}@${f.atS}`);
  t.ok(fired.includes('disconnect@40'), `the 40 s disconnect fired (${fired.join(', ')})`);
  t.same(seqGaps(seqAnalysis(hub).perSource), [], 'no committed reading lost');
});
