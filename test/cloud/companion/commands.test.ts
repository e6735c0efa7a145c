import { setImmediate as tick } from 'node:timers/promises';
import t from 'tap';
import { CommandService, FEEDBACK_GRACE_MS } from '../../../cloud/src/commands.js';
import type { FeedbackRecord } from '../../../cloud/src/fleet-hub.js';
import { FieldlinkError } from '../../../common/errors.js';
import { bearer, companion, type Companion, NO_RATE_LIMIT, type ProblemJson } from './fixture.js';

// The command routes against the fake IoT Hub: queueing, coalescing, follow-up wakes, feedback,
// expiry, limits, validation, auth and audit.

interface CommandJson {
  id: string;
  gateway: string;
  type: string;
  payload: Record<string, unknown>;
  status: string;
  statusReason: string | null;
  created: string;
  updated: string;
  expiresAt: string;
  requestedBy: string;
  stayForS: number | null;
  followUp: string | null;
  followUpOf: string | null;
}
interface IssueJson {
  command: CommandJson;
  coalesced: boolean;
  note?: string;
}
interface AuditJson {
  entries: { ts: string; tokenName: string; action: string; target: string; result: string; details?: Record<string, unknown> }[];
}

const MIN = 60_000;
const rateLimit = NO_RATE_LIMIT;

async function post(c: Companion, token: string, gateway: string, body: unknown) {
  return c.app.inject({ method: 'POST', url: `/v1/gateways/${gateway}/commands`, headers: bearer(token), payload: body as Record<string, unknown> });
}
async function getCommand(c: Companion, token: string, id: string): Promise<CommandJson> {
  const res = await c.app.inject({ method: 'GET', url: `/v1/commands/${id}`, headers: bearer(token) });
  if (res.statusCode !== 200) throw new Error(`GET command ${id}: ${res.statusCode} ${res.body}`);
  return res.json<CommandJson>();
}
async function listCommands(c: Companion, token: string, gateway: string, query = ''): Promise<CommandJson[]> {
  const res = await c.app.inject({ method: 'GET', url: `/v1/gateways/${gateway}/commands${query}`, headers: bearer(token) });
  if (res.statusCode !== 200) throw new Error(`list commands: ${res.statusCode} ${res.body}`);
  return res.json<{ commands: CommandJson[] }>().commands;
}
async function audit(c: Companion, token: string): Promise<AuditJson['entries']> {
  return (await c.app.inject({ method: 'GET', url: '/v1/audit', headers: bearer(token) })).json<AuditJson>().entries;
}
const lifetimeMs = (cmd: CommandJson) => Date.parse(cmd.expiresAt) - Date.parse(cmd.created);
const feedback = (id: string, deviceId: string, statusCode: string, description = `${statusCode} description`): FeedbackRecord => ({
  originalMessageId: id,
  deviceId,
  statusCode,
  description,
  enqueuedTimeUtc: new Date().toISOString(),
});

/** A companion whose feedback worker is subscribed to the fake hub. */
async function withFeedback(): Promise<Companion> {
  const c = await companion({ background: true, rateLimit });
  await c.app.ready();
  for (let i = 0; i < 5; i++) await tick();
  return c;
}

