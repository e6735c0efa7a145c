import t from 'tap';
import common from 'azure-iot-common';
import deviceSdk from 'azure-iot-device';
import type { Test } from './temp-db.js';
import { computeSignature, mintSasToken, parseSasToken, SasParseError, signatureMatches } from '../../../../cloud/hub/sas.js';

// Fixed 32-byte keys (base64) so signatures are reproducible.
const KEY_A = Buffer.alloc(32, 0xa1).toString('base64');
const KEY_B = Buffer.alloc(32, 0xb2).toString('base64');
const SE = 1_900_000_000;

function parseError(t: Test, token: string, message: string | RegExp): void {
  let thrown: unknown;
  try {
    parseSasToken(token);
  } catch (err) {
    thrown = err;
  }
  t.ok(thrown instanceof SasParseError, `SasParseError for ${JSON.stringify(token)} (got ${String(thrown)})`);
  if (typeof message === 'string') t.equal((thrown as Error | undefined)?.message, message);
  else t.match((thrown as Error | undefined)?.message, message);
}

t.test('mintSasToken produces a token that parses and verifies with its key only', async (t) => {
  const token = mintSasToken('localhost/devices/dev1', KEY_A, undefined, SE);
  const expectedSig = computeSignature(KEY_A, 'localhost%2Fdevices%2Fdev1', SE);
  t.equal(token, `SharedAccessSignature sr=localhost%2Fdevices%2Fdev1&sig=${encodeURIComponent(expectedSig)}&se=${SE}`);
  const sas = parseSasToken(token);
  t.strictSame(sas, { srRaw: 'localhost%2Fdevices%2Fdev1', resource: 'localhost/devices/dev1', sig: expectedSig, se: SE, skn: undefined });
  t.equal(signatureMatches(sas, [KEY_A]), true, 'right key');
  t.equal(signatureMatches(sas, [KEY_B]), false, 'another key');
  t.equal(signatureMatches(sas, []), false, 'no keys');
  t.equal(signatureMatches(sas, ['', '']), false, 'empty keys are skipped, not matched');
  t.equal(signatureMatches(sas, [KEY_B, KEY_A]), true, 'the secondary key verifies too');
  t.equal(signatureMatches(sas, ['', KEY_A]), true, 'an empty primary does not stop the secondary');
  t.equal(signatureMatches({ ...sas, se: SE + 1 }, [KEY_A]), false, 'the signature covers se');
  t.equal(signatureMatches({ ...sas, srRaw: 'localhost%2Fdevices%2Fdev2' }, [KEY_A]), false, 'the signature covers sr');
});

t.test('a policy token carries skn', async (t) => {
  const token = mintSasToken('localhost', KEY_A, 'iothubowner', SE);
  t.equal(token.endsWith(`&skn=iothubowner&se=${SE}`), true, token);
  const sas = parseSasToken(token);
  t.equal(sas.skn, 'iothubowner');
  t.equal(sas.resource, 'localhost');
  t.equal(signatureMatches(sas, [KEY_A]), true);
});

t.test('computeSignature is HMAC-SHA256 of "<sr>\\n<se>" under the decoded key', async (t) => {
  // Independently computed: HMAC-SHA256(key = 32 x 0xa1, "hub%2Fdevices%2Fd\n1900000000").
  const { createHmac } = await import('node:crypto');
  const want = createHmac('sha256', Buffer.alloc(32, 0xa1)).update('hub%2Fdevices%2Fd\n1900000000').digest('base64');
  t.equal(computeSignature(KEY_A, 'hub%2Fdevices%2Fd', SE), want);
  t.not(computeSignature(KEY_A, 'hub/devices/d', SE), want, 'the encoded form is what is signed');
});

