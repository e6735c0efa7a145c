/*
 * A streaming reader for Azure Monitor resource-log documents, the `{"records":[ {...}, ... ]}`
 * bodies diagnostic settings write (one record's shape: cloud/hub/connection-log.ts).
 *
 * Bodies can hold hundreds of thousands of records, so the document is never held whole: a small
 * incremental scanner works on the bytes as they arrive (the structural characters are all
 * ASCII, so a multi-byte UTF-8 sequence split across chunks needs no care), finds the top-level
 * object's "records" key, skips every other top-level value, and cuts the array into elements at
 * the commas of the array's own depth. Only a complete element is decoded and JSON.parse'd;
 * memory is bounded by one chunk plus one element (at most maxRecordBytes).
 *
 * Records are yielded as they are found: a caller that must not act on a document later found
 * malformed (truncated, trailing garbage) should treat them as provisional until the generator
 * finishes without throwing.
 */

/**
 * The other direction: records as a resource-log document `{"records":[…]}`, one record a line,
 * yielded in chunks of about `chunkChars` characters, so a history of a million records is never
 * one string (the fleet emulator's output, the demo's and the tests' request bodies).
 */
export function* resourceLogDocument(records: Iterable<unknown>, chunkChars = 65_536): Generator<string> {
  let chunk = '{"records":[';
  let first = true;
  for (const record of records) {
    chunk += `${first ? '\n' : ',\n'}${JSON.stringify(record)}`;
    first = false;
    if (chunk.length >= chunkChars) {
      yield chunk;
      chunk = '';
    }
  }
  yield `${chunk}\n]}\n`;
}

export type RecordItem =
  /** One element of the records array, JSON.parse'd (not validated: any JSON value). */
  | { index: number; value: unknown }
  /** This element is not valid JSON, or is larger than maxRecordBytes; the stream continues with the next. */
  | { index: number; error: string };

export interface RecordStreamOptions {
  /** An element larger than this (in bytes) is reported as an error and skipped, not buffered. Default 64 KiB. */
  maxRecordBytes?: number;
  /** More elements than this → ResourceLogDocumentError. Default 2,000,000. */
  maxRecords?: number;
}

export const DEFAULT_MAX_RECORD_BYTES = 64 * 1024;
export const DEFAULT_MAX_RECORDS = 2_000_000;

/** The document itself is malformed (or over maxRecords); `offset` is the byte offset where that was found. */
export class ResourceLogDocumentError extends Error {
  readonly offset: number | undefined;
  constructor(message: string, offset?: number) {
    super(offset === undefined ? message : `${message} (at byte ${offset})`);
    this.name = 'ResourceLogDocumentError';
    this.offset = offset;
  }
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LBRACE = 0x7b;
const RBRACE = 0x7d;
const LBRACKET = 0x5b;
const RBRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;
const BOM = [0xef, 0xbb, 0xbf];

// Where the scanner is in the document.
const START = 0; //            before the top-level '{' (optional BOM, whitespace)
const FIRST_KEY = 1; //        after '{': a key or '}'
const KEY = 2; //              after a top-level ',': a key
const IN_KEY = 3; //           inside a top-level key string
const COLON_NEXT = 4; //       after a key: ':'
const VALUE = 5; //            after ':': a value
const SKIP = 6; //             inside a non-records string/object/array value
const PRIMITIVE = 7; //        inside a non-records number/true/false/null
const AFTER_VALUE = 8; //      after a top-level value: ',' or '}'
const ARRAY_FIRST = 9; //      after the records '[': an element or ']'
const ARRAY_NEXT = 10; //      after an element's ',': an element
const ELEMENT = 11; //         inside an element
const DONE = 12; //            after the top-level '}': whitespace only

/** A key longer than this (raw bytes, quotes included) cannot be "records", however escaped. */
const MAX_KEY_CAPTURE = 64;
const MAX_PRIMITIVE = 1024;
const PRIMITIVE_RE = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)$/;
const EMPTY = Buffer.alloc(0);

function isWhitespace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function isPrimitiveByte(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x2d || c === 0x2b || c === 0x2e;
}

