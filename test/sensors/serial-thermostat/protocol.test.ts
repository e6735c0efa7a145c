import { readFileSync } from 'node:fs';
import t from 'tap';
import {
  checksum,
  formatAck,
  formatBanner,
  formatCommand,
  formatNak,
  formatReading,
  LineFramer,
  MAX_LINE_BYTES,
  modeCode,
  parseLine,
  seal,
  type Command,
  type ParseResult,
} from '../../../sensors/serial-thermostat/protocol.js';

// Compiled to dist/test/sensors/serial-thermostat/, four levels below the project root.
const DOC = readFileSync(new URL('../../../../docs/protocols/serial-thermostat.md', import.meta.url), 'utf8');

function errorOf(r: ParseResult): NonNullable<Extract<ParseResult, { ok: false }>['error']> {
  if (r.ok) throw new Error(`expected a parse error, got ${JSON.stringify(r.frame)}`);
  return r.error;
}

t.test('checksum: the worked example and the NMEA definition', async (t) => {
  t.equal(checksum('ACK,1'), '54');
  t.equal(0x41 ^ 0x43 ^ 0x4b ^ 0x2c ^ 0x31, 0x54);
  t.equal(checksum(''), '00');
  t.equal(seal('READ,1'), 'READ,1*0F', 'two digits, upper case, zero-padded');
});

t.test('document vectors: readings', async (t) => {
  const vectors = [
    ['R,0,21.5,45.2,21.0,HEAT*4E', { deviceSeq: 0, temperatureC: 21.5, humidityPct: 45.2, setpointC: 21, mode: 'HEAT' }],
    ['R,1234,22.8,51.9,22.5,AUTO*6B', { deviceSeq: 1234, temperatureC: 22.8, humidityPct: 51.9, setpointC: 22.5, mode: 'AUTO' }],
    ['R,65535,-3.4,100.0,5.0,OFF*01', { deviceSeq: 65535, temperatureC: -3.4, humidityPct: 100, setpointC: 5, mode: 'OFF' }],
  ] as const;
  for (const [line, reading] of vectors) {
    t.same(parseLine(line), { ok: true, frame: { type: 'reading', ...reading } }, line);
    t.equal(formatReading(reading), line, `formats back to ${line}`);
    t.ok(DOC.includes(line), `${line} is in the document`);
  }
  t.same(parseLine('R,0,21.5,45.2,21.0,HEAT*4e'), parseLine('R,0,21.5,45.2,21.0,HEAT*4E'), 'lower-case hex accepted');
  t.same(parseLine('R,0,21.5,45.2,21.0,HEAT*4E\r'), parseLine('R,0,21.5,45.2,21.0,HEAT*4E'), 'a trailing CR is dropped');
  t.same([modeCode('OFF'), modeCode('HEAT'), modeCode('COOL'), modeCode('AUTO')], [0, 1, 2, 3]);
});