t.test('wake: 202 queued, one send with the command id as message id, default expiry from the check-in interval', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-reported', { power: { checkInIntervalS: 600 } });
  c.hub.addGateway('gw-desired', {}, { desired: { $version: 2, checkInIntervalS: 1200 } });
  c.hub.addGateway('gw-default');
  c.hub.addGateway('gw-long', { power: { checkInIntervalS: 172_800 } });
  c.hub.addGateway('gw-override', { power: { checkInIntervalS: 600 } });

  const res = await post(c, op, 'gw-reported', { type: 'wake', forS: 300 });
  t.equal(res.statusCode, 202, res.body);
  const body = res.json<IssueJson>();
  t.equal(body.coalesced, false);
  t.equal(body.note, undefined);
  t.equal(body.command.status, 'queued');
  t.equal(body.command.type, 'wake');
  t.equal(body.command.gateway, 'gw-reported');
  t.equal(body.command.requestedBy, 'operator');
  t.same(body.command.payload, { type: 'wake', forS: 300 });
  t.equal(c.hub.sent.length, 1, 'exactly one send');
  const sent = c.hub.sent[0];
  t.equal(sent?.deviceId, 'gw-reported');
  t.same(sent?.body, { type: 'wake', forS: 300 });
  t.equal(sent?.opts.messageId, body.command.id, 'the C2D message id is the command id');
  t.equal(Date.parse(body.command.created), c.clock.now());
  t.equal(lifetimeMs(body.command), 600_000 * 1.25 + 5 * MIN, 'reported interval × 1.25 + 5 min');
  t.equal(sent?.opts.expiresAtMs, Date.parse(body.command.expiresAt), 'the hub gets the same expiry');

  const desired = (await post(c, op, 'gw-desired', { type: 'wake', forS: 300 })).json<IssueJson>();
  t.equal(lifetimeMs(desired.command), 1_200_000 * 1.25 + 5 * MIN, 'desired interval when none reported');
  const dflt = (await post(c, op, 'gw-default', { type: 'wake', forS: 300 })).json<IssueJson>();
  t.equal(lifetimeMs(dflt.command), 3_600_000 * 1.25 + 5 * MIN, 'default 3600 s when neither says');
  const long = (await post(c, op, 'gw-long', { type: 'wake', forS: 300 })).json<IssueJson>();
  t.equal(lifetimeMs(long.command), 2 * 24 * 60 * MIN, 'capped at two days');
  const over = (await post(c, op, 'gw-override', { type: 'wake', forS: 300, expiresInS: 90 })).json<IssueJson>();
  t.equal(lifetimeMs(over.command), 90_000, 'expiresInS overrides');
  t.equal(c.hub.sent.at(-1)?.opts.expiresAtMs, Date.parse(over.command.expiresAt));
  t.same(c.hub.sent.at(-1)?.body, { type: 'wake', forS: 300 }, 'expiresInS is not part of the message');
});

t.test('100 wakes in a row: one send, one command, coalesced after the first', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  const first = (await post(c, op, 'gw-1', { type: 'wake', forS: 600 })).json<IssueJson>();
  t.equal(first.coalesced, false);
  let allSame = true;
  let allCoalesced = true;
  let anyNote = false;
  for (let i = 0; i < 99; i++) {
    const res = await post(c, op, 'gw-1', { type: 'wake', forS: 600 - i });
    if (res.statusCode !== 202) t.fail(`wake ${i}: ${res.statusCode}`);
    const b = res.json<IssueJson>();
    allSame &&= b.command.id === first.command.id;
    allCoalesced &&= b.coalesced;
    anyNote ||= b.note !== undefined;
  }
  t.ok(allSame, 'every wake returns the first command');
  t.ok(allCoalesced, 'every wake after the first is coalesced');
  t.notOk(anyNote, 'no note when nothing longer was asked');
  t.equal(c.hub.sent.length, 1, 'one message in the queue');
  t.equal((await listCommands(c, op, 'gw-1')).length, 1, 'one command stored');
  t.equal((await getCommand(c, op, first.command.id)).stayForS, 600);

  // After the first wake's expiry, a new wake is a new command.
  await c.clock.advance(lifetimeMs(first.command) + 1);
  const later = (await post(c, op, 'gw-1', { type: 'wake', forS: 600 })).json<IssueJson>();
  t.equal(later.coalesced, false, 'not coalesced with an expired wake');
  t.not(later.command.id, first.command.id);
  t.equal(c.hub.sent.length, 2);
});

