/**
 * Filter criteria for the Amazon MQ trigger. The examples come from AWS's documentation:
 * - AWS Lambda Developer Guide, "Control which events Lambda sends to your function" (the comparison operator table,
 *   "Filtering examples", "Multi-level filtering", "Duplicate keys", the five-filter quota);
 * - AWS Lambda Developer Guide, "Filter events from an Amazon MQ event source" (the `data` key, the JSON and plain
 *   string examples, the message format table);
 * - AWS Lambda API Reference, "Filter" (Pattern length 0..4096);
 * - Amazon EventBridge User Guide, "Comparison operators for use in event patterns" (ignore-case, anything-but forms,
 *   wildcard, `$or`, exists on leaf nodes), "Arrays in Amazon EventBridge event patterns" and "Matching null values
 *   and empty strings in Amazon EventBridge event patterns".
 * Refused patterns mirror the checks of aws/event-ruler's JsonRuleCompiler (the matcher behind EventBridge).
 */

import { compileFilterPatterns, FilterPatternError } from 'serverless-offline-rabbitmq';
import { describe, expect, it } from 'vitest';

/** A message body: strings are sent as plain text, anything else as JSON. */
const body = (message: unknown): Buffer => Buffer.from(typeof message === 'string' ? message : JSON.stringify(message));
const accepts = (patterns: unknown[], message: unknown): boolean => compileFilterPatterns(patterns).matches(body(message));

interface OperatorCase {
  operator: string;
  /** The pattern's `data` rule (Amazon MQ only filters on `data`). */
  data: unknown;
  matching: unknown[];
  notMatching: unknown[];
}

