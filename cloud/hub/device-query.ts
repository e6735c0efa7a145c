import { HubError } from './hub-errors.js';

/**
 * The subset of IoT Hub's query language the local hub answers:
 * `SELECT * FROM devices [WHERE <condition>]` over twin documents. Anything outside it is
 * refused by name rather than half-answered, so a query that works here works on IoT Hub.
 */

/** A constant a condition compares against. */
export type Literal = string | number | boolean | null;

export type ComparisonOp = '=' | '!=' | '<' | '>' | '<=' | '>=';

/** A path from the twin document's root, e.g. ['properties', 'reported', 'temp']. */
export type TwinPath = readonly string[];

export type Condition =
  | { readonly kind: 'and' | 'or'; readonly left: Condition; readonly right: Condition }
  | { readonly kind: 'not'; readonly operand: Condition }
  | { readonly kind: 'compare'; readonly path: TwinPath; readonly op: ComparisonOp; readonly value: Literal }
  | { readonly kind: 'defined'; readonly path: TwinPath };

export interface DeviceQuery {
  /** Undefined: every device matches. */
  readonly where: Condition | undefined;
}

// Parentheses and NOTs recurse; a bound keeps a hostile query from overflowing the stack (a 500).
const MAX_NESTING = 64;

const OPERATORS: Readonly<Record<string, ComparisonOp>> = { '=': '=', '!=': '!=', '<>': '!=', '<': '<', '>': '>', '<=': '<=', '>=': '>=' };
// Longest first, so `<=` is not read as `<` then `=`.
const SYMBOLS = ['<=', '>=', '<>', '!=', '=', '<', '>', '(', ')', '*', '.', ','];
const RESERVED = new Set(['SELECT', 'FROM', 'WHERE', 'AND', 'OR', 'NOT', 'TRUE', 'FALSE', 'NULL', 'IS_DEFINED']);
const WORD = /[A-Za-z_$][A-Za-z0-9_$]*/y;
const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
const SUPPORTED = 'which answers SELECT * FROM devices [WHERE <condition>] only';

type Token =
  | { readonly kind: 'word' | 'symbol'; readonly text: string; readonly pos: number; readonly end: number }
  | { readonly kind: 'string'; readonly value: string; readonly pos: number; readonly end: number }
  | { readonly kind: 'number'; readonly value: number; readonly pos: number; readonly end: number }
  | { readonly kind: 'end'; readonly pos: number; readonly end: number };

function queryError(message: string): HubError {
  return new HubError('ArgumentInvalid', `query: ${message}`);
}