t.test('a longer wake while one is queued: stayForS and a note; on delivery a follow-up wake is sent', async (t) => {
  const c = await withFeedback();
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  c.hub.addGateway('gw-2');
  const first = (await post(c, op, 'gw-1', { type: 'wake', forS: 60 })).json<IssueJson>();
  const longer = (await post(c, op, 'gw-1', { type: 'wake', forS: 900 })).json<IssueJson>();
  t.equal(longer.coalesced, true);
  t.equal(longer.command.id, first.command.id);
  t.equal(longer.command.stayForS, 900, 'the longest stay asked is recorded');
  t.match(longer.note, /follow-up wake for 900 s/);
  const shorter = (await post(c, op, 'gw-1', { type: 'wake', forS: 120 })).json<IssueJson>();
  t.equal(shorter.coalesced, true);
  t.equal(shorter.command.stayForS, 900, 'a shorter ask does not lower it');
  t.equal(shorter.note, undefined);
  t.equal(c.hub.sent.length, 1, 'nothing more sent while queued');

  await c.hub.deliverFeedback([feedback(first.command.id, 'gw-1', 'Success', 'Success')]);
  for (let i = 0; i < 5; i++) await tick();
  const delivered = await getCommand(c, op, first.command.id);
  t.equal(delivered.status, 'delivered');
  t.equal(c.hub.sent.length, 2, 'a follow-up wake was sent');
  const fu = c.hub.sent[1];
  t.same(fu?.body, { type: 'wake', forS: 900 }, 'the follow-up asks for the longer stay');
  t.equal(fu?.deviceId, 'gw-1');
  t.ok(delivered.followUp, 'the delivered wake names its follow-up');
  t.equal(fu?.opts.messageId, delivered.followUp);
  const followUp = await getCommand(c, op, delivered.followUp ?? 'missing');
  t.equal(followUp.followUpOf, first.command.id);
  t.equal(followUp.requestedBy, 'companion');
  t.equal(followUp.status, 'queued');

  // Repeated Success for the same message: nothing more.
  await c.hub.deliverFeedback([feedback(first.command.id, 'gw-1', 'Success', 'Success')]);
  for (let i = 0; i < 5; i++) await tick();
  t.equal(c.hub.sent.length, 2, 'a repeated record sends no second follow-up');

  // A shorter (or equal) coalesced wake asks for nothing more on delivery.
  const other = (await post(c, op, 'gw-2', { type: 'wake', forS: 600 })).json<IssueJson>();
  await post(c, op, 'gw-2', { type: 'wake', forS: 60 });
  await c.hub.deliverFeedback([feedback(other.command.id, 'gw-2', 'Success', 'Success')]);
  for (let i = 0; i < 5; i++) await tick();
  t.equal((await getCommand(c, op, other.command.id)).status, 'delivered');
  t.equal((await getCommand(c, op, other.command.id)).followUp, null);
  t.equal(c.hub.sent.filter((s) => s.deviceId === 'gw-2').length, 1, 'no follow-up for a shorter ask');
});

t.test('measure: identical commands coalesce, different ones do not; sleep coalesces with sleep', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  const a = (await post(c, op, 'gw-1', { type: 'measure', sources: ['ble:a'] })).json<IssueJson>();
  const a2 = (await post(c, op, 'gw-1', { type: 'measure', sources: ['ble:a'] })).json<IssueJson>();
  t.equal(a2.coalesced, true);
  t.equal(a2.command.id, a.command.id);
  const b = (await post(c, op, 'gw-1', { type: 'measure', sources: ['ble:b'] })).json<IssueJson>();
  t.equal(b.coalesced, false);
  t.not(b.command.id, a.command.id);
  const all = (await post(c, op, 'gw-1', { type: 'measure' })).json<IssueJson>();
  t.equal(all.coalesced, false, 'measure-all is not measure-some');
  const all2 = (await post(c, op, 'gw-1', { type: 'measure' })).json<IssueJson>();
  t.equal(all2.command.id, all.command.id);
  const wake = (await post(c, op, 'gw-1', { type: 'wake', forS: 60 })).json<IssueJson>();
  t.equal(wake.coalesced, false, 'a wake does not join a measure');
  const sleep = (await post(c, op, 'gw-1', { type: 'sleep' })).json<IssueJson>();
  const sleep2 = (await post(c, op, 'gw-1', { type: 'sleep' })).json<IssueJson>();
  t.equal(sleep.coalesced, false);
  t.equal(sleep2.coalesced, true);
  t.equal(c.hub.sent.length, 5);
  t.same(
    c.hub.sent.map((s) => s.body),
    [{ type: 'measure', sources: ['ble:a'] }, { type: 'measure', sources: ['ble:b'] }, { type: 'measure' }, { type: 'wake', forS: 60 }, { type: 'sleep' }],
  );
});