const OPERATORS: OperatorCase[] = [
  // "Control which events Lambda sends to your function", comparison operators
  { operator: 'Null', data: { UserID: [null] }, matching: [{ UserID: null }], notMatching: [{ UserID: '' }, { UserID: 'u-1' }, {}] },
  { operator: 'Empty', data: { LastName: [''] }, matching: [{ LastName: '' }], notMatching: [{ LastName: null }, { LastName: 'Doe' }] },
  {
    operator: 'Equals',
    data: { Name: ['Alice'] },
    matching: [{ Name: 'Alice' }],
    notMatching: [{ Name: 'alice' }, { Name: 'Alice ' }, {}],
  },
  {
    operator: 'Equals (ignore case)',
    data: { Name: [{ 'equals-ignore-case': 'alice' }] },
    matching: [{ Name: 'Alice' }, { Name: 'ALICE' }],
    notMatching: [{ Name: 'Alicia' }, { Name: ['Bob'] }],
  },
  {
    operator: 'And',
    data: { Location: ['New York'], Day: ['Monday'] },
    matching: [{ Day: 'Monday', Location: 'New York' }],
    notMatching: [{ Location: 'New York', Day: 'Friday' }, { Location: 'New York' }],
  },
  {
    operator: 'Or',
    data: { PaymentType: ['Credit', 'Debit'] },
    matching: [{ PaymentType: 'Credit' }, { PaymentType: 'Debit' }],
    notMatching: [{ PaymentType: 'Cash' }],
  },
  {
    operator: 'Or (multiple fields, $or)',
    data: { $or: [{ Location: ['New York'] }, { Day: ['Monday'] }] },
    matching: [{ Location: 'New York', Day: 'Friday' }, { Day: 'Monday' }],
    notMatching: [{ Location: 'Boston', Day: 'Friday' }],
  },
  {
    operator: 'Not (anything-but list)',
    data: { Weather: [{ 'anything-but': ['Raining'] }] },
    matching: [{ Weather: 'Sunny' }, { Weather: null }],
    notMatching: [{ Weather: 'Raining' }, {}],
  },
  {
    operator: 'Numeric (equals)',
    data: { Price: [{ numeric: ['=', 100] }] },
    matching: ['{"Price": 100}', '{"Price": 100.0}', '{"Price": 1e2}'],
    notMatching: [{ Price: 101 }, { Price: '100' }],
  },
  {
    operator: 'Numeric (range)',
    data: { Price: [{ numeric: ['>', 10, '<=', 20] }] },
    matching: [{ Price: 20 }, { Price: 10.5 }],
    notMatching: [{ Price: 10 }, { Price: 20.5 }, { Price: '15' }],
  },
  {
    operator: 'Exists',
    data: { ProductName: [{ exists: true }] },
    matching: [{ ProductName: 'Widget' }, { ProductName: null }, { ProductName: ['a'] }],
    notMatching: [{}, { ProductName: { en: 'Widget' } }, { ProductName: [] }],
  },
  {
    operator: 'Does not exist',
    data: { ProductName: [{ exists: false }] },
    matching: [{}, { ProductName: { en: 'Widget' } }, { ProductName: [] }],
    notMatching: [{ ProductName: 'Widget' }, { ProductName: null }],
  },
  {
    operator: 'Begins with',
    data: { Region: [{ prefix: 'us-' }] },
    matching: [{ Region: 'us-east-1' }],
    notMatching: [{ Region: 'eu-west-1' }, { Region: 'US-EAST-1' }],
  },
  {
    operator: 'Ends with',
    data: { FileName: [{ suffix: '.png' }] },
    matching: [{ FileName: 'photo.png' }],
    notMatching: [{ FileName: 'photo.jpg' }, { FileName: 'photo.PNG' }],
  },
  // "Comparison operators for use in event patterns" (EventBridge)
  {
    operator: 'Begins with (ignore case)',
    data: { service: [{ prefix: { 'equals-ignore-case': 'eventb' } }] },
    matching: [{ service: 'EventBridge' }, { service: 'eventbus' }],
    notMatching: [{ service: 'Lambda' }],
  },
  {
    operator: 'Ends with (ignore case)',
    data: { service: [{ suffix: { 'equals-ignore-case': 'tBridge' } }] },
    matching: [{ service: 'EVENTBRIDGE' }],
    notMatching: [{ service: 'EventBus' }],
  },
  {
    operator: 'Anything-but (single value)',
    data: { state: [{ 'anything-but': 'initializing' }] },
    matching: [{ state: 'running' }, { state: 5 }],
    notMatching: [{ state: 'initializing' }],
  },
  {
    operator: 'Anything-but (numbers)',
    data: { 'x-limit': [{ 'anything-but': [100, 200, 300] }] },
    matching: [{ 'x-limit': 150 }, { 'x-limit': '200' }],
    notMatching: ['{"x-limit": 200}', '{"x-limit": 300.0}'],
  },
  {
    operator: 'Anything-but (begins with)',
    data: { Region: [{ 'anything-but': { prefix: 'us-' } }] },
    matching: [{ Region: 'eu-west-1' }],
    notMatching: [{ Region: 'us-east-1' }, {}],
  },
  {
    operator: 'Anything-but (ends with)',
    data: { FileName: [{ 'anything-but': { suffix: '.png' } }] },
    matching: [{ FileName: 'photo.jpg' }],
    notMatching: [{ FileName: 'photo.png' }],
  },
  {
    operator: 'Anything-but (ignore case)',
    data: { state: [{ 'anything-but': { 'equals-ignore-case': 'initializing' } }] },
    matching: [{ state: 'running' }],
    notMatching: [{ state: 'INITIALIZING' }],
  },
  {
    operator: 'Anything-but using a wildcard',
    data: { FilePath: [{ 'anything-but': { wildcard: '*/lib/*' } }] },
    matching: [{ FilePath: '/usr/bin/node' }],
    notMatching: [{ FilePath: '/usr/lib/node' }],
  },
  {
    operator: 'Wildcard',
    data: { FileName: [{ wildcard: 'dir/*.png' }] },
    matching: [{ FileName: 'dir/a.png' }, { FileName: 'dir/sub/a.png' }],
    notMatching: [{ FileName: 'other/a.png' }, { FileName: 'dir/a.jpg' }],
  },
  {
    operator: 'Wildcard (escaped *)',
    data: { Label: [{ wildcard: 'a\\*b' }] },
    matching: [{ Label: 'a*b' }],
    notMatching: [{ Label: 'axb' }],
  },
  // "Arrays in Amazon EventBridge event patterns": an array field matches when the intersection is non-empty
  {
    operator: 'Array in the event',
    data: {
      resources: ['arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f', 'arn:aws:ec2:us-east-1:111122223333:instance/i-b188560f'],
    },
    matching: [
      { resources: ['arn:aws:autoscaling:us-east-1:123456789012:group', 'arn:aws:ec2:us-east-1:123456789012:instance/i-b188560f'] },
    ],
    notMatching: [{ resources: ['arn:aws:autoscaling:us-east-1:123456789012:group'] }, { resources: [] }],
  },
  {
    operator: 'Array of objects (one element must satisfy the whole object)',
    data: { items: { sku: ['A-1'], qty: [{ numeric: ['>', 1] }] } },
    matching: [
      {
        items: [
          { sku: 'B-2', qty: 1 },
          { sku: 'A-1', qty: 3 },
        ],
      },
    ],
    notMatching: [
      {
        items: [
          { sku: 'A-1', qty: 1 },
          { sku: 'B-2', qty: 3 },
        ],
      },
    ],
  },
  // "Control which events Lambda sends to your function", filtering examples and multi-level filtering
  {
    operator: 'Filtering example: Location equals',
    data: { Location: ['Los Angeles'] },
    matching: [{ Location: 'Los Angeles', City: 'x' }],
    notMatching: [{ Location: 'Seattle' }],
  },
  {
    operator: 'Filtering example: Temperature range',
    data: { Temperature: [{ numeric: ['>', 50, '<=', 60] }] },
    matching: [{ Temperature: 55 }, { Temperature: 60 }],
    notMatching: [{ Temperature: 50 }, { Temperature: 61 }],
  },
  {
    operator: 'Multi-level filtering (nested objects)',
    data: { Keys: { Id: { N: ['101'] } } },
    matching: [{ Keys: { Id: { N: '101' } }, NewImage: {} }],
    notMatching: [{ Keys: { Id: { N: '102' } } }, { Keys: 'scalar' }, {}],
  },
  {
    operator: 'Nested pattern on a scalar field: every field absent',
    data: { detail: { state: [{ exists: false }] } },
    matching: [{ detail: 'scalar' }, {}],
    notMatching: [{ detail: { state: 'running' } }],
  },
  {
    operator: '$or inside a nested object',
    data: { detail: { $or: [{ 'c-count': [{ numeric: ['>', 0, '<=', 5] }] }, { 'd-count': [{ numeric: ['<', 10] }] }] } },
    matching: [{ detail: { 'c-count': 3 } }, { detail: { 'd-count': 1 } }],
    notMatching: [{ detail: { 'c-count': 9, 'd-count': 10 } }],
  },
];

