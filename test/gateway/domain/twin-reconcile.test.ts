import t from 'tap';
import {
  ACK_MAX_ERRORS,
  applyDesiredPatch,
  cleanDesired,
  configAck,
  initialReconcileState,
  mergePatch,
  reconcileDesiredDocument,
  type JsonObject,
  type ReconcileState,
  type SettingsValidator,
} from '../../../gateway/src/domain/twin-reconcile.js';

/*
 * The domain is tested with a tiny hand-written validator (the real one, built on the gateway
 * schema, is exercised at the end): reconcile must not care which validator it is given.
 */
interface Settings {
  checkInIntervalS: number;
  outbox: { maxBytes: number; ttlS: number };
  pairings: Record<string, { profile: string }>;
}

const file: Settings = { checkInIntervalS: 3600, outbox: { maxBytes: 1000, ttlS: 60 }, pairings: { 'AA:00:00:00:00:01': { profile: 'heart_rate' } } };

const validate: SettingsValidator<Settings> = (c: JsonObject) => {
  const problems: { path: string; message: string }[] = [];
  if (typeof c.checkInIntervalS !== 'number' || c.checkInIntervalS < 60) problems.push({ path: '/checkInIntervalS', message: 'must be >= 60' });
  const outbox = c.outbox as { maxBytes?: unknown } | undefined;
  if (typeof outbox?.maxBytes !== 'number') problems.push({ path: '/outbox/maxBytes', message: 'must be integer' });
  if (Array.isArray(c.pairings)) problems.push({ path: '/pairings', message: 'must be an object keyed by device address' });
  for (const key of Object.keys(c)) if (!['checkInIntervalS', 'outbox', 'pairings'].includes(key)) problems.push({ path: `/${key}`, message: 'unknown property' });
  return problems.length ? { ok: false, problems } : { ok: true, settings: c as unknown as Settings };
};

const boot = (): ReconcileState<Settings> => initialReconcileState(file, undefined, validate);

t.test('mergePatch and cleanDesired', async (t) => {
  t.same(mergePatch({ a: 1, b: { c: 2, d: 3 } }, { $version: 4, b: { c: null, e: 5 }, f: [1] }), { a: 1, b: { d: 3, e: 5 }, f: [1] });
  t.same(mergePatch({ a: { b: 1 } }, { a: null }), {}, 'null deletes a subtree');
  t.same(mergePatch({ a: 1 }, { a: { b: 2 } }), { a: { b: 2 } }, 'an object replaces a scalar');
  t.same(cleanDesired({ $version: 3, $metadata: { x: 1 }, a: null, b: { c: null, d: 1 } }), { b: { d: 1 } });
  const base = { a: { b: 1 } };
  mergePatch(base, { a: { b: 2 } });
  t.same(base, { a: { b: 1 } }, 'inputs untouched');
});

t.test('boot without a stored document: file settings, version 0', async (t) => {
  const s = boot();
  t.same(s.effective, file);
  t.same(configAck(s), { config: { appliedVersion: 0, desiredVersion: 0, status: 'applied', errors: [] } });
});

t.test('a patch applies over the known desired document; null reverts to the file value', async (t) => {
  const r1 = applyDesiredPatch(boot(), { $version: 2, checkInIntervalS: 600, pairings: { 'AA:00:00:00:00:02': { profile: 'health_thermometer' } } }, validate);
  t.equal(r1.outcome, 'applied');
  t.ok(r1.changed);
  t.equal(r1.resync, true, 'version 1 was skipped: ask for the full twin');
  t.same(r1.state.effective, {
    checkInIntervalS: 600,
    outbox: { maxBytes: 1000, ttlS: 60 },
    pairings: { 'AA:00:00:00:00:01': { profile: 'heart_rate' }, 'AA:00:00:00:00:02': { profile: 'health_thermometer' } },
  });
  t.same(r1.ack, { config: { appliedVersion: 2, desiredVersion: 2, status: 'applied', errors: [] } });

  const r2 = applyDesiredPatch(r1.state, { $version: 3, checkInIntervalS: null, outbox: { ttlS: 120 }, pairings: { 'AA:00:00:00:00:02': null } }, validate);
  t.equal(r2.resync, false);
  t.same(r2.state.effective, { checkInIntervalS: 3600, outbox: { maxBytes: 1000, ttlS: 120 }, pairings: { 'AA:00:00:00:00:01': { profile: 'heart_rate' } } });
  t.same(r2.state.applied, { version: 3, desired: { outbox: { ttlS: 120 }, pairings: {} } }, 'what the store keeps');
});

t.test('full document: keys deleted while asleep revert to file defaults', async (t) => {
  const r1 = applyDesiredPatch(boot(), { $version: 5, checkInIntervalS: 600, outbox: { ttlS: 120 }, pairings: { 'AA:00:00:00:00:02': { profile: 'x' } } }, validate);
  // Meanwhile the operator deleted checkInIntervalS and the second pairing (versions 6, 7): the
  // full twin simply lacks them, with no nulls.
  const r2 = reconcileDesiredDocument(r1.state, { $version: 7, $metadata: { $lastUpdated: '2026-11-23T10:00:00Z' }, outbox: { ttlS: 120 } }, validate);
  t.equal(r2.outcome, 'applied');
  t.ok(r2.changed);
  t.same(r2.state.effective, { checkInIntervalS: 3600, outbox: { maxBytes: 1000, ttlS: 120 }, pairings: { 'AA:00:00:00:00:01': { profile: 'heart_rate' } } });
  t.same(r2.ack.config, { appliedVersion: 7, desiredVersion: 7, status: 'applied', errors: [] });

  const again = reconcileDesiredDocument(r2.state, { $version: 8, outbox: { ttlS: 120 } }, validate);
  t.equal(again.outcome, 'applied');
  t.equal(again.changed, false, 'a newer version with the same effect changes nothing effective');
});