t.test('feedback: each IoT Hub outcome maps to a status with the description as reason; repeats and strangers change nothing', async (t) => {
  const c = await withFeedback();
  t.teardown(c.cleanup);
  const op = c.token('operator');
  const cases = [
    ['Success', 'delivered'],
    ['Rejected', 'rejected'],
    ['Expired', 'expired'],
    ['DeliveryCountExceeded', 'undeliverable'],
    ['Purged', 'undeliverable'],
  ] as const;
  const ids = new Map<string, string>();
  for (const [code] of cases) {
    const gw = `gw-${code.toLowerCase()}`;
    c.hub.addGateway(gw);
    ids.set(code, (await post(c, op, gw, { type: 'measure' })).json<IssueJson>().command.id);
  }
  await c.clock.advance(1000);
  await c.hub.deliverFeedback(cases.map(([code]) => feedback(ids.get(code) ?? '', `gw-${code.toLowerCase()}`, code, `hub says ${code}`)));
  const settled = new Map<string, CommandJson>();
  for (const [code, status] of cases) {
    const cmd = await getCommand(c, op, ids.get(code) ?? '');
    settled.set(code, cmd);
    t.equal(cmd.status, status, `${code} → ${status}`);
    t.match(cmd.statusReason, `hub says ${code}`, `${code}: the reason carries the description`);
    t.equal(Date.parse(cmd.updated), c.clock.now(), `${code}: updated when settled`);
  }

  await c.clock.advance(1000);
  // The same records again, and contradicting ones: the first outcome stands.
  await c.hub.deliverFeedback(cases.map(([code]) => feedback(ids.get(code) ?? '', `gw-${code.toLowerCase()}`, code, `again ${code}`)));
  await c.hub.deliverFeedback(cases.map(([code]) => feedback(ids.get(code) ?? '', `gw-${code.toLowerCase()}`, 'Rejected', 'late contradiction')));
  for (const [code] of cases) t.same(await getCommand(c, op, ids.get(code) ?? ''), settled.get(code), `${code}: a repeated record changes nothing`);

  // Unknown message ids and unknown status codes are ignored.
  c.hub.addGateway('gw-other');
  const pending = (await post(c, op, 'gw-other', { type: 'measure' })).json<IssueJson>().command;
  await c.hub.deliverFeedback([feedback('no-such-message', 'gw-other', 'Success'), feedback(pending.id, 'gw-other', 'Bogus')]);
  t.equal((await getCommand(c, op, pending.id)).status, 'queued', 'a stranger or an unknown status leaves it queued');
  t.equal(c.hub.sent.length, cases.length + 1, 'no follow-ups for any of it');
});

t.test('expireOverdue: queued past expiry + grace without feedback → expired with a reason', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  const service = new CommandService({ store: c.store, hub: c.hub, clock: c.clock, log: c.log.logger });
  const cmd = (await post(c, op, 'gw-1', { type: 'wake', forS: 60, expiresInS: 600 })).json<IssueJson>().command;

  await c.clock.advance(600_000 + FEEDBACK_GRACE_MS - 1);
  t.same(service.expireOverdue(), [], 'not before expiry + 10 min');
  t.equal((await getCommand(c, op, cmd.id)).status, 'queued');
  t.equal(FEEDBACK_GRACE_MS, 10 * MIN);

  await c.clock.advance(1);
  const expired = service.expireOverdue();
  t.equal(expired.length, 1);
  t.equal(expired[0]?.id, cmd.id);
  const after = await getCommand(c, op, cmd.id);
  t.equal(after.status, 'expired');
  t.match(after.statusReason, /no feedback/);
  t.same(service.expireOverdue(), [], 'only once');
  t.ok(c.log.lines.some((l) => l.msg === 'command expired without feedback'), 'logged');
});

