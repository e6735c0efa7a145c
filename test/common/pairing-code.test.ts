import t from 'tap';
import { generatePairingCode, hashPairingCode, normalizePairingCode, pairingCodeBucket, verifyPairingCode } from '../../common/pairing-code.js';

t.test('codes: ten Crockford base32 symbols in two groups, all different across many draws', async (t) => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const c = generatePairingCode();
    t.match(c, /^[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}$/);
    seen.add(c);
  }
  t.equal(seen.size, 2000, 'no repeats in 2,000 draws (50 bits each)');
});

t.test('typing is forgiving: case, spaces, dashes, O for 0 and I/L for 1', async (t) => {
  t.equal(normalizePairingCode('ab1cd-ef2gh'), 'AB1CDEF2GH');
  t.equal(normalizePairingCode(' o0il1 23456 '), '0011123456');
  t.equal(normalizePairingCode('ABCDE-FGHU1'), undefined, 'U is not in the alphabet');
  t.equal(normalizePairingCode('ABCD'), undefined, 'too short');
  t.equal(normalizePairingCode('ABCDEFGHJK1'), undefined, 'too long');
});

t.test('hash and verify: salted (two hashes of one code differ), right code matches, wrong one does not', async (t) => {
  const code = generatePairingCode();
  const a = hashPairingCode(code);
  const b = hashPairingCode(code);
  t.not(a.hash, b.hash, 'salted');
  t.equal(a.algorithm, 'scrypt');
  t.ok(verifyPairingCode(code, a));
  t.ok(verifyPairingCode(code.toLowerCase(), b));
  const other = code.startsWith('0') ? `1${code.slice(1)}` : `0${code.slice(1)}`;
  t.notOk(verifyPairingCode(other, a));
  t.notOk(verifyPairingCode('not a code', a));
  t.notOk(verifyPairingCode(code, { ...a, hash: Buffer.alloc(32).toString('base64') }));
  t.throws(() => hashPairingCode('short'), RangeError);
});

t.test('bucket: 16 bits stored with the hash, found again from the code as typed', async (t) => {
  const code = generatePairingCode();
  const { bucket } = hashPairingCode(code);
  t.match(bucket, /^[0-9a-f]{4}$/);
  t.equal(pairingCodeBucket(code), bucket);
  t.equal(pairingCodeBucket(` ${code.toLowerCase().replace('-', ' ')} `), bucket, 'typed loosely, same bucket');
  t.equal(pairingCodeBucket('not a code'), undefined);
});