t.test('idempotent by $version: same or older versions change nothing', async (t) => {
  const r1 = applyDesiredPatch(boot(), { $version: 4, checkInIntervalS: 600 }, validate);
  for (const [name, result] of [
    ['same patch again', applyDesiredPatch(r1.state, { $version: 4, checkInIntervalS: 600 }, validate)],
    ['older patch', applyDesiredPatch(r1.state, { $version: 3, checkInIntervalS: 120 }, validate)],
    ['same full document', reconcileDesiredDocument(r1.state, { $version: 4, checkInIntervalS: 600 }, validate)],
    ['older full document', reconcileDesiredDocument(r1.state, { $version: 2 }, validate)],
  ] as const) {
    t.equal(result.outcome, 'stale', name);
    t.equal(result.changed, false, name);
    t.equal(result.state, r1.state, `${name}: state is the same object`);
    t.same(result.ack, r1.ack, `${name}: acknowledgement repeated`);
  }
});

t.test('an invalid patch is rejected, reported, and the previous settings kept', async (t) => {
  const r1 = applyDesiredPatch(boot(), { $version: 2, checkInIntervalS: 600 }, validate);
  const r2 = applyDesiredPatch(r1.state, { $version: 3, checkInIntervalS: 5, colour: 'red', pairings: [{ address: 'AA:00:00:00:00:03' }] }, validate);
  t.equal(r2.outcome, 'rejected');
  t.equal(r2.changed, false);
  t.same(r2.state.effective, r1.state.effective, 'previous effective settings kept');
  t.same(r2.state.applied, r1.state.applied, 'previous applied document kept');
  t.same(r2.ack, {
    config: {
      appliedVersion: 2,
      desiredVersion: 3,
      status: 'rejected',
      errors: [
        { path: '/checkInIntervalS', message: 'must be >= 60' },
        { path: '/pairings', message: 'must be an object keyed by device address' },
        { path: '/colour', message: 'unknown property' },
      ],
    },
  });
  // The next patch builds on the rejected document (the twin's desired still holds it), so
  // fixing the bad fields is enough.
  const r3 = applyDesiredPatch(r2.state, { $version: 4, checkInIntervalS: 900, colour: null, pairings: null }, validate);
  t.equal(r3.outcome, 'applied');
  t.equal(r3.state.effective.checkInIntervalS, 900);
  t.same(r3.ack.config, { appliedVersion: 4, desiredVersion: 4, status: 'applied', errors: [] });
});

t.test('a document without $version is rejected', async (t) => {
  const r = applyDesiredPatch(boot(), { checkInIntervalS: 600 }, validate);
  t.equal(r.outcome, 'rejected');
  t.same(r.ack.config.errors, [{ path: '/$version', message: 'is required' }]);
  t.same(r.state.effective, file);
  const bad = reconcileDesiredDocument(boot(), { $version: 'x' }, validate);
  t.same(bad.ack.config.errors, [{ path: '/$version', message: 'must be a whole number ≥ 0' }]);
});

t.test('acknowledgement stays compact', async (t) => {
  const many: SettingsValidator<Settings> = () => ({
    ok: false,
    problems: Array.from({ length: 50 }, (_, i) => ({ path: `/x${i}`, message: 'm'.repeat(500) })),
  });
  const r = applyDesiredPatch(boot(), { $version: 1 }, many);
  t.equal(r.ack.config.errors.length, ACK_MAX_ERRORS + 1);
  t.same(r.ack.config.errors.at(-1), { path: '/', message: `and ${50 - ACK_MAX_ERRORS} more` });
  t.ok(r.ack.config.errors.every((e) => e.message.length <= 200));
  t.ok(JSON.stringify(r.ack).length < 4096);
});

t.test('boot from a stored document; a stored document that no longer validates falls back to the file', async (t) => {
  const ok = initialReconcileState(file, { version: 9, desired: { checkInIntervalS: 900 } }, validate);
  t.equal(ok.effective.checkInIntervalS, 900);
  t.same(configAck(ok).config, { appliedVersion: 9, desiredVersion: 9, status: 'applied', errors: [] });
  t.equal(reconcileDesiredDocument(ok, { $version: 9, checkInIntervalS: 900 }, validate).outcome, 'stale', 'the same twin after reboot is a no-op');

  const bad = initialReconcileState(file, { version: 9, desired: { checkInIntervalS: 1 } }, validate);
  t.same(bad.effective, file);
  t.same(configAck(bad).config, { appliedVersion: 0, desiredVersion: 9, status: 'rejected', errors: [{ path: '/checkInIntervalS', message: 'must be >= 60' }] });
});