function describe(c: number): string {
  return c >= 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, '0')}`;
}

class Scanner {
  private readonly maxRecordBytes: number;
  private readonly maxRecords: number;

  private buf: Buffer = EMPTY;
  /** The same bytes as a plain Uint8Array: V8 indexes those faster than a Buffer. */
  private bytes: Uint8Array = new Uint8Array(0);
  /** Next byte to look at in buf; may be past its end by one when an escape's backslash ended the last chunk. */
  private pos = 0;
  /** Absolute offset of buf[0] in the document. */
  private base = 0;
  private phase = START;
  private bom = 0;

  // String state of the slow paths (keys, skipped values).
  private inString = false;
  private escape = false;

  private key: number[] = [];
  private keyTooLong = false;
  private keyIsRecords = false;
  private sawRecords = false;

  private closers: number[] = [];
  private primitive: number[] = [];
  private primitiveOffset = 0;

  // The current element.
  private index = 0;
  private depth = 0;
  private elemInString = false;
  /** Where the element starts in buf (0 when it began in an earlier chunk). */
  private elemStart = 0;
  /** Bytes of the element in earlier chunks. */
  private elemEarlier = 0;
  /** Copies of those bytes, unless the element is already oversize. */
  private pieces: Buffer[] = [];
  private oversize = false;
  private elemOffset = 0;

  constructor(opts: RecordStreamOptions) {
    this.maxRecordBytes = opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES;
    this.maxRecords = opts.maxRecords ?? DEFAULT_MAX_RECORDS;
  }

  push(chunk: Buffer): void {
    if (this.phase === ELEMENT) this.saveElementTail();
    const carry = this.pos - this.buf.length; // 1 when a backslash ended the last chunk
    this.base += this.buf.length;
    this.buf = chunk;
    this.bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.pos = carry;
    this.elemStart = 0;
  }

  /** The next record item in the bytes pushed so far, or undefined when more input is needed. */
  next(): RecordItem | undefined {
    const buf = this.buf;
    const n = buf.length;
    while (this.pos < n) {
      switch (this.phase) {
        case ELEMENT: {
          const item = this.scanElement();
          if (item !== undefined) return item;
          break;
        }
        case ARRAY_FIRST:
        case ARRAY_NEXT: {
          const c = buf[this.pos]!;
          if (isWhitespace(c)) {
            this.pos++;
          } else if (c === RBRACKET && this.phase === ARRAY_FIRST) {
            this.pos++;
            this.phase = AFTER_VALUE;
          } else {
            if (this.index >= this.maxRecords) {
              throw new ResourceLogDocumentError(`the document has more than ${this.maxRecords} records`, this.base + this.pos);
            }
            this.phase = ELEMENT;
            this.depth = 0;
            this.elemInString = false;
            this.elemStart = this.pos;
            this.elemEarlier = 0;
            this.oversize = false;
            this.elemOffset = this.base + this.pos;
          }
          break;
        }
        default:
          this.structural();
      }
    }
    return undefined;
  }

  /** The input has ended: throws unless the document was complete. */
  end(): void {
    const total = this.base + this.buf.length;
    if (this.phase === DONE) return;
    if (this.phase === START) {
      throw new ResourceLogDocumentError(total === 0 ? 'the document is empty' : 'the document holds no JSON object', total);
    }
    let where: string;
    if (this.phase === ELEMENT) where = `inside record ${this.index}, which starts at byte ${this.elemOffset}`;
    else if (this.phase === ARRAY_FIRST || this.phase === ARRAY_NEXT) where = 'before the "records" array closes';
    else if (this.phase === IN_KEY || (this.phase === SKIP && this.inString)) where = 'inside a string';
    else where = 'before the top-level object closes';
    throw new ResourceLogDocumentError(`the document is truncated: it ends ${where}`, total);
  }

  /** The hot path: runs through an element's bytes to the ',' or ']' that ends it. */
  private scanElement(): RecordItem | undefined {
    const bytes = this.bytes;
    const n = bytes.length;
    let i = this.pos;
    let depth = this.depth;
    let inString = this.elemInString;
    for (;;) {
      if (inString) {
        // Inside a string only '"' and '\\' matter; a backslash skips the byte after it.
        for (;;) {
          if (i >= n) {
            this.pos = i;
            this.depth = depth;
            this.elemInString = true;
            return undefined;
          }
          const c = bytes[i]!;
          if (c === QUOTE) break;
          i += c === BACKSLASH ? 2 : 1;
        }
        i++;
        inString = false;
      }
      if (i >= n) {
        this.pos = i;
        this.depth = depth;
        this.elemInString = false;
        return undefined;
      }
      const c = bytes[i]!;
      if (c === QUOTE) {
        inString = true;
      } else if (c === LBRACE || c === LBRACKET) {
        depth++;
      } else if (c === RBRACE || c === RBRACKET) {
        if (depth > 0) depth--;
        else if (c === RBRACE) throw new ResourceLogDocumentError(`unbalanced '}' in record ${this.index}`, this.base + i);
        else return this.endElement(i, c);
      } else if (c === COMMA && depth === 0) {
        return this.endElement(i, c);
      }
      i++;
    }
  }

  /** ',' or ']' at the array's depth: the element ends before it. */
  private endElement(i: number, c: number): RecordItem {
    const item = this.finishElement(i);
    this.pos = i + 1;
    this.phase = c === COMMA ? ARRAY_NEXT : AFTER_VALUE;
    return item;
  }

  private finishElement(end: number): RecordItem {
    const index = this.index++;
    const size = this.elemEarlier + (end - this.elemStart);
    if (this.oversize || size > this.maxRecordBytes) {
      this.pieces = [];
      return { index, error: `record ${index} is ${size} bytes, more than the ${this.maxRecordBytes}-byte limit; skipped` };
    }
    let text: string;
    if (this.elemEarlier === 0) {
      text = this.buf.toString('utf8', this.elemStart, end);
    } else {
      this.pieces.push(this.buf.subarray(this.elemStart, end));
      text = Buffer.concat(this.pieces, size).toString('utf8');
      this.pieces = [];
    }
    try {
      return { index, value: JSON.parse(text) as unknown };
    } catch (err) {
      return { index, error: err instanceof Error ? err.message : String(err) };
    }
  }

  /** The chunk ends inside an element: keep a copy of its bytes, unless that makes it oversize. */
  private saveElementTail(): void {
    const start = this.elemStart;
    const end = this.buf.length;
    if (end <= start) return;
    this.elemEarlier += end - start;
    if (this.oversize) return;
    if (this.elemEarlier > this.maxRecordBytes) {
      this.oversize = true;
      this.pieces = [];
    } else {
      this.pieces.push(Buffer.from(this.buf.subarray(start, end)));
    }
  }

  /** One step of the slow path: everything outside the records array's elements. */
  private structural(): void {
    const buf = this.buf;
    const i = this.pos;
    const c = buf[i]!;
    const offset = this.base + i;
    this.pos = i + 1;
    switch (this.phase) {
      case START:
        if (offset === this.bom && this.bom < 3 && c === BOM[this.bom]) {
          this.bom++;
        } else if (this.bom > 0 && this.bom < 3) {
          throw new ResourceLogDocumentError('the document is not a JSON object: it starts with an incomplete byte-order mark', offset);
        } else if (c === LBRACE) {
          this.phase = FIRST_KEY;
        } else if (!isWhitespace(c)) {
          throw new ResourceLogDocumentError(`the document is not a JSON object: it starts with ${describe(c)}`, offset);
        }
        return;
      case FIRST_KEY:
      case KEY:
        if (c === QUOTE) {
          this.phase = IN_KEY;
          this.key = [c];
          this.keyTooLong = false;
          this.escape = false;
        } else if (c === RBRACE && this.phase === FIRST_KEY) {
          this.closeDocument(offset);
        } else if (!isWhitespace(c)) {
          throw new ResourceLogDocumentError(`expected a key in the top-level object, found ${describe(c)}`, offset);
        }
        return;
      case IN_KEY:
        if (!this.keyTooLong) {
          if (this.key.length >= MAX_KEY_CAPTURE) this.keyTooLong = true;
          else this.key.push(c);
        }
        if (this.escape) this.escape = false;
        else if (c === BACKSLASH) this.escape = true;
        else if (c === QUOTE) this.endKey(offset);
        return;
      case COLON_NEXT:
        if (c === COLON) this.phase = VALUE;
        else if (!isWhitespace(c)) throw new ResourceLogDocumentError(`expected ':' after a top-level key, found ${describe(c)}`, offset);
        return;
      case VALUE:
        if (isWhitespace(c)) return;
        if (this.keyIsRecords) {
          if (this.sawRecords) throw new ResourceLogDocumentError('the document has more than one "records" key', offset);
          if (c !== LBRACKET) throw new ResourceLogDocumentError(`"records" is not an array: it starts with ${describe(c)}`, offset);
          this.sawRecords = true;
          this.phase = ARRAY_FIRST;
        } else if (c === QUOTE) {
          this.phase = SKIP;
          this.inString = true;
          this.escape = false;
        } else if (c === LBRACE || c === LBRACKET) {
          this.phase = SKIP;
          this.inString = false;
          this.closers = [c === LBRACE ? RBRACE : RBRACKET];
        } else if (isPrimitiveByte(c)) {
          this.phase = PRIMITIVE;
          this.primitive = [c];
          this.primitiveOffset = offset;
        } else {
          throw new ResourceLogDocumentError(`expected a value in the top-level object, found ${describe(c)}`, offset);
        }
        return;
      case SKIP:
        this.skip(c, offset);
        return;
      case PRIMITIVE:
        if (isPrimitiveByte(c)) {
          if (this.primitive.length >= MAX_PRIMITIVE) throw new ResourceLogDocumentError('a top-level value is too long', this.primitiveOffset);
          this.primitive.push(c);
          return;
        }
        if (!PRIMITIVE_RE.test(String.fromCharCode(...this.primitive))) {
          throw new ResourceLogDocumentError('a top-level value is not valid JSON', this.primitiveOffset);
        }
        this.phase = AFTER_VALUE;
        this.pos = i; // look at this byte again as what follows the value
        return;
      case AFTER_VALUE:
        if (c === COMMA) this.phase = KEY;
        else if (c === RBRACE) this.closeDocument(offset);
        else if (!isWhitespace(c)) {
          throw new ResourceLogDocumentError(`expected ',' or '}' after a top-level value, found ${describe(c)}`, offset);
        }
        return;
      case DONE:
        if (!isWhitespace(c)) throw new ResourceLogDocumentError(`unexpected ${describe(c)} after the top-level object`, offset);
        return;
      default:
        throw new Error(`record-stream: unexpected phase ${this.phase}`);
    }
  }

  private endKey(offset: number): void {
    let key: unknown;
    if (!this.keyTooLong) {
      try {
        key = JSON.parse(Buffer.from(this.key).toString('utf8'));
      } catch (err) {
        throw new ResourceLogDocumentError(`a top-level key is not a valid JSON string: ${(err as Error).message}`, offset);
      }
    }
    this.keyIsRecords = key === 'records';
    this.key = [];
    this.phase = COLON_NEXT;
  }

  /** A byte of a skipped (non-records) string, object or array: only strings and bracket balance are checked. */
  private skip(c: number, offset: number): void {
    if (this.inString) {
      if (this.escape) this.escape = false;
      else if (c === BACKSLASH) this.escape = true;
      else if (c === QUOTE) {
        this.inString = false;
        if (this.closers.length === 0) this.phase = AFTER_VALUE;
      }
      return;
    }
    if (c === QUOTE) {
      this.inString = true;
    } else if (c === LBRACE) {
      this.closers.push(RBRACE);
    } else if (c === LBRACKET) {
      this.closers.push(RBRACKET);
    } else if (c === RBRACE || c === RBRACKET) {
      if (this.closers.pop() !== c) throw new ResourceLogDocumentError(`unbalanced ${describe(c)} in a top-level value`, offset);
      if (this.closers.length === 0) this.phase = AFTER_VALUE;
    }
  }

  private closeDocument(offset: number): void {
    if (!this.sawRecords) throw new ResourceLogDocumentError('the document has no "records" array', offset);
    this.phase = DONE;
  }
}

/**
 * The elements of a resource-log document's "records" array, read from a stream of chunks with
 * bounded memory. Throws ResourceLogDocumentError when the document itself is malformed (after
 * yielding the records before the fault) or holds more than maxRecords elements.
 */
export async function* readResourceLogRecords(
  body: AsyncIterable<Uint8Array | string> | Iterable<Uint8Array | string>,
  opts: RecordStreamOptions = {},
): AsyncGenerator<RecordItem> {
  const scanner = new Scanner(opts);
  for await (const chunk of body) {
    if (typeof chunk === 'string') scanner.push(Buffer.from(chunk, 'utf8'));
    else if (Buffer.isBuffer(chunk)) scanner.push(chunk);
    else scanner.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    for (let item = scanner.next(); item !== undefined; item = scanner.next()) yield item;
  }
  scanner.end();
}