describe('filter patterns: comparison operators (Amazon MQ data = JSON body)', () => {
  it.each(OPERATORS)('$operator', ({ data, matching, notMatching }) => {
    const filter = compileFilterPatterns([{ data }]);
    for (const message of matching) expect(filter.matches(body(message)), `should match ${JSON.stringify(message)}`).toBe(true);
    for (const message of notMatching) expect(filter.matches(body(message)), `should not match ${JSON.stringify(message)}`).toBe(false);
  });

  it('ignores field order and extra fields', () => {
    const pattern = { data: { b: ['2'], a: ['1'] } };
    expect(accepts([pattern], { a: '1', z: true, b: '2' })).toBe(true);
  });
});

describe('filter patterns: Amazon MQ specifics', () => {
  // "Filter events from an Amazon MQ event source": JSON example
  const timeoutPattern = { data: { timeout: [{ numeric: ['>', 0] }] } };
  // "Filter events from an Amazon MQ event source": plain string example
  const resultPattern = { data: [{ prefix: 'Result: ' }] };

  it('matches a JSON body against the pattern on data', () => {
    expect(accepts([timeoutPattern], { timeout: 1, IPAddress: '203.0.113.254' })).toBe(true);
    expect(accepts([timeoutPattern], { timeout: 0, IPAddress: '203.0.113.254' })).toBe(false);
  });

  it('matches a plain string body against a rule list on data', () => {
    expect(accepts([resultPattern], 'Result: ok')).toBe(true);
    expect(accepts([resultPattern], 'Error: boom')).toBe(false);
    expect(accepts([{ data: [{ 'anything-but': ['error'] }] }], 'error')).toBe(false);
    expect(accepts([{ data: [''] }], '')).toBe(true);
  });

  it('takes a bare JSON scalar body as plain text', () => {
    expect(accepts([{ data: ['42'] }], '42')).toBe(true);
    expect(accepts([{ data: [{ numeric: ['=', 42] }] }], '42')).toBe(false);
  });

  it('drops a body whose format does not fit the pattern (JSON pattern, plain body; and the reverse; not UTF-8)', () => {
    // Format table: on a mismatch Lambda drops the message; a rule on `data` that cannot apply is not satisfied.
    expect(accepts([timeoutPattern], 'Result: ok')).toBe(false);
    expect(accepts([resultPattern], { timeout: 0 })).toBe(false);
    expect(compileFilterPatterns([timeoutPattern]).matches(Buffer.from([0xff, 0xfe, 0x00]))).toBe(false);
    // With one pattern of each kind, each body finds the one written for it.
    expect(accepts([timeoutPattern, resultPattern], 'Result: ok')).toBe(true);
    expect(accepts([timeoutPattern, resultPattern], { timeout: 1 })).toBe(true);
  });

  it('ORs up to five patterns and discards a record that matches none', () => {
    const patterns = ['A', 'B', 'C', 'D', 'E'].map((kind) => ({ data: { kind: [kind] } }));
    const filter = compileFilterPatterns(patterns);
    expect(filter.size).toBe(5);
    expect(filter.matches(body({ kind: 'E' }))).toBe(true);
    expect(filter.matches(body({ kind: 'A' }))).toBe(true);
    expect(filter.matches(body({ kind: 'F' }))).toBe(false);
  });

  it('lets everything through when there are no patterns', () => {
    const filter = compileFilterPatterns([]);
    expect(filter.size).toBe(0);
    expect(filter.matches(Buffer.from([0xff]))).toBe(true);
    expect(filter.matches(body({ any: 'thing' }))).toBe(true);
  });

  it('accepts Pattern as a JSON string, keeping the last of duplicate keys', () => {
    const pattern = '{ "data": { "duplicateKey": ["hello"], "uniqueKey": ["test123"], "duplicateKey": ["world"] } }';
    expect(accepts([pattern], { duplicateKey: 'world', uniqueKey: 'test123' })).toBe(true);
    expect(accepts([pattern], { duplicateKey: 'hello', uniqueKey: 'test123' })).toBe(false);
  });

  it('takes the body as bytes or as decoded text', () => {
    const filter = compileFilterPatterns([resultPattern]);
    expect(filter.matches(new TextEncoder().encode('Result: 1'))).toBe(true);
    expect(filter.matches('Result: 1')).toBe(true);
  });
});

