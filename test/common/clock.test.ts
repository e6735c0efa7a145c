import t from 'tap';
import { FakeClock, systemClock } from '../../common/clock.js';

t.test('systemClock', async (t) => {
  t.test('sleep waits at least the delay on the monotonic clock', async (t) => {
    const start = systemClock.monotonicMs();
    await systemClock.sleep(30);
    t.ok(systemClock.monotonicMs() - start >= 29, 'elapsed ≥ 30 ms (timer rounding allowed)');
    t.ok(Math.abs(systemClock.now() - Date.now()) < 50, 'now() is wall time');
  });

  t.test('abort rejects with the reason and clears the timer', async (t) => {
    // A leaked 60 s timer would hold the event loop open; count live timers around the sleep.
    const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timers();
    const controller = new AbortController();
    const reason = new Error('shutting down');
    const sleeping = systemClock.sleep(60_000, controller.signal);
    t.equal(timers(), before + 1, 'sleeping holds one timer');
    controller.abort(reason);
    await t.rejects(sleeping, reason);
    t.equal(timers(), before, 'no timer left behind');
  });

  t.test('an already-aborted signal rejects at once', async (t) => {
    const reason = new Error('already');
    await t.rejects(systemClock.sleep(10, AbortSignal.abort(reason)), reason);
  });

  t.test('a negative or NaN delay is a bug', async (t) => {
    await t.rejects(systemClock.sleep(-1), RangeError);
    await t.rejects(systemClock.sleep(Number.NaN), RangeError);
  });
});

t.test('FakeClock', async (t) => {
  t.test('advance resolves due sleeps in due order, reading their due time', async (t) => {
    const clock = new FakeClock({ wallMs: 1_000_000, monotonicMs: 0 });
    const woke: string[] = [];
    const sleep = (name: string, ms: number): Promise<void> =>
      clock.sleep(ms).then(() => void woke.push(`${name}@${clock.monotonicMs()}/${clock.now()}`));
    const all = [sleep('c', 300), sleep('a', 100), sleep('b', 200), sleep('b2', 200), sleep('late', 1000)];
    t.equal(clock.pendingSleeps, 5);
    await clock.advance(250);
    t.same(woke, ['a@100/1000100', 'b@200/1000200', 'b2@200/1000200']);
    t.equal(clock.monotonicMs(), 250);
    t.equal(clock.now(), 1_000_250);
    await clock.advance(50);
    t.same(woke.slice(3), ['c@300/1000300']);
    t.equal(clock.pendingSleeps, 1);
    await clock.advance(700);
    await Promise.all(all);
    t.equal(clock.pendingSleeps, 0);
  });

  t.test('code that sleeps again while woken is scheduled within the same advance', async (t) => {
    const clock = new FakeClock({ monotonicMs: 0 });
    const ticks: number[] = [];
    const controller = new AbortController();
    const loop = (async () => {
      for (;;) {
        await clock.sleep(100, controller.signal);
        ticks.push(clock.monotonicMs());
      }
    })();
    await clock.advance(350);
    t.same(ticks, [100, 200, 300]);
    controller.abort(new Error('stop'));
    await t.rejects(loop, { message: 'stop' });
    t.equal(clock.pendingSleeps, 0, 'aborted sleep removed');
  });

  t.test('setWall jumps wall time only', async (t) => {
    const clock = new FakeClock({ wallMs: 0, monotonicMs: 5_000 });
    let woke = false;
    const sleeping = clock.sleep(1_000).then(() => {
      woke = true;
    });
    clock.setWall(Date.UTC(2025, 5, 1));
    t.equal(clock.now(), Date.UTC(2025, 5, 1));
    t.equal(clock.monotonicMs(), 5_000);
    await clock.advance(999);
    t.notOk(woke, 'a wall jump does not wake sleepers');
    await clock.advance(1);
    await sleeping;
    t.ok(woke);
    t.equal(clock.now(), Date.UTC(2025, 5, 1) + 1_000);
  });

  t.test('abort and zero delay', async (t) => {
    const clock = new FakeClock();
    const reason = new Error('abort');
    await t.rejects(clock.sleep(10, AbortSignal.abort(reason)), reason);
    await clock.sleep(0);
    t.pass('sleep(0) resolves without an advance');
    await t.rejects(clock.sleep(-5), RangeError);
    await t.rejects(clock.advance(-1), RangeError);
  });
});
