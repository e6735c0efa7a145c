import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import t, { type Test } from 'tap';
import { systemClock } from '../../../common/clock.js';
import { createLogger } from '../../../common/log.js';
import { Timedate1ClockTrust, type Timedate1ClockTrustOptions } from '../../../gateway/src/adapters/timedate1-clock-trust.js';
import { startFakeTimedate1, type FakeTimedate1 } from '../../../sensors/dbus/fake-timedate1.js';
import { startPrivateBus, type PrivateBus } from '../../../sensors/dbus/private-bus.js';
import { eventually, within } from '../../helpers/deadline.js';

interface LogLine {
  level: number;
  msg: string;
  state?: string;
  err?: { code?: string };
}

function capturedLogger(): { log: ReturnType<typeof createLogger>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  return { log: createLogger({ level: 'debug', destination }), lines };
}

/** Warnings with the clock-source code, i.e. one per change into a failure state. */
const sourceWarnings = (lines: LogLine[]): string[] =>
  lines.filter((l) => l.err?.code === 'CLOCK_SOURCE_UNAVAILABLE').map((l) => l.state ?? '?');

async function bus(t: Test, opts: { socketDir?: string } = {}): Promise<PrivateBus> {
  const b = await startPrivateBus(opts);
  t.teardown(() => b.stop());
  return b;
}

async function fake(t: Test, address: string, synchronized: boolean): Promise<FakeTimedate1> {
  const f = await startFakeTimedate1({ address, synchronized });
  t.teardown(() => f.stop());
  return f;
}

function clockTrust(t: Test, opts: Partial<Timedate1ClockTrustOptions> & { busAddress: string }) {
  const { log, lines } = capturedLogger();
  const trust = new Timedate1ClockTrust({ pollIntervalMs: 60_000, callTimeoutMs: 2000, log, clock: systemClock, ...opts });
  const changes: boolean[] = [];
  trust.onChange((v) => changes.push(v));
  t.teardown(() => trust.close());
  return { trust, changes, lines };
}

/** Unix-socket handles (D-Bus connections, child pipes) currently open in this process. */
const pipes = (): number => process.getActiveResourcesInfo().filter((r) => r === 'PipeWrap').length;

t.test('starts untrusted when NTPSynchronized is false', async (t) => {
  const b = await bus(t);
  await fake(t, b.address, false);
  const { trust, changes, lines } = clockTrust(t, { busAddress: b.address });
  t.equal(trust.trusted, false, 'untrusted before start');
  await within(5000, 'start', trust.start());
  t.equal(trust.trusted, false);
  t.same(changes, []);
  t.same(sourceWarnings(lines), [], 'a reachable source is not a warning');
  t.ok(lines.some((l) => l.state === 'unsynchronized'), 'the first answer is logged');
});

t.test('starts trusted when NTPSynchronized is true', async (t) => {
  const b = await bus(t);
  await fake(t, b.address, true);
  const { trust, changes } = clockTrust(t, { busAddress: b.address });
  await within(5000, 'start', trust.start());
  t.equal(trust.trusted, true);
  t.same(changes, [true], 'the change from the initial untrusted is reported');
});

t.test('PropertiesChanged flips it at once, without waiting for a poll', async (t) => {
  const b = await bus(t);
  const f = await fake(t, b.address, false);
  const { trust, changes } = clockTrust(t, { busAddress: b.address, pollIntervalMs: 60_000 });
  await within(5000, 'start', trust.start());
  const pollsBefore = trust.polls;
  f.setSynchronized(true, { emitSignal: true });
  await eventually(2000, 'trusted after the signal', () => (trust.trusted ? true : undefined));
  t.same(changes, [true], 'onChange called once');
  t.equal(trust.polls, pollsBefore, 'no extra read was needed');
  f.setSynchronized(false, { emitSignal: true });
  await eventually(2000, 'untrusted after the signal', () => (trust.trusted ? undefined : true));
  t.same(changes, [true, false]);
});

t.test('without a signal (as real timedated), the poll catches the change', async (t) => {
  const b = await bus(t);
  const f = await fake(t, b.address, false);
  const { trust, changes } = clockTrust(t, { busAddress: b.address, pollIntervalMs: 100 });
  await within(5000, 'start', trust.start());
  f.setSynchronized(true);
  await eventually(3000, 'trusted after a poll', () => (trust.trusted ? true : undefined));
  t.same(changes, [true], 'onChange called once, though several polls read true');
  await systemClock.sleep(250);
  t.same(changes, [true], 'repeated answers are not changes');
});

t.test('without a signal and before the next poll, nothing changes', async (t) => {
  const b = await bus(t);
  const f = await fake(t, b.address, false);
  const { trust } = clockTrust(t, { busAddress: b.address, pollIntervalMs: 60_000 });
  await within(5000, 'start', trust.start());
  f.setSynchronized(true);
  await systemClock.sleep(300);
  t.equal(trust.trusted, false, 'only the poll (or a signal) tells it');
});