interface InvalidCase {
  name: string;
  patterns: unknown[];
  message: RegExp;
}

const rule = (operatorRule: unknown): unknown => ({ data: { a: [operatorRule] } });

const INVALID: InvalidCase[] = [
  {
    name: 'more than five patterns',
    patterns: Array.from({ length: 6 }, () => ({ data: { a: ['x'] } })),
    message: /at most 5 filter patterns/,
  },
  { name: 'a string that is not JSON', patterns: ['{ data: '], message: /^Filter pattern 1: is not valid JSON/ },
  { name: 'a pattern over 4096 characters', patterns: [{ data: { a: ['x'.repeat(4100)] } }], message: /limit is 4096/ },
  { name: 'an array instead of an object', patterns: [[{ data: {} }]], message: /must be a JSON object .* got an array/ },
  { name: 'an empty pattern', patterns: [{}], message: /is empty/ },
  { name: 'a key other than data', patterns: [{ body: { a: ['x'] } }], message: /only filter on the "data" key, found "body"/ },
  { name: 'a Filter object instead of its Pattern', patterns: [{ Pattern: '{}' }], message: /pass the Pattern value itself/ },
  { name: 'data as a scalar', patterns: [{ data: 'x' }], message: /at data: must be an object \(to match JSON bodies\) or an array/ },
  {
    name: 'a field with a scalar value',
    patterns: [{ data: { a: 'x' } }],
    message: /at data\.a: must be an object \(nested fields\) or an array/,
  },
  { name: 'an empty match list', patterns: [{ data: { a: [] } }], message: /at data\.a: empty arrays are not allowed/ },
  { name: 'an empty nested object', patterns: [{ data: { a: {} } }], message: /at data\.a: empty objects are not allowed/ },
  { name: 'a nested array', patterns: [{ data: { a: [['x']] } }], message: /at data\.a\[0\]: nested arrays/ },
  {
    name: 'two operators in one rule',
    patterns: [rule({ prefix: 'a', suffix: 'b' })],
    message: /holds exactly one operator, .*; got 2 keys/,
  },
  { name: 'an unknown operator', patterns: [rule({ contains: 'x' })], message: /at data\.a\[0\]: unknown operator "contains"/ },
  {
    name: 'prefix not a string',
    patterns: [rule({ prefix: 3 })],
    message: /at data\.a\[0\]\.prefix: prefix must be a string, got number 3/,
  },
  { name: 'prefix with another rule inside', patterns: [rule({ prefix: { wildcard: 'a*' } })], message: /only rule allowed inside prefix/ },
  {
    name: 'suffix equals-ignore-case not a string',
    patterns: [rule({ suffix: { 'equals-ignore-case': 5 } })],
    message: /suffix\.equals-ignore-case: suffix equals-ignore-case must be a string/,
  },
  {
    name: 'equals-ignore-case with a list',
    patterns: [rule({ 'equals-ignore-case': ['abc'] })],
    message: /must be a string, got an array/,
  },
  { name: 'wildcard with consecutive *', patterns: [rule({ wildcard: 'foo**bar' })], message: /consecutive "\*" at position 3/ },
  { name: 'wildcard with a bad escape', patterns: [rule({ wildcard: 'foo\\bar' })], message: /escapes neither/ },
  { name: 'exists not a boolean', patterns: [rule({ exists: 'yes' })], message: /at data\.a\[0\]\.exists: must be true or false/ },
  { name: 'numeric not an array', patterns: [rule({ numeric: 5 })], message: /numeric: must be an array/ },
  { name: 'numeric with a string number', patterns: [rule({ numeric: ['>', '5'] })], message: /numeric\[1\]: must be a finite number/ },
  {
    name: 'numeric with an unknown operator',
    patterns: [rule({ numeric: ['==', 5] })],
    message: /numeric\[0\]: must be one of =, <, <=, >, >=/,
  },
  { name: 'numeric range upper bound first', patterns: [rule({ numeric: ['<', 1, '>', 0] })], message: /starts with its lower bound/ },
  {
    name: 'numeric range that is empty',
    patterns: [rule({ numeric: ['>', 30, '<', 1] })],
    message: /lower bound 30 must be less than the upper bound 1/,
  },
  { name: 'numeric range of one point', patterns: [rule({ numeric: ['>=', 1, '<=', 1] })], message: /must be less than/ },
  { name: 'numeric with too many terms', patterns: [rule({ numeric: ['>', 1, '<', 30, false] })], message: /got 5 elements/ },
  { name: 'a non-finite number', patterns: [{ data: { a: [Number.POSITIVE_INFINITY] } }], message: /must be a finite number/ },
  {
    name: 'anything-but of mixed types',
    patterns: [rule({ 'anything-but': ['a', 1] })],
    message: /only strings or only numbers, got number 1/,
  },
  { name: 'anything-but of an empty list', patterns: [rule({ 'anything-but': [] })], message: /at least one value/ },
  { name: 'anything-but null', patterns: [rule({ 'anything-but': null })], message: /anything-but: must be a string, a number/ },
  {
    name: 'anything-but an empty prefix',
    patterns: [rule({ 'anything-but': { prefix: '' } })],
    message: /anything-but prefix must not be empty/,
  },
  {
    name: 'anything-but an unknown form',
    patterns: [rule({ 'anything-but': { numeric: ['>', 1] } })],
    message: /takes exactly one of prefix/,
  },
  {
    name: 'anything-but a bad wildcard in a list',
    patterns: [rule({ 'anything-but': { wildcard: ['a*', 'b**'] } })],
    message: /at data\.a\[0\]\.anything-but\.wildcard\[1\]: wildcard "b\*\*" has consecutive/,
  },
  {
    name: '$or with one object',
    patterns: [{ data: { $or: [{ a: ['x'] }] } }],
    message: /at data\.\$or: needs at least 2 pattern objects/,
  },
  { name: '$or not an array', patterns: [{ data: { $or: { a: ['x'] } } }], message: /must be an array of at least 2 pattern objects/ },
  {
    name: '$or holding a non-object',
    patterns: [{ data: { $or: [{ a: ['x'] }, 'b'] } }],
    message: /at data\.\$or\[1\]: must be a pattern object/,
  },
  {
    name: '$or holding an operator instead of a field',
    patterns: [{ data: { $or: [{ prefix: 'a' }, { b: ['x'] }] } }],
    message: /at data\.\$or\[0\]\.prefix: "prefix" is an operator, not a field/,
  },
  {
    name: 'a problem in the second pattern',
    patterns: [{ data: { a: ['x'] } }, { data: { a: [] } }],
    message: /^Filter pattern 2 at data\.a:/,
  },
];

describe('filter patterns: refused at compile time', () => {
  it.each(INVALID)('refuses $name', ({ patterns, message }) => {
    expect(() => compileFilterPatterns(patterns)).toThrow(FilterPatternError);
    expect(() => compileFilterPatterns(patterns)).toThrow(message);
  });

  it('names the pattern and the path on the error', () => {
    try {
      compileFilterPatterns([{ data: { a: ['x'] } }, { data: { order: { total: [{ numeric: ['>', 'x'] }] } } }]);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(FilterPatternError);
      expect(error).toMatchObject({ name: 'FilterPatternError', pattern: 2, path: 'data.order.total[0].numeric[1]' });
    }
  });
});
