import t from 'tap';
import { FakeClock } from '../../../common/clock.js';
import { FieldlinkError } from '../../../common/errors.js';
import { FeedbackWorker } from '../../../cloud/src/feedback-worker.js';
import { FleetCache } from '../../../cloud/src/fleet-cache.js';
import { CommandService } from '../../../cloud/src/commands.js';
import { CloudStore } from '../../../cloud/src/store.js';
import { eventually } from '../../helpers/deadline.js';
import { captureLog } from '../../helpers/hub.js';
import { FakeFleetHub } from './fake-hub.js';

t.test('fleet cache: what the companion changes during a slow refresh survives it (a delete stays deleted, a patch stays)', async (t) => {
  const hub = new FakeFleetHub();
  hub.addGateway('gw-a');
  hub.addGateway('gw-b');
  const cache = new FleetCache(hub, new FakeClock(), captureLog().logger, 60_000);
  await cache.refresh();
  t.same(cache.list().map((x) => x.deviceId), ['gw-a', 'gw-b']);

  let release!: () => void;
  hub.listGate = new Promise<void>((r) => (release = r));
  const refreshing = cache.refresh();
  // While the (old) query is out: gw-a deleted, gw-b patched, gw-c created, as the routes do.
  await hub.deleteGateway('gw-a');
  cache.remove('gw-a');
  const patched = await hub.patchDesired('gw-b', { checkInIntervalS: 600 }, '*');
  cache.put(patched);
  cache.put(hub.addGateway('gw-c'));
  release();
  await refreshing;
  t.same(cache.list().map((x) => x.deviceId), ['gw-b', 'gw-c'], 'the deleted gateway did not come back; the new one is kept');
  t.equal(cache.get('gw-b')?.desired.checkInIntervalS, 600, 'the patch made during the query is kept');

  hub.listGate = undefined;
  await cache.refresh();
  t.same(cache.list().map((x) => x.deviceId), ['gw-b', 'gw-c'], 'the next refresh agrees with the hub');
});

t.test('feedback worker: resubscribes after the link fails, with backoff, and stops cleanly', async (t) => {
  const hub = new FakeFleetHub();
  const store = CloudStore.open(':memory:');
  t.teardown(() => store.close());
  const log = captureLog();
  const commands = new CommandService({ store, hub, clock: new FakeClock(), log: log.logger });
  const worker = new FeedbackWorker({ hub, commands, log: log.logger, minRetryMs: 20, maxRetryMs: 100 });
  worker.start();
  t.teardown(() => worker.stop());
  await eventually(2000, 'subscribed', () => (hub.feedbackSubscribed ? true : undefined));
  t.equal(worker.connected, true);

  hub.failFeedback(new Error('link detached'));
  t.equal(worker.connected, false, 'knows it lost the link');
  await eventually(2000, 'resubscribed', () => (hub.feedbackSubscribed ? true : undefined));
  t.equal(hub.subscribeCalls, 2);
  t.ok(log.lines.some((l) => l.msg === 'feedback receiver lost; resubscribing'));

  // The hub is down for a while: retries back off instead of spinning.
  hub.down = new FieldlinkError('HUB_UNREACHABLE', { message: 'down' });
  hub.failFeedback(new Error('link detached again'));
  await new Promise((r) => setTimeout(r, 400));
  const attempts = hub.subscribeCalls - 2;
  t.ok(attempts >= 2 && attempts <= 12, `${attempts} attempts in 400 ms with 20→100 ms backoff (not a spin)`);
  hub.down = undefined;
  await eventually(2000, 'back after the outage', () => (hub.feedbackSubscribed ? true : undefined));
  t.equal(worker.connected, true);

  await worker.stop();
  t.equal(worker.connected, false);
  const after = hub.subscribeCalls;
  await new Promise((r) => setTimeout(r, 150));
  t.equal(hub.subscribeCalls, after, 'no resubscribe after stop');
});
