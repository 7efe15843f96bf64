/**
 * Lambda event filtering (an event source mapping's `FilterCriteria`) for the local Amazon MQ (RabbitMQ) trigger.
 *
 * Lambda matches each record against up to five EventBridge-syntax patterns, ORed; a record that matches none is
 * acknowledged and never reaches the function. For Amazon MQ a pattern may only look at the record's `data` key: the
 * message body, decoded as UTF-8, parsed when it is JSON and taken as a plain string otherwise.
 *
 * Semantics follow the AWS Lambda Developer Guide ("Control which events Lambda sends to your function", "Filter
 * events from an Amazon MQ event source") and the Amazon EventBridge User Guide ("Comparison operators for use in
 * event patterns", "Arrays in Amazon EventBridge event patterns", "Matching null values and empty strings");
 * where those pages are silent, the behaviour of aws/event-ruler, the open-source matcher behind EventBridge.
 */

type JsonObject = { [key: string]: JsonValue };
type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
type Leaf = null | boolean | number | string;
/** A field's value in the message, `undefined` when the field is absent. */
type Node = JsonValue | undefined;

/** Lambda's default quota of filters per event source mapping (AWS can raise it to 10 on request). */
const MAX_FILTER_PATTERNS = 5;
/** `Filter.Pattern` is a string of at most 4096 characters (Lambda API reference, "Filter"). */
const MAX_PATTERN_LENGTH = 4096;

/** A filter pattern AWS would refuse at CreateEventSourceMapping (InvalidParameterValueException); names pattern and path. */
export class FilterPatternError extends Error {
  override readonly name = 'FilterPatternError';
  /** 1-based position of the offending pattern, when the problem is in one pattern. */
  readonly pattern: number | undefined;
  /** Where in the pattern, e.g. `data.order.total[0].numeric`. */
  readonly path: string;

  constructor(problem: string, pattern?: number, path = '') {
    super(`${pattern === undefined ? 'Filter criteria' : `Filter pattern ${pattern}`}${path ? ` at ${path}` : ''}: ${problem}`);
    this.pattern = pattern;
    this.path = path;
  }
}

/** The compiled filter criteria of one trigger. */
export interface RecordFilter {
  /** How many patterns there are; 0 lets every record through. */
  readonly size: number;
  /**
   * Whether Lambda would pass this message to the function: true with no patterns or when any pattern matches.
   * Takes the raw message body (what becomes the record's base64 `data`), or its already decoded text.
   */
  matches(body: Uint8Array | string): boolean;
}

/** Where a compile step is, for error messages. */
interface Where {
  readonly pattern: number;
  readonly path: string;
}

function fail(at: Where, problem: string): never {
  throw new FilterPatternError(problem, at.pattern, at.path);
}

const field = (at: Where, key: string): Where => ({ pattern: at.pattern, path: at.path ? `${at.path}.${key}` : key });
const item = (at: Where, index: number): Where => ({ pattern: at.pattern, path: `${at.path}[${index}]` });

/** A short description of a wrong value, for error messages. */
function kindOf(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `Array.isArray` without the `any[]` it narrows to. */
const isArray = (value: unknown): value is readonly unknown[] => Array.isArray(value);

/** One element of a match list: `"Alice"`, `null`, `{ "prefix": "us-" }`, `{ "exists": false }`… */
type ValueMatcher =
  | { readonly kind: 'exists'; readonly present: boolean }
  | { readonly kind: 'leaf'; readonly test: (leaf: Leaf) => boolean };
type StringTest = (value: string) => boolean;
type NodeTest = (node: Node) => boolean;
type FieldsTest = (fields: JsonObject | undefined) => boolean;

/** A pattern's `data` rule, in the body format it was written for: an object for JSON bodies, a match list for text. */
interface CompiledPattern {
  readonly expects: 'json' | 'text';
  readonly test: NodeTest;
}

/**
 * Compiles a trigger's filter patterns, refusing what AWS refuses at create time, so that a bad pattern stops the
 * trigger before it consumes anything. Each pattern is an object, or a JSON string of one (CloudFormation and osls
 * carry `Pattern` as a string).
 */
export function compileFilterPatterns(patterns: readonly unknown[]): RecordFilter {
  if (patterns.length > MAX_FILTER_PATTERNS) {
    throw new FilterPatternError(
      `at most ${MAX_FILTER_PATTERNS} filter patterns are allowed (Lambda's default quota), got ${patterns.length}`,
    );
  }
  const compiled = patterns.map((pattern, index) => compilePattern(pattern, index + 1));
  return {
    size: compiled.length,
    matches(body) {
      if (compiled.length === 0) return true;
      const data = decodeBody(body);
      return compiled.some((pattern) => patternAccepts(pattern, data));
    },
  };
}

type DecodedBody = { readonly format: 'json' | 'text'; readonly value: JsonValue } | { readonly format: 'undecodable' };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The record's `data` as Lambda filters it: decoded as UTF-8, then a JSON document when it parses as an object or
 * array, else the plain string. (A bare JSON scalar such as `42` or `"x"` counts as plain text: AWS contrasts JSON
 * documents with plain strings and does not say more.)
 */
function decodeBody(body: Uint8Array | string): DecodedBody {
  let text: string;
  if (typeof body === 'string') text = body;
  else {
    try {
      text = utf8.decode(body);
    } catch {
      return { format: 'undecodable' };
    }
  }
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null) return { format: 'json', value: parsed as JsonValue };
  } catch {
    // not JSON: a plain string
  }
  return { format: 'text', value: text };
}