t.test('agrees with azure-iot-common SharedAccessSignature.create', async (t) => {
  t.test('device token (no key name)', async (t) => {
    const sr = common.encodeUriComponentStrict('myhub.example/devices/dev1');
    // The device SDK passes a null key name; the typings say string, and any falsy value omits skn.
    const sdkToken = common.SharedAccessSignature.create(sr, '', KEY_A, SE).toString();
    t.equal(sdkToken.includes('skn='), false, 'no skn in a device token');
    const sas = parseSasToken(sdkToken);
    t.equal(sas.srRaw, 'myhub.example%2Fdevices%2Fdev1');
    t.equal(sas.resource, 'myhub.example/devices/dev1');
    t.equal(sas.se, SE);
    t.equal(sas.skn, undefined);
    t.equal(sas.sig, computeSignature(KEY_A, sr, SE), 'same signature as ours');
    t.equal(signatureMatches(sas, [KEY_A]), true);
    t.equal(signatureMatches(sas, [KEY_B]), false);
    t.equal(sdkToken, mintSasToken('myhub.example/devices/dev1', KEY_A, undefined, SE), 'byte-identical to our minted token');
  });

  t.test('policy token (skn)', async (t) => {
    const sr = common.encodeUriComponentStrict('myhub.example');
    const sdkToken = common.SharedAccessSignature.create(sr, 'registryReadWrite', KEY_B, SE).toString();
    const sas = parseSasToken(sdkToken);
    t.equal(sas.resource, 'myhub.example');
    t.equal(sas.skn, 'registryReadWrite');
    t.equal(sas.se, SE);
    t.equal(signatureMatches(sas, [KEY_A, KEY_B]), true, 'verifies with the secondary key');
    t.equal(signatureMatches(sas, [KEY_A]), false);
  });

  t.test('device SDK token for an id that URL-encoding changes', async (t) => {
    // encodeUriComponentStrict also escapes !'()* which encodeURIComponent leaves alone.
    const id = "dev:1+x(y)*'!";
    const sdkToken = deviceSdk.SharedAccessSignature.create('myhub.example', id, KEY_A, SE).toString();
    const sas = parseSasToken(sdkToken);
    t.equal(sas.srRaw, 'myhub.example%2Fdevices%2Fdev%3A1%2Bx%28y%29%2a%27%21');
    t.equal(sas.resource, `myhub.example/devices/${id}`);
    t.equal(signatureMatches(sas, [KEY_A]), true, 'verified over the SDK-encoded form');
  });
});

t.test('a device id with characters URL-encoding changes round-trips', async (t) => {
  const sas = parseSasToken(mintSasToken('localhost/devices/dev:1+x', KEY_A, undefined, SE));
  t.equal(sas.srRaw, 'localhost%2Fdevices%2Fdev%3A1%2Bx');
  t.equal(sas.resource, 'localhost/devices/dev:1+x');
  t.equal(signatureMatches(sas, [KEY_A]), true);
  const withPercent = parseSasToken(mintSasToken('localhost/devices/a%b', KEY_A, undefined, SE));
  t.equal(withPercent.resource, 'localhost/devices/a%b', '% itself survives');
  t.equal(signatureMatches(withPercent, [KEY_A]), true);
});

t.test('field order does not matter', async (t) => {
  const sig = encodeURIComponent(computeSignature(KEY_A, 'h', SE));
  const sas = parseSasToken(`SharedAccessSignature se=${SE}&skn=p&sig=${sig}&sr=h`);
  t.strictSame(sas, { srRaw: 'h', resource: 'h', sig: computeSignature(KEY_A, 'h', SE), se: SE, skn: 'p' });
  t.equal(signatureMatches(sas, [KEY_A]), true);
});

t.test('parse errors are SasParseErrors with a specific message', async (t) => {
  const sig = encodeURIComponent(computeSignature(KEY_A, 'h', SE));
  parseError(t, `sr=h&sig=${sig}&se=${SE}`, 'token is not a SharedAccessSignature');
  parseError(t, `Bearer sr=h&sig=${sig}&se=${SE}`, 'token is not a SharedAccessSignature');
  parseError(t, `sharedaccesssignature sr=h&sig=${sig}&se=${SE}`, 'token is not a SharedAccessSignature');
  parseError(t, `SharedAccessSignature sr=h&se=${SE}`, 'token must carry sr, sig and se');
  parseError(t, `SharedAccessSignature sig=${sig}&se=${SE}`, 'token must carry sr, sig and se');
  parseError(t, `SharedAccessSignature sr=h&sig=${sig}`, 'token must carry sr, sig and se');
  parseError(t, `SharedAccessSignature sr=h&sig=${sig}&se=soon`, 'token expiry (se) is not a number');
  parseError(t, `SharedAccessSignature sr=h&sig=${sig}&se=-5`, 'token expiry (se) is not a number');
  parseError(t, `SharedAccessSignature sr=h&sig=${sig}&se=1.5`, 'token expiry (se) is not a number');
  parseError(t, `SharedAccessSignature sr=h&sig=${sig}&se=`, 'token expiry (se) is not a number');
  parseError(t, `SharedAccessSignature sr=h%E0%A4%A&sig=${sig}&se=${SE}`, 'token sr, sig or skn is not valid URL encoding');
  parseError(t, `SharedAccessSignature sr=h&sig=%ZZ&se=${SE}`, 'token sr, sig or skn is not valid URL encoding');
  parseError(t, `SharedAccessSignature sr=h&sig=${sig}&se=${SE}&junk`, 'malformed token field "junk"');
  parseError(t, `SharedAccessSignature =x&sr=h&sig=${sig}&se=${SE}`, 'malformed token field "=x"');
  parseError(t, 'SharedAccessSignature ', 'malformed token field ""');
});

t.test('bad percent-encoding in skn is a SasParseError too', async (t) => {
  // parseSasToken decodes skn outside its try/catch, so a URIError escapes instead.
  const sig = encodeURIComponent(computeSignature(KEY_A, 'h', SE));
  parseError(t, `SharedAccessSignature sr=h&sig=${sig}&skn=%E0%A4%A&se=${SE}`, /not valid URL encoding/);
});