t.test('at most 40 pending per gateway: the 41st is 409 COMMAND_QUEUE_FULL; wakes and identical commands still coalesce', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-full');
  for (let i = 0; i < 40; i++) {
    const res = await post(c, op, 'gw-full', { type: 'measure', sources: [`ble:s${i}`] });
    if (res.statusCode !== 202) t.fail(`measure ${i}: ${res.statusCode} ${res.body}`);
  }
  const full = await post(c, op, 'gw-full', { type: 'measure', sources: ['ble:s40'] });
  t.equal(full.statusCode, 409);
  const problem = full.json<ProblemJson>();
  t.equal(problem.code, 'COMMAND_QUEUE_FULL');
  t.match(problem.details, { gateway: 'gw-full', pending: 40, max: 40 });
  t.equal(c.hub.sent.length, 40, 'the 41st was not sent');
  t.equal((await listCommands(c, op, 'gw-full', '?limit=200')).length, 40, 'nor stored');
  const same = await post(c, op, 'gw-full', { type: 'measure', sources: ['ble:s7'] });
  t.equal(same.statusCode, 202, 'an identical pending command still coalesces');
  t.equal(same.json<IssueJson>().coalesced, true);

  c.hub.addGateway('gw-wake');
  t.equal((await post(c, op, 'gw-wake', { type: 'wake', forS: 60 })).statusCode, 202);
  for (let i = 0; i < 39; i++) await post(c, op, 'gw-wake', { type: 'measure', sources: [`ble:s${i}`] });
  t.equal((await post(c, op, 'gw-wake', { type: 'measure', sources: ['ble:x'] })).statusCode, 409);
  const wake = await post(c, op, 'gw-wake', { type: 'wake', forS: 120 });
  t.equal(wake.statusCode, 202, 'a wake joins the pending wake even when the queue is full');
  t.equal(wake.json<IssueJson>().coalesced, true);
  t.equal(wake.json<IssueJson>().command.stayForS, 120);
});

t.test('invalid commands: 400, nothing sent or stored', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  const missing = await post(c, op, 'gw-1', { type: 'wake' });
  t.equal(missing.statusCode, 400);
  t.equal(missing.json<ProblemJson>().code, 'COMMAND_INVALID');
  t.match(missing.json<ProblemJson>().message, /forS/);
  for (const body of [
    { type: 'wake', forS: 0 },
    { type: 'wake', forS: 172_801 },
    { type: 'wake', forS: 1.5 },
    { type: 'reboot' },
    { type: 'wake', forS: 60, colour: 'red' },
    { type: 'sleep', forS: 5 },
    { type: 'measure', sources: [] },
    { type: 'measure', sources: [''] },
    { type: 'measure', sources: ['a', 'a'] },
    { type: 'wake', forS: 60, expiresInS: 5 },
    { forS: 60 },
  ]) {
    const res = await post(c, op, 'gw-1', body);
    t.equal(res.statusCode, 400, JSON.stringify(body));
    t.match(res.json<ProblemJson>().code, /^(COMMAND_INVALID|REQUEST_INVALID)$/, JSON.stringify(body));
  }
  const sleep = await post(c, op, 'gw-1', { type: 'sleep', forS: 5 });
  t.equal(sleep.json<ProblemJson>().code, 'COMMAND_INVALID');
  t.match(sleep.json<ProblemJson>().message, /forS/);
  t.equal(c.hub.sent.length, 0, 'nothing sent');
  t.same(await listCommands(c, op, 'gw-1'), [], 'nothing stored');
});