/**
 * One pattern against one body. A body that is not UTF-8, or whose format (JSON or plain string) is not the one the
 * pattern's `data` rule was written for, does not match it: Lambda's filtering guide says a record that does not
 * match every field of a filter is dropped, and that on a format mismatch "Lambda drops the message". (Its Amazon
 * MQ page says only metadata filters apply then; an Amazon MQ pattern has no metadata, and a rule on `data` that
 * cannot apply is not taken as satisfied: a JSON pattern must not let every plain-text message through.)
 */
function patternAccepts(pattern: CompiledPattern, data: DecodedBody): boolean {
  if (data.format === 'undecodable' || data.format !== pattern.expects) return false;
  return pattern.test(data.value);
}

function compilePattern(raw: unknown, index: number): CompiledPattern {
  const at: Where = { pattern: index, path: '' };
  let pattern: unknown = raw;
  if (typeof raw === 'string') {
    if (raw.length > MAX_PATTERN_LENGTH) fail(at, `is ${raw.length} characters long; the limit is ${MAX_PATTERN_LENGTH}`);
    try {
      // JSON.parse keeps the last of duplicate keys, which is what Lambda documents for duplicate keys too.
      pattern = JSON.parse(raw);
    } catch (error) {
      fail(at, `is not valid JSON (${(error as Error).message})`);
    }
  }
  if (!isObject(pattern)) fail(at, `must be a JSON object such as {"data": {...}}, got ${kindOf(pattern)}`);
  const keys = Object.keys(pattern);
  if (keys.length === 0) fail(at, 'is empty; an Amazon MQ pattern is {"data": ...}');
  for (const key of keys) {
    if (key === 'data') continue;
    const hint = key === 'Pattern' || key === 'Filters' ? ' (pass the Pattern value itself, not the Filter object)' : '';
    fail(at, `Amazon MQ event source mappings only filter on the "data" key, found "${key}"${hint}`);
  }
  const data = pattern.data;
  const dataAt = field(at, 'data');
  let compiled: CompiledPattern;
  if (isObject(data)) compiled = { expects: 'json', test: compileObject(data, dataAt, false) };
  else if (isArray(data)) compiled = { expects: 'text', test: compileMatchList(data, dataAt) };
  else fail(dataAt, `must be an object (to match JSON bodies) or an array of rules (to match plain-string bodies), got ${kindOf(data)}`);
  if (typeof raw !== 'string') {
    const length = JSON.stringify(raw).length;
    if (length > MAX_PATTERN_LENGTH) fail(at, `is ${length} characters long as JSON; the limit is ${MAX_PATTERN_LENGTH}`);
  }
  return compiled;
}

/**
 * A nested pattern object. Field order is irrelevant; every field (and every `$or`) must hold. Against an array of
 * objects, one element must satisfy the whole object (event-ruler's rulesForJSONEvent never pairs fields from
 * different elements). Against a scalar, an empty array or a missing field, every field counts as absent, so only
 * `exists: false`-style fields can hold ("Comparison operators only work on leaf nodes").
 */
function compileObject(pattern: Record<string, unknown>, at: Where, insideOr: boolean): NodeTest {
  const test = compileFields(pattern, at, insideOr);
  return (node) => objectsIn(node).some(test);
}

