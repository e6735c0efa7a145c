import { readFileSync } from 'node:fs';
import t from 'tap';
import { errorCodes, FieldlinkError, isErrorCode, isFieldlinkError, type ErrorCode } from '../../common/errors.js';

// Compiled to dist/test/common/, three levels below the project root.
const DOC = new URL('../../../docs/errors.md', import.meta.url);

interface DocRow {
  code: string;
  retryable: string;
  meaning: string;
  whatToDo: string;
}

function splitRow(line: string): string[] {
  return line
    .trim()
    .replace(/^\|/, '')
    .replace(/\|$/, '')
    .split('|')
    .map((cell) => cell.trim());
}

/** The rows of the first table whose header starts with `Code`. */
function parseErrorTable(markdown: string): DocRow[] {
  const lines = markdown.split('\n');
  const start = lines.findIndex((l) => /^\|\s*Code\s*\|/.test(l));
  if (start < 0) throw new Error('docs/errors.md has no table starting with a "Code" column');
  const header = splitRow(lines[start] ?? '');
  if (header.join('|') !== 'Code|Retryable|Meaning|What to do') {
    throw new Error(`unexpected columns in docs/errors.md: ${header.join(' | ')}`);
  }
  const rows: DocRow[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.trim().startsWith('|')) break;
    const [code = '', retryable = '', meaning = '', whatToDo = ''] = splitRow(line);
    rows.push({ code, retryable, meaning, whatToDo });
  }
  return rows;
}

const rows = parseErrorTable(readFileSync(DOC, 'utf8'));
const registry = Object.keys(errorCodes) as ErrorCode[];

t.test('docs/errors.md documents every code in the registry', async (t) => {
  const documented = new Set(rows.map((r) => r.code));
  t.same(registry.filter((c) => !documented.has(c)), [], 'codes missing from docs/errors.md');
});

t.test('docs/errors.md documents only codes in the registry, once each', async (t) => {
  t.same(rows.filter((r) => !isErrorCode(r.code)).map((r) => r.code), [], 'documented codes not in common/errors.ts');
  const codes = rows.map((r) => r.code);
  t.same(codes.filter((c, i) => codes.indexOf(c) !== i), [], 'codes documented twice');
});

t.test('retryable column agrees with the registry; every row is filled in', async (t) => {
  for (const row of rows) {
    if (!isErrorCode(row.code)) continue;
    t.match(row.retryable, /^(yes|no)$/, `${row.code}: Retryable is yes or no`);
    t.equal(row.retryable === 'yes', errorCodes[row.code].retryable, `${row.code}: Retryable matches the registry`);
    t.ok(row.meaning.length > 0 && row.whatToDo.length > 0, `${row.code}: Meaning and What to do are filled in`);
  }
});

t.test('FieldlinkError', async (t) => {
  const plain = new FieldlinkError('TIMEOUT');
  t.equal(plain.message, errorCodes.TIMEOUT.summary, 'message defaults to the summary');
  t.equal(plain.retryable, true, 'retryable defaults to the registry');
  t.equal(plain.name, 'FieldlinkError');
  t.equal(plain.details, undefined);
  t.notOk('cause' in plain, 'no cause property unless given');
  t.ok(plain instanceof Error);

  const cause = new Error('ECONNRESET');
  const custom = new FieldlinkError('HUB_REQUEST_FAILED', {
    message: 'registry GET failed',
    cause,
    retryable: false,
    details: { status: 400 },
  });
  t.equal(custom.message, 'registry GET failed');
  t.equal(custom.cause, cause);
  t.equal(custom.retryable, false, 'explicit retryable wins');
  t.same(custom.details, { status: 400 });

  t.ok(isFieldlinkError(custom));
  t.ok(isFieldlinkError(custom, 'HUB_REQUEST_FAILED'));
  t.notOk(isFieldlinkError(custom, 'TIMEOUT'));
  t.notOk(isFieldlinkError(cause));
  t.notOk(isFieldlinkError({ code: 'TIMEOUT' }));
});