t.test('no bus at the address: start resolves untrusted, keeps retrying, warns once, closes cleanly', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-nobus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const pipesBefore = pipes();
  const { trust, changes, lines } = clockTrust(t, { busAddress: `unix:path=${join(dir, 'no-such-bus')}`, pollIntervalMs: 50 });
  await within(3000, 'start', trust.start());
  t.equal(trust.trusted, false);
  await eventually(3000, 'a second and third poll', () => (trust.polls >= 3 ? true : undefined));
  t.same(sourceWarnings(lines), ['bus-unreachable'], 'logged once, not once per poll');
  t.same(changes, []);
  await within(2000, 'close', trust.close());
  const polls = trust.polls;
  await systemClock.sleep(150);
  t.equal(trust.polls, polls, 'no polls after close');
  // Other tests' daemons may still be closing their pipes, so the count can only fall.
  t.ok(pipes() <= pipesBefore, 'no socket left open');
});

t.test('a malformed address is logged, not thrown', async (t) => {
  const { trust, lines } = clockTrust(t, { busAddress: 'nonsense', pollIntervalMs: 50 });
  await within(3000, 'start', trust.start());
  t.equal(trust.trusted, false);
  await eventually(3000, 'another poll', () => (trust.polls >= 2 ? true : undefined));
  t.same(sourceWarnings(lines), ['bus-unreachable']);
});

t.test('the service leaving the bus makes it untrusted, coming back trusted again', async (t) => {
  const b = await bus(t);
  const f = await fake(t, b.address, true);
  const { trust, changes, lines } = clockTrust(t, { busAddress: b.address, pollIntervalMs: 60_000 });
  await within(5000, 'start', trust.start());
  t.equal(trust.trusted, true);
  await f.stop();
  // NameOwnerChanged triggers a re-read (real timedated exits when idle and is re-activated by
  // the read); nothing can provide the name here, so the read fails and trust is withdrawn.
  await eventually(2000, 'untrusted after the service left', () => (trust.trusted ? undefined : true));
  t.same(sourceWarnings(lines), ['service-missing']);
  await fake(t, b.address, true);
  await eventually(2000, 'trusted once the service is back', () => (trust.trusted ? true : undefined));
  t.same(changes, [true, false, true]);
});

t.test('the bus dying makes it untrusted; a new bus at the same address is reconnected to', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fieldlink-rebus-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const first = await bus(t, { socketDir: dir });
  await fake(t, first.address, true);
  const { trust, changes, lines } = clockTrust(t, { busAddress: `unix:path=${join(dir, 'bus')}`, pollIntervalMs: 100 });
  await within(5000, 'start', trust.start());
  t.equal(trust.trusted, true);
  await first.stop();
  await eventually(2000, 'untrusted after the bus died', () => (trust.trusted ? undefined : true));
  const polls = trust.polls;
  await eventually(2000, 'still retrying', () => (trust.polls >= polls + 2 ? true : undefined));
  t.same(sourceWarnings(lines), ['bus-unreachable'], 'one warning for the whole outage');
  const second = await bus(t, { socketDir: dir });
  await fake(t, second.address, true);
  await eventually(3000, 'trusted on the new bus', () => (trust.trusted ? true : undefined));
  t.same(changes, [true, false, true]);
});

t.test('close() while connected releases the connection', async (t) => {
  const b = await bus(t);
  await fake(t, b.address, true);
  const pipesBefore = pipes();
  const { trust } = clockTrust(t, { busAddress: b.address, pollIntervalMs: 60_000 });
  await within(5000, 'start', trust.start());
  t.equal(pipes(), pipesBefore + 1, 'one connection while watching');
  await within(2000, 'close', trust.close());
  await eventually(2000, 'socket closed', () => (pipes() <= pipesBefore ? true : undefined));
  t.pass('no socket left open');
});

t.test('a throwing onChange handler does not stop the watch or other handlers', async (t) => {
  const b = await bus(t);
  const f = await fake(t, b.address, false);
  const { trust, changes, lines } = clockTrust(t, { busAddress: b.address, pollIntervalMs: 100 });
  trust.onChange(() => {
    throw new Error('subscriber bug');
  });
  const late: boolean[] = [];
  trust.onChange((v) => late.push(v));
  await within(5000, 'start', trust.start());
  f.setSynchronized(true, { emitSignal: true });
  await eventually(2000, 'trusted', () => (trust.trusted ? true : undefined));
  t.same(changes, [true]);
  t.same(late, [true], 'handlers after the throwing one still run');
  t.ok(lines.some((l) => l.msg === 'clock trust change handler threw'));
  const polls = trust.polls;
  await eventually(2000, 'still polling', () => (trust.polls > polls ? true : undefined));
});