function compileFields(pattern: Record<string, unknown>, at: Where, insideOr: boolean): FieldsTest {
  const entries = Object.entries(pattern);
  if (entries.length === 0) fail(at, 'empty objects are not allowed');
  const conditions = entries.map(([key, value]): FieldsTest => {
    const keyAt = field(at, key);
    if (key === '$or') {
      const branches = compileOr(value, keyAt);
      return (fields) => branches.some((branch) => branch(fields));
    }
    if (insideOr && Object.hasOwn(OPERATORS, key)) {
      fail(keyAt, `"${key}" is an operator, not a field; each $or entry is a pattern object such as {"field": [...]}`);
    }
    if (isArray(value)) {
      const list = compileMatchList(value, keyAt);
      return (fields) => list(fieldValue(fields, key));
    }
    if (isObject(value)) {
      const nested = compileObject(value, keyAt, insideOr);
      return (fields) => nested(fieldValue(fields, key));
    }
    return fail(keyAt, `must be an object (nested fields) or an array of values and rules, got ${kindOf(value)}`);
  });
  return (fields) => conditions.every((condition) => condition(fields));
}

/** `$or` ORs two or more pattern objects, each matched against the same level of the message. */
function compileOr(value: unknown, at: Where): FieldsTest[] {
  if (!isArray(value)) fail(at, `must be an array of at least 2 pattern objects, got ${kindOf(value)}`);
  if (value.length < 2) fail(at, `needs at least 2 pattern objects, got ${value.length}`);
  return value.map((branch, index) => {
    if (!isObject(branch)) fail(item(at, index), `must be a pattern object, got ${kindOf(branch)}`);
    return compileFields(branch, item(at, index), true);
  });
}

function fieldValue(fields: JsonObject | undefined, key: string): Node {
  return fields !== undefined && Object.hasOwn(fields, key) ? fields[key] : undefined;
}

/** The objects a nested pattern is tried against; `undefined` stands for "no object here, every field absent". */
function objectsIn(node: Node): Array<JsonObject | undefined> {
  const found: JsonObject[] = [];
  const collect = (value: Node): void => {
    if (Array.isArray(value)) value.forEach(collect);
    else if (isObject(value)) found.push(value);
  };
  collect(node);
  return found.length > 0 ? found : [undefined];
}

/** The leaf values of a field: an array contributes each of its (nested) elements; objects are not leaves. */
function leavesOf(node: Node): Leaf[] {
  if (node === undefined || isObject(node)) return [];
  if (Array.isArray(node)) return node.flatMap(leavesOf);
  return [node];
}

/**
 * A match list (`"field": [ ... ]`): its entries are ORed, and when the field is an array any element may match
 * ("Arrays in Amazon EventBridge event patterns"). `exists` looks at whether the field has any leaf value at all.
 */
function compileMatchList(list: readonly unknown[], at: Where): NodeTest {
  if (list.length === 0) fail(at, 'empty arrays are not allowed; list at least one value or rule');
  const matchers = list.map((entry, index) => compileValue(entry, item(at, index)));
  return (node) => {
    const leaves = leavesOf(node);
    const present = leaves.length > 0;
    return matchers.some((matcher) => (matcher.kind === 'exists' ? matcher.present === present : leaves.some(matcher.test)));
  };
}

/**
 * An exact value: strings are compared character by character, `null` only matches `null` (not `""`), and a number
 * matches an equal JSON number (event-ruler adds a numeric-equality matcher next to the literal one), never a string.
 */
function compileValue(entry: unknown, at: Where): ValueMatcher {
  if (typeof entry === 'number') {
    const number = finiteNumber(entry, at);
    return leafTest((leaf) => leaf === number);
  }
  if (typeof entry === 'string' || typeof entry === 'boolean' || entry === null) return leafTest((leaf) => leaf === entry);
  if (isArray(entry)) fail(at, 'nested arrays are not allowed in a match list');
  if (!isObject(entry)) fail(at, `must be a string, number, boolean, null or a rule object, got ${kindOf(entry)}`);
  const operators = Object.keys(entry);
  const [name] = operators;
  if (name === undefined || operators.length !== 1) {
    fail(at, `a rule object holds exactly one operator, such as {"prefix": "us-"}; got ${operators.length} keys`);
  }
  if (!Object.hasOwn(OPERATORS, name)) fail(at, `unknown operator "${name}"; supported: ${Object.keys(OPERATORS).join(', ')}`);
  return OPERATORS[name]!(entry[name], field(at, name));
}

