import t from 'tap';
import { AssumedClockTrust, ManualClockTrust } from '../../../gateway/src/ports/clock-trust.js';

t.test('ManualClockTrust', async (t) => {
  t.test('starts untrusted unless told otherwise', async (t) => {
    const trust = new ManualClockTrust();
    await trust.start();
    t.equal(trust.trusted, false);
    t.equal(new ManualClockTrust(true).trusted, true);
  });

  t.test('set() notifies on change only, in subscription order', async (t) => {
    const trust = new ManualClockTrust();
    const seen: string[] = [];
    trust.onChange((v) => seen.push(`a:${v}`));
    trust.onChange((v) => seen.push(`b:${v}`));
    trust.set(false);
    t.same(seen, [], 'no change, no call');
    trust.set(true);
    trust.set(true);
    t.equal(trust.trusted, true);
    t.same(seen, ['a:true', 'b:true']);
    trust.set(false);
    t.same(seen, ['a:true', 'b:true', 'a:false', 'b:false']);
  });

  t.test('unsubscribe stops calls, also from inside a handler', async (t) => {
    const trust = new ManualClockTrust();
    const seen: string[] = [];
    const offA = trust.onChange((v) => {
      seen.push(`a:${v}`);
      offA();
    });
    const offB = trust.onChange((v) => seen.push(`b:${v}`));
    trust.set(true);
    offB();
    trust.set(false);
    t.same(seen, ['a:true', 'b:true']);
    offB();
    t.pass('unsubscribing twice is harmless');
  });

  t.test('the same function subscribed twice is called twice and removed once per unsubscribe', async (t) => {
    const trust = new ManualClockTrust();
    let calls = 0;
    const handler = (): void => {
      calls++;
    };
    const off = trust.onChange(handler);
    trust.onChange(handler);
    trust.set(true);
    t.equal(calls, 2);
    off();
    trust.set(false);
    t.equal(calls, 3);
  });

  t.test('close() drops the handlers', async (t) => {
    const trust = new ManualClockTrust();
    let calls = 0;
    trust.onChange(() => calls++);
    await trust.close();
    trust.set(true);
    t.equal(calls, 0);
  });
});

t.test('AssumedClockTrust is always trusted and never changes', async (t) => {
  const trust = new AssumedClockTrust();
  t.equal(trust.trusted, true, 'even before start');
  await trust.start();
  t.equal(trust.trusted, true);
  let calls = 0;
  const off = trust.onChange(() => calls++);
  off();
  await trust.close();
  t.equal(trust.trusted, true);
  t.equal(calls, 0);
});
