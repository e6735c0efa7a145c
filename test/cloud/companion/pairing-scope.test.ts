import t from 'tap';
import { issueToken } from '../../../cloud/src/auth.js';
import { generatePairingCode, hashPairingCode } from '../../../common/pairing-code.js';
import { bearer, companion, type AuditEntryJson, type Companion, NO_RATE_LIMIT, type ProblemJson } from './fixture.js';

// Pairing tokens scoped to a site, and short-lived pairing links (issue 8): a token from one
// site never finds another site's gateway, is not told its name, and a link stops working when
// it expires.

const A1 = 'AA:BB:CC:DD:EE:01';

function addGateway(c: Companion, id: string, code: string, site: string | undefined, desired: Record<string, unknown> = {}): void {
  c.hub.addGateway(id, {}, { tags: { fieldlink: { kind: 'gateway', pairing: hashPairingCode(code), ...(site === undefined ? {} : { site }) } }, desired: { $version: 1, ...desired } });
}
const start = (c: Companion, token: string, code: string) => c.app.inject({ method: 'POST', url: '/v1/pairing/sessions', headers: bearer(token), payload: { code } });
const siteToken = (c: Companion, name: string, site: string | null, expiresAt: number | null = null) =>
  issueToken(c.store, { name, role: 'pairing', now: c.clock.now(), site, expiresAt }).token;

t.test('a site-scoped pairing token finds only its site; another site is not named to it', async (t) => {
  const c = await companion({ rateLimit: NO_RATE_LIMIT });
  t.teardown(c.cleanup);
  const [osaka, tokyo] = [generatePairingCode(), generatePairingCode()];
  addGateway(c, 'gw-osaka', osaka, 'Osaka plant');
  addGateway(c, 'gw-tokyo', tokyo, 'Tokyo office', { pairings: { [A1]: { profile: 'heart_rate' } } });
  const phone = siteToken(c, 'osaka-phone', 'Osaka plant');

  const ok = await start(c, phone, osaka);
  t.equal(ok.statusCode, 201, ok.body);
  t.equal(ok.json<{ session: { gateway: string } }>().session.gateway, 'gw-osaka');

  const other = await start(c, phone, tokyo);
  t.equal(other.statusCode, 404, "another site's code is unknown to it");
  t.equal(other.json<ProblemJson>().code, 'PAIRING_CODE_UNKNOWN');

  const all = siteToken(c, 'roaming-phone', null);
  t.equal((await start(c, all, tokyo)).statusCode, 201, 'a token for all sites finds it');

  // A1 is paired at Tokyo: the Osaka token learns that, not which gateway.
  const id = ok.json<{ session: { id: string } }>().session.id;
  const clash = await c.app.inject({ method: 'POST', url: `/v1/pairing/sessions/${id}/devices`, headers: bearer(phone), payload: { address: A1, profile: 'heart_rate' } });
  t.equal(clash.statusCode, 409);
  const p = clash.json<ProblemJson>();
  t.equal(p.code, 'DEVICE_PAIRED_ELSEWHERE');
  t.notMatch(clash.body, /gw-tokyo/, 'the other site\'s gateway is not named');
  t.match(p.message, /another site/);
  // An operator (or an all-sites token) is told where.
  const opSession = await start(c, c.token('operator'), osaka);
  const opId = opSession.json<{ session: { id: string } }>().session.id;
  const opClash = await c.app.inject({ method: 'POST', url: `/v1/pairing/sessions/${opId}/devices`, headers: bearer(c.token('operator', 'op2')), payload: { address: A1, profile: 'heart_rate' } });
  t.equal(opClash.json<ProblemJson>().details?.gateway, 'gw-tokyo');

  const me = await c.app.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(phone) });
  t.same(me.json(), { name: 'osaka-phone', role: 'pairing', site: 'Osaka plant', expiresAt: null });
});