const leafTest = (test: (leaf: Leaf) => boolean): ValueMatcher => ({ kind: 'leaf', test });
/** prefix, suffix, wildcard and equals-ignore-case only ever match string values. */
const stringLeafTest = (test: StringTest): ValueMatcher => leafTest((leaf) => typeof leaf === 'string' && test(leaf));

function finiteNumber(value: unknown, at: Where): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(at, `must be a finite number, got ${kindOf(value)}`);
  return value;
}

function requireString(value: unknown, at: Where, what: string): string {
  if (typeof value !== 'string') fail(at, `${what} must be a string, got ${kindOf(value)}`);
  return value;
}

const fold = (value: string): string => value.toLowerCase();

/** String tests shared by the positive operators and by `anything-but`'s object forms. */
const STRING_TESTS = {
  prefix: (operand: string): StringTest => {
    return (value) => value.startsWith(operand);
  },
  suffix: (operand: string): StringTest => {
    return (value) => value.endsWith(operand);
  },
  'equals-ignore-case': (operand: string): StringTest => {
    const folded = fold(operand);
    return (value) => fold(value) === folded;
  },
  wildcard: (operand: string, at: Where): StringTest => compileWildcard(operand, at),
} satisfies Record<string, (operand: string, at: Where) => StringTest>;

type StringOperator = keyof typeof STRING_TESTS;
const isStringOperator = (name: string): name is StringOperator => Object.hasOwn(STRING_TESTS, name);

/** `prefix` / `suffix` take a string or `{"equals-ignore-case": string}` (EventBridge's "Begins/Ends with (ignore case)"). */
function compileAffix(kind: 'prefix' | 'suffix', operand: unknown, at: Where): ValueMatcher {
  if (isObject(operand)) {
    const keys = Object.keys(operand);
    if (keys.length !== 1 || keys[0] !== 'equals-ignore-case') {
      fail(at, `the only rule allowed inside ${kind} is {"equals-ignore-case": "..."}, got keys ${JSON.stringify(keys)}`);
    }
    const affix = requireString(operand['equals-ignore-case'], field(at, 'equals-ignore-case'), `${kind} equals-ignore-case`);
    const test = STRING_TESTS[kind](fold(affix));
    return stringLeafTest((value) => test(fold(value)));
  }
  return stringLeafTest(STRING_TESTS[kind](requireString(operand, at, kind)));
}

/**
 * `*` matches any run of characters (including none); `\*` is a literal asterisk and `\\` a literal backslash.
 * EventBridge refuses consecutive `*` and any other backslash escape.
 */
function compileWildcard(pattern: string, at: Where): StringTest {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern.charAt(i);
    if (char === '*') {
      if (pattern.charAt(i + 1) === '*') fail(at, `wildcard ${JSON.stringify(pattern)} has consecutive "*" at position ${i}`);
      source += '.*';
    } else if (char === '\\') {
      const escaped = pattern.charAt(i + 1);
      if (escaped !== '*' && escaped !== '\\') {
        fail(at, `wildcard ${JSON.stringify(pattern)} has a "\\" at position ${i} that escapes neither "*" nor "\\"`);
      }
      source += `\\${escaped}`;
      i++;
    } else source += char.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  }
  const regex = new RegExp(`^${source}$`, 's');
  return (value) => regex.test(value);
}

type NumericOperator = '=' | '<' | '<=' | '>' | '>=';
const NUMERIC_COMPARISONS: Record<NumericOperator, (value: number, bound: number) => boolean> = {
  '=': (value, bound) => value === bound,
  '<': (value, bound) => value < bound,
  '<=': (value, bound) => value <= bound,
  '>': (value, bound) => value > bound,
  '>=': (value, bound) => value >= bound,
};
const isNumericOperator = (value: unknown): value is NumericOperator =>
  typeof value === 'string' && Object.hasOwn(NUMERIC_COMPARISONS, value);

/**
 * `numeric` takes `[op, n]` or a range `[">" | ">=", low, "<" | "<=", high]` with low < high (event-ruler's rule
 * compiler refuses anything else). It only matches JSON numbers, never numeric-looking strings.
 */
