import t from 'tap';
import { isAlarm, ReportThinner } from '../../../gateway/src/domain/reading-policy.js';

t.test('isAlarm: outside min/max is an alarm, the bounds themselves are not, unknown kinds never', async (t) => {
  const alarms = { temperature: { min: 5, max: 38.5 }, heart_rate: { max: 180 } };
  t.equal(isAlarm('temperature', 38.5, alarms), false, 'at max');
  t.equal(isAlarm('temperature', 38.6, alarms), true, 'over max');
  t.equal(isAlarm('temperature', 5, alarms), false, 'at min');
  t.equal(isAlarm('temperature', 4.9, alarms), true, 'under min');
  t.equal(isAlarm('heart_rate', 0, alarms), false, 'no min set');
  t.equal(isAlarm('heart_rate', 181, alarms), true);
  t.equal(isAlarm('humidity', 1000, alarms), false, 'no threshold for the kind');
});

t.test('ReportThinner keeps one reading per report interval per channel, every alarm, and the first one', async (t) => {
  const thin = new ReportThinner();
  // A device sampling every 10 s, reported every 60 s, with a little jitter.
  const kept: number[] = [];
  for (let i = 0; i < 19; i++) {
    const mono = i * 10_000 + (i % 2 === 0 ? 0 : -30);
    if (thin.keep('a', mono, 60_000, 10_000, false)) kept.push(i);
  }
  t.same(kept, [0, 6, 12, 18], 'every sixth sample, not thinned further by early jitter');
  t.equal(thin.keep('a', 181_000, 60_000, 10_000, true), true, 'an alarm always passes');
  t.equal(thin.keep('b', 181_000, 60_000, 10_000, false), true, 'channels are independent');
  t.equal(thin.keep('c', 0, 10_000, 10_000, false) && thin.keep('c', 1, 10_000, 10_000, false), true, 'report interval = sample interval: nothing thinned');
});