t.test('document vectors: banner, commands and replies', async (t) => {
  const vectors: Array<[string, unknown]> = [
    ['B,FLT-100,1.0,thermo-1*16', { type: 'banner', model: 'FLT-100', firmware: '1.0', deviceId: 'thermo-1' }],
    ['READ,1*0F', { type: 'command', id: 1, command: { verb: 'READ' } }],
    ['SETPOINT,2,22.5*27', { type: 'command', id: 2, command: { verb: 'SETPOINT', celsius: 22.5 } }],
    ['INTERVAL,3,0.5*07', { type: 'command', id: 3, command: { verb: 'INTERVAL', seconds: 0.5 } }],
    ['ACK,1*54', { type: 'ack', id: 1 }],
    ['ACK,2*57', { type: 'ack', id: 2 }],
    ['ACK,3*56', { type: 'ack', id: 3 }],
    ['NAK,4,RANGE*2F', { type: 'nak', id: 4, reason: 'RANGE' }],
    ['NAK,5,SYNTAX*78', { type: 'nak', id: 5, reason: 'SYNTAX' }],
    ['NAK,6,UNKNOWN*3A', { type: 'nak', id: 6, reason: 'UNKNOWN' }],
  ];
  for (const [line, frame] of vectors) {
    t.same(parseLine(line), { ok: true, frame }, line);
    t.ok(DOC.includes(line), `${line} is in the document`);
  }
  t.equal(formatBanner({ model: 'FLT-100', firmware: '1.0', deviceId: 'thermo-1' }), 'B,FLT-100,1.0,thermo-1*16');
  t.equal(formatCommand(1, { verb: 'READ' }), 'READ,1*0F');
  t.equal(formatCommand(2, { verb: 'SETPOINT', celsius: 22.5 }), 'SETPOINT,2,22.5*27');
  t.equal(formatCommand(3, { verb: 'INTERVAL', seconds: 0.5 }), 'INTERVAL,3,0.5*07');
  t.equal(formatAck(1), 'ACK,1*54');
  t.equal(formatNak(4, 'RANGE'), 'NAK,4,RANGE*2F');
});

t.test('document vectors: commands a device NAKs', async (t) => {
  t.same(errorOf(parseLine('SETPOINT,4,40.0*20')), { kind: 'malformed', reason: 'setpoint 40.0 outside 5-35', line: 'SETPOINT,4,40.0*20', nak: { id: 4, reason: 'RANGE' } });
  t.match(errorOf(parseLine('SETPOINT,5,warm*32')), { kind: 'malformed', nak: { id: 5, reason: 'SYNTAX' } });
  t.match(errorOf(parseLine('RESET,6*4F')), { kind: 'malformed', nak: { id: 6, reason: 'UNKNOWN' } });
  t.match(errorOf(parseLine(seal('INTERVAL,7,0.01'))), { nak: { id: 7, reason: 'RANGE' } });
  t.match(errorOf(parseLine(seal('INTERVAL,7,1.2345'))), { nak: { id: 7, reason: 'SYNTAX' } });
  t.match(errorOf(parseLine(seal('READ,8,now'))), { nak: { id: 8, reason: 'SYNTAX' } });
  t.notOk((errorOf(parseLine(seal('READ,0'))) as { nak?: unknown }).nak, 'no valid id (0): nothing to NAK');
  t.notOk((errorOf(parseLine(seal('hello world'))) as { nak?: unknown }).nak, 'not a command: nothing to NAK');
});

t.test('every sealed line in the document has a correct checksum', async (t) => {
  const sealed = DOC.match(/\b[A-Z][A-Za-z0-9,.\-_:]*\*[0-9A-F]{2}\b/g) ?? [];
  t.ok(sealed.length >= 15, `found ${sealed.length} lines`);
  for (const line of sealed) {
    const r = parseLine(line);
    t.not(r.ok ? 'ok' : r.error.kind, 'checksum', line);
  }
});