t.test('unknown gateway: 404 and nothing stored; hub down: 503, and a failed send is stored failed', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  const res = await post(c, op, 'gw-ghost', { type: 'wake', forS: 60 });
  t.equal(res.statusCode, 404);
  t.equal(res.json<ProblemJson>().code, 'DEVICE_NOT_FOUND');
  t.same(await listCommands(c, op, 'gw-ghost'), [], 'nothing stored');
  t.equal(c.hub.sent.length, 0);

  // Hub down and the gateway not cached: 503 from reading its twin, nothing stored.
  c.hub.addGateway('gw-cold');
  c.hub.down = new FieldlinkError('HUB_UNREACHABLE', { message: 'IoT Hub is not reachable (test)' });
  const cold = await post(c, op, 'gw-cold', { type: 'wake', forS: 60 });
  t.equal(cold.statusCode, 503);
  t.same(cold.json<ProblemJson>(), { code: 'HUB_UNREACHABLE', message: 'IoT Hub is not reachable (test)' });
  t.same(await listCommands(c, op, 'gw-cold'), []);

  // Gateway cached (an earlier command read its twin), then the send fails.
  c.hub.down = undefined;
  c.hub.addGateway('gw-warm');
  const ok = (await post(c, op, 'gw-warm', { type: 'measure' })).json<IssueJson>();
  t.equal(ok.command.status, 'queued');
  c.hub.down = new FieldlinkError('HUB_UNREACHABLE', { message: 'IoT Hub is not reachable (test)' });
  const warm = await post(c, op, 'gw-warm', { type: 'wake', forS: 60 });
  t.equal(warm.statusCode, 503);
  t.equal(warm.json<ProblemJson>().code, 'HUB_UNREACHABLE');
  t.equal(warm.json<ProblemJson>().message, 'IoT Hub is not reachable (test)');
  const list = await listCommands(c, op, 'gw-warm');
  t.equal(list.length, 2);
  t.equal(list[0]?.type, 'wake');
  t.equal(list[0]?.status, 'failed', 'stored failed');
  t.equal(list[0]?.statusReason, 'IoT Hub is not reachable (test)', 'with the reason');

  // A failed wake is not pending: the next wake is a new command.
  c.hub.down = undefined;
  const retry = (await post(c, op, 'gw-warm', { type: 'wake', forS: 60 })).json<IssueJson>();
  t.equal(retry.coalesced, false);
  t.not(retry.command.id, list[0]?.id);
  const entries = await audit(c, op);
  t.match(entries.find((e) => e.target === 'gw-ghost'), { action: 'command.wake', result: 'DEVICE_NOT_FOUND', tokenName: 'operator' });
  t.match(entries.find((e) => e.target === 'gw-cold'), { action: 'command.wake', result: 'HUB_UNREACHABLE' });
});

t.test('reading commands: by id, 404 otherwise; per gateway newest first with a limit', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  c.hub.addGateway('gw-2');
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) {
    ids.push((await post(c, op, 'gw-1', { type: 'measure', sources: [`ble:${i}`] })).json<IssueJson>().command.id);
    await c.clock.advance(1000);
  }
  await post(c, op, 'gw-2', { type: 'sleep' });
  const one = await getCommand(c, op, ids[2] ?? '');
  t.equal(one.id, ids[2]);
  t.same(one.payload, { type: 'measure', sources: ['ble:2'] });
  const missing = await c.app.inject({ method: 'GET', url: '/v1/commands/nope', headers: bearer(op) });
  t.equal(missing.statusCode, 404);
  t.equal(missing.json<ProblemJson>().code, 'COMMAND_NOT_FOUND');
  t.same(
    (await listCommands(c, op, 'gw-1')).map((x) => x.id),
    [...ids].reverse(),
    'newest first, only this gateway',
  );
  t.same(
    (await listCommands(c, op, 'gw-1', '?limit=2')).map((x) => x.id),
    [ids[4], ids[3]],
    'limit',
  );
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/gateways/gw-1/commands?limit=0', headers: bearer(op) })).statusCode, 400);
});