// The SDK keeps only the text up to the first ';' of an error (Http.parseErrorBody): never echo one.
function describeChar(ch: string): string {
  const printable = /^[\x21-\x7e]$/.test(ch) && ch !== ';';
  return printable ? `'${ch}'` : `U+${(ch.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
}

function lexString(text: string, pos: number): Token {
  let value = '';
  let i = pos + 1;
  for (;;) {
    const close = text.indexOf("'", i);
    if (close < 0) throw queryError(`unterminated string starting at position ${pos}`);
    value += text.slice(i, close);
    // A doubled quote is one quote inside the string, as in SQL.
    if (text[close + 1] !== "'") return { kind: 'string', value, pos, end: close + 1 };
    value += "'";
    i = close + 2;
  }
}

function lexMatch(re: RegExp, text: string, pos: number): string | undefined {
  re.lastIndex = pos;
  return re.exec(text)?.[0];
}

/** The token starting at or after `from` (whitespace skipped). */
function lex(text: string, from: number): Token {
  let pos = from;
  while (pos < text.length && /\s/.test(text[pos] ?? '')) pos++;
  if (pos >= text.length) return { kind: 'end', pos, end: pos };
  const ch = text[pos] ?? '';
  if (ch === "'") return lexString(text, pos);
  const number = lexMatch(NUMBER, text, pos);
  if (number !== undefined) return { kind: 'number', value: Number(number), pos, end: pos + number.length };
  const word = lexMatch(WORD, text, pos);
  if (word !== undefined) return { kind: 'word', text: word, pos, end: pos + word.length };
  const symbol = SYMBOLS.find((s) => text.startsWith(s, pos));
  if (symbol !== undefined) return { kind: 'symbol', text: symbol, pos, end: pos + symbol.length };
  const hint = ch === '"' ? ' (strings take single quotes)' : '';
  throw queryError(`unexpected character ${describeChar(ch)} at position ${pos}${hint}`);
}

/** Recursive descent over the grammar; tokens are read one at a time so errors come in text order. */
class Parser {
  private tok: Token;
  private depth = 0;

  constructor(private readonly text: string) {
    this.tok = lex(text, 0);
  }

  query(): DeviceQuery {
    this.expectWord('SELECT');
    this.projection();
    this.expectWord('FROM');
    this.source();
    const where = this.acceptWord('WHERE') ? this.or() : undefined;
    this.end(where === undefined ? 'WHERE or end of query' : 'AND, OR or end of query');
    return { where };
  }

  private advance(): Token {
    const current = this.tok;
    this.tok = lex(this.text, current.end);
    return current;
  }

  private isWord(word: string): boolean {
    return this.tok.kind === 'word' && this.tok.text.toUpperCase() === word;
  }

  private isSymbol(symbol: string): boolean {
    return this.tok.kind === 'symbol' && this.tok.text === symbol;
  }

  private acceptWord(word: string): boolean {
    if (!this.isWord(word)) return false;
    this.advance();
    return true;
  }

  private expectWord(word: string): void {
    if (!this.acceptWord(word)) throw this.expected(word);
  }

  private expectSymbol(symbol: string, what: string = symbol): void {
    if (!this.isSymbol(symbol)) throw this.expected(what);
    this.advance();
  }

  private expected(what: string): HubError {
    return queryError(`expected ${what} at position ${this.tok.pos}`);
  }

  private unsupported(what: string, pos: number): HubError {
    return queryError(`${what} (position ${pos}) is not supported by the local hub, ${SUPPORTED}`);
  }

  private projection(): void {
    const tok = this.tok;
    if (this.isSymbol('*')) {
      this.advance();
      return;
    }
    if (tok.kind !== 'word' || this.isWord('FROM')) throw this.expected('*');
    if (this.isWord('TOP')) throw this.unsupported('TOP', tok.pos);
    throw this.unsupported(`SELECT ${tok.text}`, tok.pos);
  }

  private source(): void {
    const start = this.tok.pos;
    if (!this.acceptWord('DEVICES')) throw this.expected('devices');
    if (!this.isSymbol('.')) return;
    this.advance();
    const tok = this.tok;
    const name = tok.kind === 'word' ? tok.text : '…';
    throw this.unsupported(`FROM devices.${name}`, start);
  }

  private end(what: string): void {
    const tok = this.tok;
    if (tok.kind === 'end') return;
    if (this.isWord('GROUP')) throw this.unsupported('GROUP BY', tok.pos);
    if (this.isWord('ORDER')) throw this.unsupported('ORDER BY', tok.pos);
    throw this.expected(what);
  }

  /** Runs `parse` one level deeper; `pos` is where the level opened (a '(' or NOT). */
  private nested<T>(pos: number, parse: () => T): T {
    if (++this.depth > MAX_NESTING) throw queryError(`conditions nest deeper than ${MAX_NESTING} levels at position ${pos}`);
    try {
      return parse();
    } finally {
      this.depth--;
    }
  }

  // Precedence, loosest first: OR, AND, NOT; AND and OR associate to the left.
  private or(): Condition {
    let left = this.and();
    while (this.acceptWord('OR')) left = { kind: 'or', left, right: this.and() };
    return left;
  }

  private and(): Condition {
    let left = this.unary();
    while (this.acceptWord('AND')) left = { kind: 'and', left, right: this.unary() };
    return left;
  }

  private unary(): Condition {
    if (!this.isWord('NOT')) return this.primary();
    const not = this.advance();
    return this.nested(not.pos, () => ({ kind: 'not', operand: this.unary() }));
  }

  private primary(): Condition {
    if (this.isSymbol('(')) {
      const open = this.advance();
      const inner = this.nested(open.pos, () => this.or());
      this.expectSymbol(')', 'AND, OR or )');
      return inner;
    }
    if (this.acceptWord('IS_DEFINED')) {
      this.expectSymbol('(', '( after IS_DEFINED');
      const path = this.path();
      this.expectSymbol(')', ') after the IS_DEFINED path');
      return { kind: 'defined', path };
    }
    if (this.tok.kind === 'word' && !RESERVED.has(this.tok.text.toUpperCase())) return this.comparison();
    throw this.expected("a condition (a property path, NOT, IS_DEFINED or '(')");
  }

  private comparison(): Condition {
    const path = this.path();
    const op = this.operator();
    return { kind: 'compare', path, op, value: this.literal() };
  }

  private path(): TwinPath {
    const root = this.tok;
    if (root.kind !== 'word') throw this.expected('a property path');
    this.advance();
    switch (root.text) {
      case 'deviceId':
      case 'status':
        return [root.text];
      case 'tags':
        return ['tags', ...this.segments()];
      case 'properties':
        return ['properties', this.section(), ...this.segments()];
      default:
        throw queryError(
          `unknown property '${root.text}' at position ${root.pos}: the local hub queries deviceId, status, tags.…, properties.reported.… and properties.desired.…`,
        );
    }
  }

  private section(): string {
    this.expectSymbol('.', '. after properties');
    const tok = this.tok;
    if (tok.kind !== 'word' || (tok.text !== 'reported' && tok.text !== 'desired')) throw this.expected('reported or desired');
    this.advance();
    return tok.text;
  }

  private segments(): string[] {
    const names: string[] = [];
    while (this.isSymbol('.')) {
      this.advance();
      const tok = this.tok;
      if (tok.kind !== 'word') throw this.expected('a property name after .');
      names.push(tok.text);
      this.advance();
    }
    return names;
  }

  private operator(): ComparisonOp {
    const op = this.tok.kind === 'symbol' ? OPERATORS[this.tok.text] : undefined;
    if (op === undefined) throw this.expected('a comparison operator (=, !=, <>, <, >, <=, >=)');
    this.advance();
    return op;
  }

  private literal(): Literal {
    const tok = this.tok;
    let value: Literal | undefined;
    if (tok.kind === 'string' || tok.kind === 'number') value = tok.value;
    else if (this.isWord('TRUE')) value = true;
    else if (this.isWord('FALSE')) value = false;
    else if (this.isWord('NULL')) value = null;
    if (value === undefined) throw this.expected("a value ('string', number, true, false or null)");
    this.advance();
    return value;
  }
}

/** Parses a query; anything malformed or beyond the subset is an ArgumentInvalid HubError. */
export function parseDeviceQuery(text: string): DeviceQuery {
  return new Parser(text).query();
}

/** The value at `path` in a twin document, or undefined; own keys only, never into arrays. */
export function resolvePath(doc: unknown, path: TwinPath): unknown {
  let value = doc;
  for (const name of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, name)) return undefined;
    value = (value as Record<string, unknown>)[name];
  }
  return value;
}

function scalarType(v: unknown): 'null' | 'boolean' | 'number' | 'string' | undefined {
  if (v === null) return 'null';
  const t = typeof v;
  return t === 'boolean' || t === 'number' || t === 'string' ? t : undefined;
}

/** true, false, or undefined when the comparison has no answer (missing value, mixed types). */
export function compareValues(actual: unknown, op: ComparisonOp, expected: Literal): boolean | undefined {
  const type = scalarType(actual);
  if (type === undefined || type !== scalarType(expected)) return undefined;
  if (op === '=') return actual === expected;
  if (op === '!=') return actual !== expected;
  // Ordering is defined for numbers and strings (ordinal, by UTF-16 code unit) only.
  if (type !== 'number' && type !== 'string') return undefined;
  const [a, b] = [actual as number | string, expected as number | string];
  if (op === '<') return a < b;
  if (op === '>') return a > b;
  if (op === '<=') return a <= b;
  return a >= b;
}

/**
 * Three-valued, as IoT Hub's query engine: a comparison on a missing path or across types is
 * undefined, NOT undefined stays undefined, and AND/OR only decide when one side settles it.
 * So `NOT tags.site = 'osaka'` does not match a device without tags.site, as on IoT Hub.
 */
export function evaluateCondition(cond: Condition, twin: unknown): boolean | undefined {
  switch (cond.kind) {
    case 'compare':
      return compareValues(resolvePath(twin, cond.path), cond.op, cond.value);
    case 'defined':
      return resolvePath(twin, cond.path) !== undefined;
    case 'not': {
      const v = evaluateCondition(cond.operand, twin);
      return v === undefined ? undefined : !v;
    }
    case 'and': {
      const l = evaluateCondition(cond.left, twin);
      if (l === false) return false;
      const r = evaluateCondition(cond.right, twin);
      return r === false ? false : l === true && r === true ? true : undefined;
    }
    case 'or': {
      const l = evaluateCondition(cond.left, twin);
      if (l === true) return true;
      const r = evaluateCondition(cond.right, twin);
      return r === true ? true : l === false && r === false ? false : undefined;
    }
  }
}

/** Whether a twin document (as GET /twins/{id} returns it) is in the query's result. */
export function matchesDeviceQuery(query: DeviceQuery, twin: unknown): boolean {
  return query.where === undefined || evaluateCondition(query.where, twin) === true;
}