t.test('error kinds', async (t) => {
  const long = seal(`R,1,${'1'.repeat(MAX_LINE_BYTES)}`);
  t.same(errorOf(parseLine(long)), { kind: 'oversize', length: long.length });
  t.equal(parseLine(seal('B,a,b,' + 'c'.repeat(32))).ok, true, 'long but within the limit');

  t.same(errorOf(parseLine('R,0,21.5,45.2,21.0,HEAT*4F')), { kind: 'checksum', expected: '4E', actual: '4F', line: 'R,0,21.5,45.2,21.0,HEAT*4F' });

  const malformed: Array<[string, RegExp]> = [
    ['R,0,21.5,45.2,21.0,HEAT', /no checksum/],
    ['R,0,21.5,45.2,21.0,HEAT*4', /two hex digits/],
    ['R,0,21.5,45.2,21.0,HEAT*ZZ', /two hex digits/],
    ['R,0,21.5\x01,45.2*00', /non-printable/],
    [seal('R,0,21.5,45.2,21.0'), /5 fields/],
    [seal('R,65536,21.5,45.2,21.0,HEAT'), /deviceSeq/],
    [seal('R,007,21.5,45.2,21.0,HEAT'), /deviceSeq/],
    [seal('R,1,21.55,45.2,21.0,HEAT'), /temperature is not/],
    [seal('R,1,85.1,45.2,21.0,HEAT'), /temperature out of range/],
    [seal('R,1,21.5,100.1,21.0,HEAT'), /humidity out of range/],
    [seal('R,1,21.5,45.2,4.9,HEAT'), /setpoint out of range/],
    [seal('R,1,21.5,45.2,21.0,FAN'), /unknown mode/],
    [seal('ACK'), /ACK needs/],
    [seal('NAK,1,BUSY'), /NAK needs/],
    [seal('B,model,1.0'), /banner needs/],
    [seal('a*b'), /'\*' inside the body/],
    ['', /no checksum/],
  ];
  for (const [line, reason] of malformed) {
    const e = errorOf(parseLine(line));
    t.equal(e.kind, 'malformed', JSON.stringify(line));
    t.match((e as { reason: string }).reason, reason, JSON.stringify(line));
  }
});

t.test('round trips', async (t) => {
  const commands: Command[] = [{ verb: 'READ' }, { verb: 'SETPOINT', celsius: 5 }, { verb: 'SETPOINT', celsius: 35 }, { verb: 'INTERVAL', seconds: 3600 }, { verb: 'INTERVAL', seconds: 0.05 }, { verb: 'INTERVAL', seconds: 1.25 }];
  for (const [i, command] of commands.entries()) {
    const line = formatCommand(65535 - i, command);
    t.same(parseLine(line), { ok: true, frame: { type: 'command', id: 65535 - i, command } }, line);
  }
  for (let seq = 0; seq <= 65535; seq += 4369) {
    const r = { deviceSeq: seq, temperatureC: (-400 + (seq % 1250)) / 10, humidityPct: (seq % 1001) / 10, setpointC: (50 + (seq % 301)) / 10, mode: 'COOL' as const };
    t.same(parseLine(formatReading(r)), { ok: true, frame: { type: 'reading', ...r } });
  }
  t.equal(formatReading({ deviceSeq: 1, temperatureC: -0.04, humidityPct: 0, setpointC: 5, mode: 'OFF' }).split(',')[2], '0.0', 'no negative zero');
});

t.test('LineFramer: splitting, CR handling, oversize discarded up to the next newline', async (t) => {
  const f = new LineFramer(10);
  t.same(f.push(Buffer.from('ab')), []);
  t.same(f.push(Buffer.from('c\r\nde\nfg')), [{ type: 'line', text: 'abc' }, { type: 'line', text: 'de' }]);
  t.same(f.push(Buffer.from('\r\n')), [{ type: 'line', text: 'fg' }]);
  t.same(f.push(Buffer.from('0123456789\r\n')), [{ type: 'line', text: '0123456789' }], 'exactly the maximum');
  t.same(f.push(Buffer.from('0123456789A\r\nok\r\n')), [{ type: 'oversize', length: 11 }, { type: 'line', text: 'ok' }], 'one over, newline in the same chunk');
  t.same(f.push(Buffer.from('0123456789AB')), [{ type: 'oversize', length: 12 }], 'reported as soon as it cannot fit');
  t.same(f.push(Buffer.from('more junk without end')), [], 'counted once');
  t.same(f.push(Buffer.from('tail\r\nnext\r\n')), [{ type: 'line', text: 'next' }], 'resynchronised after the newline');
  t.same(f.push(Buffer.from([0xff, 0x41, 0x0d, 0x0a])), [{ type: 'line', text: '\xffA' }], 'bytes kept one-to-one (latin1)');
  f.push(Buffer.from('partial'));
  f.reset();
  t.same(f.push(Buffer.from('x\n')), [{ type: 'line', text: 'x' }], 'reset forgets a partial line');
});