function compileNumeric(operand: unknown, at: Where): ValueMatcher {
  if (!isArray(operand)) fail(at, `must be an array such as [">", 0, "<=", 5], got ${kindOf(operand)}`);
  if (operand.length !== 2 && operand.length !== 4) {
    fail(at, `must be [operator, number] or [">"|">=", low, "<"|"<=", high], got ${operand.length} elements`);
  }
  const bounds: Array<[NumericOperator, number]> = [];
  for (let i = 0; i < operand.length; i += 2) {
    const operator: unknown = operand[i];
    if (!isNumericOperator(operator)) fail(item(at, i), `must be one of =, <, <=, >, >=, got ${kindOf(operator)}`);
    bounds.push([operator, finiteNumber(operand[i + 1], item(at, i + 1))]);
  }
  const [low, high] = bounds;
  if (high !== undefined && low !== undefined) {
    if (low[0] !== '>' && low[0] !== '>=') fail(item(at, 0), `a range starts with its lower bound (">" or ">="), got "${low[0]}"`);
    if (high[0] !== '<' && high[0] !== '<=') fail(item(at, 2), `a range ends with its upper bound ("<" or "<="), got "${high[0]}"`);
    if (low[1] >= high[1]) fail(at, `the lower bound ${low[1]} must be less than the upper bound ${high[1]}`);
  }
  return leafTest((leaf) => typeof leaf === 'number' && bounds.every(([operator, bound]) => NUMERIC_COMPARISONS[operator](leaf, bound)));
}

/**
 * `anything-but` matches any value that is present and not excluded — including values of another type, so
 * `{"anything-but": "x"}` matches `5` and `null` (event-ruler). A missing field has no value and does not match.
 * Forms: a string or number; a non-empty list of only strings or only numbers; or one of
 * `{"prefix"|"suffix"|"equals-ignore-case"|"wildcard": string | string[]}`.
 */
function compileAnythingBut(operand: unknown, at: Where): ValueMatcher {
  const excluded = anythingButExclusion(operand, at);
  return leafTest((leaf) => !excluded(leaf));
}

function anythingButExclusion(operand: unknown, at: Where): (leaf: Leaf) => boolean {
  if (typeof operand === 'string') return (leaf) => leaf === operand;
  if (typeof operand === 'number') {
    const number = finiteNumber(operand, at);
    return (leaf) => leaf === number;
  }
  if (isArray(operand)) {
    if (operand.length === 0) fail(at, 'needs at least one value to exclude');
    const values = new Set<Leaf>();
    const strings = typeof operand[0] === 'string';
    for (const [index, value] of operand.entries()) {
      if (strings && typeof value === 'string') values.add(value);
      else if (!strings && typeof value === 'number') values.add(finiteNumber(value, item(at, index)));
      else fail(item(at, index), `a list must hold only strings or only numbers, got ${kindOf(value)}`);
    }
    return (leaf) => values.has(leaf);
  }
  if (isObject(operand)) {
    const keys = Object.keys(operand);
    const [name] = keys;
    if (name === undefined || keys.length !== 1 || !isStringOperator(name)) {
      fail(at, `the object form takes exactly one of ${Object.keys(STRING_TESTS).join(', ')}; got keys ${JSON.stringify(keys)}`);
    }
    const formAt = field(at, name);
    const raw = operand[name];
    const values = isArray(raw) ? raw : [raw];
    if (values.length === 0) fail(formAt, 'needs at least one value to exclude');
    const tests = values.map((value, index) => {
      const valueAt = isArray(raw) ? item(formAt, index) : formAt;
      const text = requireString(value, valueAt, `anything-but ${name}`);
      if ((name === 'prefix' || name === 'suffix') && text === '') fail(valueAt, `anything-but ${name} must not be empty`);
      return STRING_TESTS[name](text, valueAt);
    });
    return (leaf) => typeof leaf === 'string' && tests.some((test) => test(leaf));
  }
  return fail(at, `must be a string, a number, a list of either, or an object such as {"prefix": "..."}, got ${kindOf(operand)}`);
}

/** Operator name → compiler of its operand. `exists` only concerns leaf values: an object-valued field does not exist. */
const OPERATORS: Record<string, (operand: unknown, at: Where) => ValueMatcher> = {
  exists: (operand, at) => {
    if (typeof operand !== 'boolean') fail(at, `must be true or false, got ${kindOf(operand)}`);
    return { kind: 'exists', present: operand };
  },
  prefix: (operand, at) => compileAffix('prefix', operand, at),
  suffix: (operand, at) => compileAffix('suffix', operand, at),
  'equals-ignore-case': (operand, at) =>
    stringLeafTest(STRING_TESTS['equals-ignore-case'](requireString(operand, at, 'equals-ignore-case'))),
  wildcard: (operand, at) => stringLeafTest(compileWildcard(requireString(operand, at, 'wildcard'), at)),
  numeric: compileNumeric,
  'anything-but': compileAnythingBut,
};