t.test('pairing links: operator only, scoped, short-lived, audited; expired tokens are refused with a reason', async (t) => {
  const c = await companion({ rateLimit: NO_RATE_LIMIT });
  t.teardown(c.cleanup);
  const code = generatePairingCode();
  addGateway(c, 'gw-osaka', code, 'Osaka plant');
  const op = c.token('operator');

  const refused = await c.app.inject({ method: 'POST', url: '/v1/pairing/links', headers: bearer(c.token('pairing', 'p')), payload: { site: 'Osaka plant' } });
  t.equal(refused.statusCode, 403, 'a pairing token cannot mint links');
  const badSite = await c.app.inject({ method: 'POST', url: '/v1/pairing/links', headers: bearer(op), payload: { site: '../etc' } });
  t.equal(badSite.statusCode, 400);
  const tooLong = await c.app.inject({ method: 'POST', url: '/v1/pairing/links', headers: bearer(op), payload: { expiresInS: 30 * 86_400 } });
  t.equal(tooLong.statusCode, 400, 'at most 7 days');

  const res = await c.app.inject({ method: 'POST', url: '/v1/pairing/links', headers: { ...bearer(op), host: 'fieldlink.example.com' }, payload: { site: 'Osaka plant', expiresInS: 3600 } });
  t.equal(res.statusCode, 201, res.body);
  t.equal(res.headers['cache-control'], 'no-store');
  const link = res.json<{ name: string; token: string; url: string; site: string; expiresAt: string }>();
  t.equal(link.url, `http://fieldlink.example.com/pair#token=${link.token}`, 'the token rides in the fragment');
  t.equal(link.site, 'Osaka plant');
  t.equal(new Date(link.expiresAt).getTime(), c.clock.now() + 3_600_000);

  const me = await c.app.inject({ method: 'GET', url: '/v1/whoami', headers: bearer(link.token) });
  t.same(me.json(), { name: link.name, role: 'pairing', site: 'Osaka plant', expiresAt: link.expiresAt });
  t.equal((await start(c, link.token, code)).statusCode, 201, 'the link pairs at its site');
  t.equal((await c.app.inject({ method: 'GET', url: '/v1/gateways', headers: bearer(link.token) })).statusCode, 403, 'and does nothing else');

  await c.clock.advance(3_600_000);
  const late = await start(c, link.token, code);
  t.equal(late.statusCode, 401, 'refused once expired');
  t.match(late.json<ProblemJson>().message, /expired at .*new pairing link/);

  const entries = (await c.app.inject({ method: 'GET', url: '/v1/audit?limit=50', headers: bearer(op) })).json<{ entries: AuditEntryJson[] }>().entries;
  const made = entries.find((e) => e.action === 'pairing.link' && e.result === 'ok');
  t.match(made, { tokenName: 'operator', target: link.name, details: { site: 'Osaka plant', expiresAt: link.expiresAt } });
  t.notOk(JSON.stringify(entries).includes(link.token), 'the token is not in the audit log');
  t.notOk(JSON.stringify(c.log.lines).includes(link.token), 'nor in the log');
});

t.test('a configured public URL is used for links; gateways created with a site carry it', async (t) => {
  const c = await companion({ rateLimit: NO_RATE_LIMIT, publicUrl: 'https://pair.example.com' });
  t.teardown(c.cleanup);
  const op = c.token('operator');
  const res = await c.app.inject({ method: 'POST', url: '/v1/pairing/links', headers: bearer(op), payload: {} });
  t.match(res.json<{ url: string }>().url, /^https:\/\/pair\.example\.com\/pair#token=flc_/);
  t.equal(res.json<{ site: null }>().site, null, 'no site: any gateway');

  const created = await c.app.inject({ method: 'POST', url: '/v1/gateways', headers: bearer(op), payload: { id: 'gw-new', site: 'Osaka plant' } });
  t.equal(created.statusCode, 201, created.body);
  const twin = await c.hub.getTwin('gw-new');
  t.match(twin.tags, { fieldlink: { kind: 'gateway', site: 'Osaka plant' } });
  t.equal((await c.app.inject({ method: 'POST', url: '/v1/gateways', headers: bearer(op), payload: { id: 'gw-bad', site: '' } })).statusCode, 400);
});

t.test('issueToken refuses a site on a non-pairing token and an expiry in the past', async (t) => {
  const c = await companion();
  t.teardown(c.cleanup);
  t.throws(() => issueToken(c.store, { name: 'x', role: 'operator', now: c.clock.now(), site: 'Osaka' }), { code: 'REQUEST_INVALID', message: /site scope is for pairing tokens/ });
  t.throws(() => issueToken(c.store, { name: 'y', role: 'pairing', now: c.clock.now(), expiresAt: c.clock.now() - 1 }), { code: 'REQUEST_INVALID', message: /expire in the future/ });
  t.throws(() => issueToken(c.store, { name: 'z', role: 'pairing', now: c.clock.now(), site: 'bad/site' }), { code: 'REQUEST_INVALID', message: /site "bad\/site" must be/ });
});
