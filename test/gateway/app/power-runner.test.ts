import t from 'tap';
import { FakeClock } from '../../../common/clock.js';
import { PowerRunner } from '../../../gateway/src/app/power-runner.js';
import { captureLog } from '../../helpers/hub.js';

function runner(clockTrusted = true) {
  const clock = new FakeClock();
  const calls: string[] = [];
  const log = captureLog();
  const r: PowerRunner = new PowerRunner({
    config: { checkInIntervalMs: 10_000, onlineWindowMs: 2000, retryBaseMs: 500, retryMaxMs: 4000 },
    clockTrusted,
    clock,
    log: log.logger,
    handlers: {
      openUplink: () => {
        calls.push('open');
        // Reports back at once, from inside the transition: must be queued, not nested.
        r.dispatch({ type: 'uplinkOpened' });
      },
      closeUplink: () => calls.push('close'),
      drainOutbox: () => calls.push('drain'),
      reconcileTwin: () => calls.push('reconcile'),
      transitioned: (from, to) => calls.push(`${from.phase}->${to.phase}`),
    },
  });
  return { r, clock, calls, log };
}

t.test('the check-in timer wakes it; effects run; an immediate report-back is queued after the transition', async (t) => {
  const { r, clock, calls } = runner();
  r.start();
  t.equal(r.state.phase, 'standby');
  await clock.advance(10_000);
  t.equal(r.state.phase, 'online');
  t.same(calls.slice(0, 4), ['open', 'standby->waking', 'reconcile', 'drain'], 'open, then (queued) opened: reconcile + drain');
  t.ok(calls.includes('waking->online'));
  r.dispatch({ type: 'outboxDrained' });
  await clock.advance(2000);
  t.equal(r.state.phase, 'closing', 'window elapsed after the drain: closing');
  t.ok(calls.includes('close'));
});

t.test('an event the phase does not accept is logged and refused, not thrown', async (t) => {
  const { r, log } = runner();
  r.start();
  t.equal(r.dispatch({ type: 'c2dWake', forS: 5 }), false);
  t.equal(r.state.phase, 'standby');
  t.ok(log.lines.some((l) => l.msg === 'power event ignored: not expected in this phase' && l.event === 'c2dWake'));
});

t.test('cancelTimers stops the schedule', async (t) => {
  const { r, clock } = runner();
  r.start();
  r.cancelTimers();
  await clock.advance(60_000);
  t.equal(r.state.phase, 'standby', 'no check-in after cancel');
});