t.test('auth: 401 without a token, viewers read, pairing tokens nothing; audit of every POST; the token stays out of the log', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator', 'alice');
  const viewer = c.token('viewer', 'bob');
  const pairing = c.token('pairing', 'pi');
  c.hub.addGateway('gw-1');
  const id = (await post(c, op, 'gw-1', { type: 'wake', forS: 60 })).json<IssueJson>().command.id;
  const routes = [
    { method: 'POST', url: '/v1/gateways/gw-1/commands', payload: { type: 'wake', forS: 60 } },
    { method: 'GET', url: `/v1/commands/${id}` },
    { method: 'GET', url: '/v1/gateways/gw-1/commands' },
  ] as const;
  for (const r of routes) {
    const anon = await c.app.inject({ ...r });
    t.equal(anon.statusCode, 401, `no token: ${r.method} ${r.url}`);
    t.equal(anon.json<ProblemJson>().code, 'AUTH_REQUIRED');
    const asPairing = await c.app.inject({ ...r, headers: bearer(pairing) });
    t.equal(asPairing.statusCode, 403, `pairing: ${r.method} ${r.url}`);
    t.equal(asPairing.json<ProblemJson>().code, 'AUTH_FORBIDDEN');
    const asViewer = await c.app.inject({ ...r, headers: bearer(viewer) });
    t.equal(asViewer.statusCode, r.method === 'POST' ? 403 : 200, `viewer: ${r.method} ${r.url}`);
  }
  t.equal(c.hub.sent.length, 1, 'only the operator sent anything');

  await post(c, op, 'gw-1', { type: 'measure' });
  await post(c, op, 'gw-nope', { type: 'sleep' });
  const entries = await audit(c, op);
  const commandEntries = entries.filter((e) => e.action.startsWith('command.'));
  t.equal(commandEntries.length, 3, 'one entry per operator POST, none for refused roles');
  t.match(commandEntries[2], { tokenName: 'alice', action: 'command.wake', target: 'gw-1', result: 'ok', details: { command: { type: 'wake', forS: 60 }, commandId: id, coalesced: false } });
  t.match(commandEntries[1], { tokenName: 'alice', action: 'command.measure', target: 'gw-1', result: 'ok' });
  t.match(commandEntries[0], { tokenName: 'alice', action: 'command.sleep', target: 'gw-nope', result: 'DEVICE_NOT_FOUND' });

  const log = JSON.stringify(c.log.lines);
  t.ok(c.log.lines.length > 0, 'something was logged');
  for (const [name, token] of [['operator', op], ['viewer', viewer], ['pairing', pairing]] as const) {
    t.notOk(log.includes(token), `the ${name} token is not in the log`);
  }
  t.ok(c.log.lines.some((l) => l.tokenName === 'alice'), 'the token name is');
});

t.test('100 wakes at once (concurrent requests): still one send and one command', async (t) => {
  const c = await companion({ rateLimit });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  c.hub.addGateway('gw-1');
  const results = await Promise.all(Array.from({ length: 100 }, (_, i) => post(c, op, 'gw-1', { type: 'wake', forS: 60 + i })));
  t.ok(results.every((r) => r.statusCode === 202), 'all accepted');
  const bodies = results.map((r) => r.json<IssueJson>());
  t.equal(new Set(bodies.map((b) => b.command.id)).size, 1, 'one command id for all');
  t.equal(bodies.filter((b) => !b.coalesced).length, 1, 'exactly one not coalesced');
  t.equal(c.hub.sent.length, 1, 'one message in the hub queue');
  const stored = await listCommands(c, op, 'gw-1', '?limit=200');
  t.equal(stored.length, 1);
  t.equal(stored[0]?.stayForS, 159, 'the longest stay asked is kept');
});
