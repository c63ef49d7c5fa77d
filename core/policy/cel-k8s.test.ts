/**
 * The Kubernetes CEL libraries (core/policy/cel-k8s/): expected values and
 * runtime errors of their functions, library by library, and through
 * guardrail policies. Over 400 lines because it is one
 * conformance table: rows of expression and expected value, read side by side.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parse } from 'yaml';
import { compileCel, fromCelValue, toCelValue, type CelActivation } from './cel.ts';
import { PolicyError } from './errors.ts';
import { compileGuardrail, evaluateGuardrails } from './guardrail.ts';
import { parseEnvelope } from './document.ts';
import type { PolicyInput, PolicyRequest } from './match.ts';
import { parseQuantity } from './cel-k8s.ts';

const activation: CelActivation = {
  object: toCelValue({
    spec: {
      containers: [{ name: 'app', resources: { limits: { memory: '2Gi', cpu: '500m' } } }],
      xs: [3, 1, 2],
      d: 2.5,
      i: 2,
      url: 'https://example.com:8443/a b?x=1',
    },
  }),
};

/** Evaluates `expr` and returns its JSON-ish value; fails the test on a runtime error. */
function value(expr: string): unknown {
  const r = compileCel(expr).evaluate(activation);
  assert.ok(r.ok, `${expr}: ${r.ok ? '' : r.error.message}`);
  return r.value;
}

/** Asserts each [expression, expected] pair (compared after fromCelValue, so ints as numbers). */
function check(cases: readonly (readonly [string, unknown])[]): void {
  for (const [expr, want] of cases) assert.deepEqual(fromCelValue(value(expr)), want, expr);
}

/** Asserts `expr` compiles but fails at runtime with CEL_ERR_RUNTIME and a message matching `re`. */
function runtimeError(expr: string, re: RegExp): void {
  const r = compileCel(expr).evaluate(activation);
  assert.equal(r.ok, false, `${expr} should fail at runtime, got ${r.ok ? String(r.value) : ''}`);
  if (!r.ok) {
    assert.equal(r.error.code, 'CEL_ERR_RUNTIME', expr);
    assert.match(r.error.message, re, expr);
  }
}

/** Asserts `expr` is rejected at compile time. */
function compileError(expr: string): void {
  assert.throws(
    () => compileCel(expr),
    (err: unknown) => err instanceof PolicyError && err.code === 'POLICY_ERR_CEL_COMPILE',
    expr,
  );
}

test('quantity parses every suffix form and compares exactly across suffixes', () => {
  check([
    ["quantity('1Gi') == quantity('1024Mi')", true],
    ["quantity('1Gi') == quantity('1073741824')", true],
    ["quantity('1G') == quantity('1000M')", true],
    ["quantity('1Gi') == quantity('1G')", false],
    ["quantity('1Ki').asInteger()", 1024],
    ["quantity('1Mi').asInteger()", 1048576],
    ["quantity('1Ti').asInteger()", 1099511627776],
    ["quantity('1Pi').asInteger()", 1125899906842624],
    ["quantity('2Ei').asInteger() == 2305843009213693952", true],
    ["quantity('1k').asInteger()", 1000],
    ["quantity('1M').asInteger()", 1000000],
    ["quantity('1T').asInteger()", 1e12],
    ["quantity('1P').asInteger()", 1e15],
    ["quantity('1E').asInteger() == 1000000000000000000", true],
    ["quantity('1e3').asInteger()", 1000],
    ["quantity('1E3').asInteger()", 1000],
    ["quantity('1.5e3').asInteger()", 1500],
    ["quantity('1e-3') == quantity('1m')", true],
    ["quantity('1500m') == quantity('1.5')", true],
    ["quantity('1u') == quantity('1000n')", true],
    ["quantity('+5') == quantity('5')", true],
    ["quantity('-5').sign()", -1],
    ["quantity('0').sign()", 0],
    ["quantity('0.5').sign()", 1],
    ["quantity('-1.5Ki').asInteger()", -1536],
    ["quantity('.5').asApproximateFloat()", 0.5],
    ["quantity('500m').asApproximateFloat()", 0.5],
    ["quantity('1.5Gi').asApproximateFloat()", 1610612736],
    // exact where floats are not: 0.1+0.2 style sums and values past 2^53
    ["quantity('100m').add(quantity('200m')) == quantity('300m')", true],
    ["quantity('9007199254740993').compareTo(quantity('9007199254740992'))", 1],
    ["quantity('1n').isGreaterThan(quantity('0'))", true],
    ["quantity('0.1n') == quantity('1n')", true], // below 1n rounds up, as resource.Quantity does
    ["quantity('-0.1n') == quantity('-1n')", true],
    ["quantity('999Mi').isLessThan(quantity('1Gi'))", true],
    ["quantity('1025Mi').isLessThan(quantity('1Gi'))", false],
    ["quantity('1025Mi').isGreaterThan(quantity('1Gi'))", true],
    ["quantity('1Gi').isGreaterThan(quantity('1Gi'))", false],
    ["quantity('1Gi').compareTo(quantity('2Gi'))", -1],
    ["quantity('2Gi').compareTo(quantity('1Gi'))", 1],
    ["quantity('1Gi').compareTo(quantity('1024Mi'))", 0],
  ]);
  // the cap Kubernetes applies to binary-suffixed values
  assert.equal(parseQuantity('16Ei').nanos, ((1n << 63n) - 1n) * 1_000_000_000n);
  assert.equal(parseQuantity('100Ei').toString(), String((1n << 63n) - 1n));
});

test('quantity isInteger, asInteger, add, sub', () => {
  check([
    ["quantity('500m').isInteger()", false],
    ["quantity('2k').isInteger()", true],
    ["quantity('9223372036854775807').isInteger()", true],
    ["quantity('9223372036854775808').isInteger()", false],
    ["quantity('-9223372036854775808').asInteger() == -9223372036854775807 - 1", true],
    ["quantity('1').add(quantity('500m')) == quantity('1.5')", true],
    ["quantity('1').add(2).asInteger()", 3],
    ["quantity('1Ki').add(-24).asInteger()", 1000],
    ["quantity('1').sub(quantity('1500m')) == quantity('-0.5')", true],
    ["quantity('1').sub(3).asInteger()", -2],
    ["quantity('1Gi').sub(quantity('1024Mi')).sign()", 0],
    ['isQuantity("1.5Gi")', true],
    ['isQuantity("x")', false],
    ['isQuantity("1.5.3")', false],
    ['isQuantity("1K")', false],
    ['isQuantity("1Mi3")', false],
    ['isQuantity("")', false],
    ["quantity(object.spec.containers[0].resources.limits.memory) == quantity('2Gi')", true],
  ]);
});

test('quantity errors are runtime errors, never crashes', () => {
  runtimeError("quantity('1.5.3')", /quantities must match the regular expression/);
  runtimeError("quantity('')", /quantities must match/);
  runtimeError("quantity('1K')", /unable to parse quantity's suffix/);
  runtimeError("quantity('12 Mi')", /quantities must match/);
  runtimeError("quantity('500m').asInteger()", /cannot convert value to integer/);
  runtimeError("quantity('9223372036854775808').asInteger()", /cannot convert value to integer/);
  runtimeError("quantity('1e99999')", /too large/);
  runtimeError("quantity(object.spec.xs[0])", /no matching overload/);
});

test('quantity functions type-check their arguments', () => {
  compileError("quantity('1').isLessThan(1)");
  compileError("quantity('1').compareTo('1')");
  compileError("quantity('1').add(1.5)");
  compileError('quantity(1)');
  compileError('isQuantity(1)');
  compileError("quantity('1').asInteger() == 'x'");
});

test('url follows Kubernetes (Go net/url) rules', () => {
  check([
    ["url('https://example.com:80/').getHost()", 'example.com:80'],
    ["url('https://example.com:443/').getPort()", '443'], // kept, unlike WHATWG URL
    ["url('https://example.com/').getPort()", ''],
    ["url('https://Example.COM/').getHost()", 'Example.COM'],
    ["url('https://example.com/path with spaces/').getEscapedPath()", '/path%20with%20spaces/'],
    ["url('https://example.com/a%2Fb').getEscapedPath()", '/a%2Fb'],
    ["url('https://example.com/a/../b').getEscapedPath()", '/a/../b'],
    ["url('/absolute-path').getScheme()", ''],
    ["url('/absolute-path').getEscapedPath()", '/absolute-path'],
    ["url('HTTPS://example.com').getScheme()", 'https'],
    ["url('https://[::1]:80/').getHostname()", '::1'],
    ["url('https://[::1]:80/').getHost()", '[::1]:80'],
    ["url('https://[::1]:80/').getPort()", '80'],
    ["url('https://user:pw@example.com:8080/x').getHostname()", 'example.com'],
    ["url('https://example.com/?k=true&k=false').getQuery()", { k: ['true', 'false'] }],
    ["url('https://example.com/?a=b+c&d=%2F&e').getQuery()", { a: ['b c'], d: ['/'], e: [''] }],
    ["url('https://example.com/?k=true&k=false').getQuery() == {'k': ['true', 'false']}", true],
    ["url('https://example.com/').getQuery() == {}", true],
    ["url('https://example.com/p?q=1#frag').getEscapedPath()", '/p'],
    ["url('https://example.com/p?q=1#frag').getQuery()", { q: ['1'] }],
    ["url(object.spec.url).getPort()", '8443'],
    ["url(object.spec.url).getEscapedPath()", '/a%20b'],
    ["url('mailto:a@example.com').getScheme()", 'mailto'],
    ["isURL('https://example.com:80/')", true],
    ["isURL('/absolute-path')", true],
    ["isURL('../relative-path')", false],
    ["isURL('example.com')", false],
    ["isURL('')", false],
    ["isURL('https://exa mple.com/')", false],
    ["isURL('https://example.com:8x/')", false],
    ["isURL('https://[::1/')", false],
    ["isURL('https://example.com/%zz')", false],
    ["url('https://a.example/') == url('https://a.example/')", true],
  ]);
  runtimeError("url('../relative-path')", /URL parse error during conversion from string: parse "..\/relative-path": invalid URI for request/);
  runtimeError("url('https://example.com:8x/')", /invalid port ":8x" after host/);
  runtimeError("url('https://exa mple.com/')", /invalid character " " in host name/);
  runtimeError("url('')", /empty url/);
  runtimeError("url(':x')", /missing protocol scheme/);
  compileError('url(1)');
  compileError("url('/x').getPort() == 80");
  compileError("isURL(['x'])");
});

test('ip and cidr follow Kubernetes (Go net/netip) rules', () => {
  check([
    ['isIP("127.0.0.1")', true],
    ['isIP("::1")', true],
    ['isIP("1.2.3")', false],
    ['isIP("01.2.3.4")', false],
    ['isIP("256.1.1.1")', false],
    ['isIP("::ffff:1.2.3.4")', false],
    ['isIP("fe80::1%eth0")', false],
    ['isIP("1.2.3.4/32")', false],
    ["ip('127.0.0.1').family()", 4],
    ["ip('::1').family()", 6],
    ["ip('127.0.0.1').isLoopback()", true],
    ["ip('::1').isLoopback()", true],
    ["ip('10.0.0.1').isLoopback()", false],
    ["ip('0.0.0.0').isUnspecified()", true],
    ["ip('::').isUnspecified()", true],
    ["ip('1.2.3.4').isUnspecified()", false],
    ["ip('224.0.0.1').isLinkLocalMulticast()", true],
    ["ip('224.0.1.1').isLinkLocalMulticast()", false],
    ["ip('ff02::1').isLinkLocalMulticast()", true],
    ["ip('169.254.169.254').isLinkLocalUnicast()", true],
    ["ip('fe80::1').isLinkLocalUnicast()", true],
    ["ip('fec0::1').isLinkLocalUnicast()", false],
    ["ip('10.0.0.1').isGlobalUnicast()", true],
    ["ip('2001:db8::1').isGlobalUnicast()", true],
    ["ip('255.255.255.255').isGlobalUnicast()", false],
    ["ip('127.0.0.1').isGlobalUnicast()", false],
    ["ip('ff00::1').isGlobalUnicast()", false],
    ["string(ip('2001:0DB8:0000:0000:0000:0000:0000:0001'))", '2001:db8::1'],
    ["string(ip('2001:db8:0:1:0:0:0:1'))", '2001:db8:0:1::1'],
    ["string(ip('2001:db8:0:0:1:0:0:1'))", '2001:db8::1:0:0:1'],
    ["string(ip('1:0:1:1:1:1:1:1'))", '1:0:1:1:1:1:1:1'],
    ["string(ip('::1.2.3.4'))", '::102:304'],
    ["ip.isCanonical('2001:db8::1')", true],
    ["ip.isCanonical('2001:DB8::1')", false],
    ["ip.isCanonical('127.0.0.1')", true],
    ["ip('1.2.3.4') == ip('1.2.3.4')", true],
    ["ip('::1') == ip('0:0:0:0:0:0:0:1')", true],
    ["ip('1.2.3.4') == ip('1.2.3.5')", false],
    ['isCIDR("10.0.0.0/8")', true],
    ['isCIDR("10.0.0.0")', false],
    ['isCIDR("10.0.0.0/33")', false],
    ['isCIDR("10.0.0.0/08")', false],
    ['isCIDR("::ffff:1.2.3.4/128")', false],
    ["cidr('192.168.0.0/24').containsIP(ip('192.168.0.1'))", true],
    ["cidr('192.168.0.0/24').containsIP('192.168.1.1')", false],
    ["cidr('192.168.0.0/24').containsIP('::1')", false],
    ["cidr('2001:db8::/32').containsIP('2001:db8:ffff::1')", true],
    ["cidr('192.168.0.0/24').containsCIDR('192.168.0.0/25')", true],
    ["cidr('192.168.0.0/24').containsCIDR(cidr('192.168.0.0/23'))", false],
    ["cidr('0.0.0.0/0').containsCIDR('10.0.0.0/8')", true],
    ["string(cidr('192.168.0.1/24').ip())", '192.168.0.1'],
    ["string(cidr('192.168.0.1/24').masked())", '192.168.0.0/24'],
    ["string(cidr('2001:db8::1/32').masked())", '2001:db8::/32'],
    ["cidr('192.168.0.1/24').prefixLength()", 24],
    ["cidr('::/0').prefixLength()", 0],
    ["cidr('10.0.0.0/8') == cidr('10.0.0.0/8')", true],
    ["cidr('10.0.0.0/8') == cidr('10.0.0.0/9')", false],
  ]);
  runtimeError("ip('::ffff:1.2.3.4')", /IPv4-mapped IPv6 address "::ffff:1.2.3.4" is not allowed/);
  runtimeError("ip('fe80::1%eth0')", /with zone value is not allowed/);
  runtimeError("ip('1.2.3')", /parse error during conversion from string/);
  runtimeError("ip.isCanonical('x')", /parse error/);
  runtimeError("cidr('1.2.3.4')", /no '\/'/);
  runtimeError("cidr('1.2.3.4/33')", /prefix length out of range/);
  runtimeError("cidr('10.0.0.0/8').containsIP('nope')", /parse error/);
  compileError('ip(1)');
  compileError("cidr('10.0.0.0/8').containsIP(1)");
  compileError("ip('1.2.3.4').family() == '4'");
});

test('strings extension: charAt, replace, reverse, format, quote; regex find and findAll', () => {
  check([
    ["'hello'.charAt(1)", 'e'],
    ["'hello'.charAt(5)", ''],
    ["'héllo'.charAt(1)", 'é'],
    ["'aaa'.replace('a', 'b')", 'bbb'],
    ["'aaa'.replace('a', 'b', 2)", 'bba'],
    ["'aaa'.replace('a', 'b', 0)", 'aaa'],
    ["'aaa'.replace('a', 'b', -1)", 'bbb'],
    ["'ab'.replace('', '-')", '-a-b-'],
    ["'héllo'.reverse()", 'olléh'],
    ["''.reverse()", ''],
    ["'%s is %d, %.2f, %x, %X, %o, %b, 100%%'.format(['a', 3, 3.14159, 255, 255, 8, 5])", 'a is 3, 3.14, ff, FF, 10, 101, 100%'],
    ["'%s'.format([[1, 'a']])", '[1, "a"]'],
    ["'%f'.format([1.5])", '1.500000'],
    ["'%e'.format([1234.5])", '1.234500e+03'],
    ["strings.quote('a\"b\\n')", '"a\\"b\\n"'],
    ["'abc123def456'.find('[0-9]+')", '123'],
    ["'abcdef'.find('[0-9]+')", ''],
    ["'abc123def456'.findAll('[0-9]+')", ['123', '456']],
    ["'abc123def456'.findAll('[0-9]+', 1)", ['123']],
    ["'abc123def456'.findAll('[0-9]+', 0)", []],
    ["'ABC'.find('(?i)b')", 'B'],
    // built-in (cel-js) members of the strings extension remain available
    ["'hello'.indexOf('l')", 2],
    ["'hello'.lastIndexOf('l')", 3],
  ]);
  runtimeError("'hello'.charAt(6)", /index out of range: 6/);
  runtimeError("'x'.find('[')", /invalid regular expression/);
  runtimeError("'x'.findAll('(')", /invalid regular expression/);
  runtimeError("'%d'.format(['x'])", /%d requires an integer/);
  runtimeError("'%s %s'.format(['x'])", /out of range/);
  runtimeError("'%q'.format(['x'])", /unrecognized formatting clause/);
  compileError("'x'.charAt('1')");
  compileError("'x'.replace(1, 2)");
  compileError("'x'.find(1)");
});

test('lists: sum, min, max, isSorted, indexOf, lastIndexOf, slice, flatten, sort, distinct, reverse, lists.range', () => {
  check([
    ['[1, 2, 3].sum()', 6],
    ['[1.5, 2.0].sum()', 3.5],
    ['[].sum()', 0],
    ['object.spec.xs.sum()', 6],
    ["[duration('1s'), duration('500ms')].sum() == duration('1500ms')", true],
    ['[3, 1, 2].min()', 1],
    ['[3, 1, 2].max()', 3],
    ["['b', 'a', 'c'].max()", 'c'],
    ['object.spec.xs.max() > 2', true],
    ['[1, 2, 2, 3].isSorted()', true],
    ['[1, 3, 2].isSorted()', false],
    ["['a', 'b'].isSorted()", true],
    ['[].isSorted()', true],
    ['[1, 2, 3, 2].indexOf(2)', 1],
    ['[1, 2, 3, 2].lastIndexOf(2)', 3],
    ["['a', 'b'].indexOf('c')", -1],
    ['object.spec.xs.indexOf(1)', 1],
    ['[1, 2, 3, 4].slice(1, 3)', [2, 3]],
    ['[1, 2].slice(2, 2)', []],
    ['[1, [2, [3]]].flatten()', [1, 2, [3]]],
    ['[1, [2, [3]]].flatten(2)', [1, 2, 3]],
    ['[3, 1, 2].sort()', [1, 2, 3]],
    ["['b', 'a'].sort()", ['a', 'b']],
    ['object.spec.xs.sort()', [1, 2, 3]],
    ['[1, 2, 1, 2.0].distinct()', [1, 2]],
    ['[1, 2, 3].reverse()', [3, 2, 1]],
    ['lists.range(3)', [0, 1, 2]],
  ]);
  runtimeError('[].min()', /min called on empty list/);
  runtimeError('[].max()', /max called on empty list/);
  runtimeError("[1, 'a'].sum()", /no such overload/);
  runtimeError("[1, 'a'].sort()", /same type/);
  runtimeError("[1, 'a'].isSorted()", /cannot compare/);
  runtimeError('[9223372036854775807, 1].sum()', /overflow/);
  runtimeError('[1, 2].slice(2, 1)', /start index must be less than or equal to end index/);
  runtimeError('[1, 2].slice(0, 3)', /list is length 2/);
  runtimeError('[1, 2].slice(-1, 1)', /negative indexes/);
  runtimeError('[[1]].flatten(-1)', /level must be non-negative/);
  compileError("[1, 2].indexOf('a')");
  compileError("[1, 2].slice('a', 1)");
  compileError("'abc'.sum()");
});

test('sets: contains, equivalent, intersects (with CEL numeric equality)', () => {
  check([
    ['sets.contains([1, 2, 3], [1, 2])', true],
    ['sets.contains([1, 2], [3])', false],
    ['sets.contains([1, 2], [])', true],
    ['sets.contains([1], [1.0])', true],
    ['sets.equivalent([1, 2, 2], [2, 1])', true],
    ['sets.equivalent([1, 2], [1, 2, 3])', false],
    ['sets.intersects([1, 2], [2, 3])', true],
    ['sets.intersects([1], [3])', false],
    ['sets.intersects([], [])', false],
    ["sets.contains([['a'], ['b']], [['b']])", true],
  ]);
  compileError('sets.contains(1, [1])');
  compileError('sets.equivalent([1])');
});

test('math: greatest, least, rounding, abs, sign, NaN/Inf checks, bit operations', () => {
  check([
    ['math.greatest(1, 2)', 2],
    ['math.greatest(1, 2.5)', 2.5],
    ['math.greatest(7)', 7],
    ['math.greatest(1, 5, 3)', 5],
    ['math.greatest(1.0, 5.5, 3.0, 4.0)', 5.5],
    ['math.greatest([1, 2.5, -3])', 2.5],
    ['math.least([1, 2.5, -3])', -3],
    ['math.least(3, 1, 2)', 1],
    ['math.least(object.spec.d, object.spec.i)', 2],
    ['math.greatest(object.spec.xs)', 3],
    ['math.ceil(1.2)', 2],
    ['math.floor(-1.2)', -2],
    ['math.round(2.5)', 3],
    ['math.round(-2.5)', -3],
    ['math.round(1.4)', 1],
    ['math.trunc(-1.7)', -1],
    ['math.abs(-5)', 5],
    ['math.abs(-5.5)', 5.5],
    ['math.sign(-3)', -1],
    ['math.sign(0)', 0],
    ['math.sign(-3.0)', -1],
    ['math.isNaN(0.0 / 0.0)', true],
    ['math.isNaN(1.0)', false],
    ['math.isInf(1.0 / 0.0)', true],
    ['math.isInf(1.0)', false],
    ['math.isFinite(1.0)', true],
    ['math.isFinite(1.0 / 0.0)', false],
    ['math.sqrt(16)', 4],
    ['math.bitAnd(12, 10)', 8],
    ['math.bitOr(12, 10)', 14],
    ['math.bitXor(12, 10)', 6],
    ['math.bitNot(0)', -1],
    ['math.bitShiftLeft(1, 4)', 16],
    ['math.bitShiftLeft(1, 64)', 0],
    ['math.bitShiftRight(-1, 60)', 15],
    ['math.bitShiftRight(256, 4)', 16],
    ['math.bitAnd(12u, 10u) == 8u', true],
    ['math.bitNot(0u) == 18446744073709551615u', true],
  ]);
  runtimeError('math.greatest([])', /must not be empty/);
  runtimeError("math.greatest(['a', 'b'])", /must be numeric/);
  runtimeError('math.abs(-9223372036854775807 - 1)', /overflow/);
  runtimeError('math.bitShiftLeft(1, -1)', /negative offset/);
  compileError("math.greatest('a', 'b')");
  compileError('math.ceil(1)');
  compileError('math.isNaN(1)');
  compileError('math.bitAnd(1, 1.0)');
});

// --- end to end through a GuardrailPolicy -----------------------------------

const POLICY = parse(`
apiVersion: kubetrail.io/v1alpha1
kind: GuardrailPolicy
metadata:
  name: memory-limit
spec:
  action: deny
  match:
    resourceRules:
      - apiGroups: [""]
        resources: [pods]
        operations: [CREATE, UPDATE]
  validations:
    - name: max-memory
      expression: >-
        object.spec.containers.all(c,
          !has(c.resources) || !has(c.resources.limits) || !has(c.resources.limits.memory) ||
          !quantity(c.resources.limits.memory).isGreaterThan(quantity('1Gi')))
      messageExpression: >-
        'memory limit above 1Gi: ' + object.spec.containers.filter(c,
          has(c.resources) && has(c.resources.limits) && has(c.resources.limits.memory) &&
          quantity(c.resources.limits.memory).isGreaterThan(quantity('1Gi'))).map(c, c.name).join(', ')
    - name: registry-host
      expression: >-
        object.spec.containers.all(c, !has(c.env) || c.env.all(e, e.name != 'REGISTRY' ||
          url(e.value).getHostname().endsWith('.example.com')))
      message: registry must be under example.com
`);

function podInput(containers: unknown[]): PolicyInput {
  const request: PolicyRequest = {
    operation: 'CREATE',
    userInfo: { username: 'agent-ci', groups: ['agents'] },
    resource: { group: '', version: 'v1', resource: 'pods' },
    namespace: 'agents',
    name: 'p',
  };
  return { request, object: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { containers } }, oldObject: null };
}

test('a GuardrailPolicy using quantity() and url() denies a Pod whose memory limit exceeds 1Gi', () => {
  const policy = compileGuardrail(parseEnvelope(POLICY));
  const mem = (name: string, memory: string) => ({ name, image: 'nginx', resources: { limits: { memory } } });

  const small = evaluateGuardrails([policy], podInput([mem('a', '512Mi'), mem('b', '1Gi'), mem('c', '1073741824'), { name: 'd', image: 'x' }]), 'admission');
  assert.equal(small.allowed, true, small.message);
  assert.deepEqual(small.errors, []);

  const big = evaluateGuardrails([policy], podInput([mem('a', '512Mi'), mem('big', '1025Mi'), mem('huge', '2G')]), 'admission');
  assert.equal(big.allowed, false);
  assert.equal(big.policy, 'memory-limit');
  assert.equal(big.rule, 'max-memory');
  assert.equal(big.message, 'memory limit above 1Gi: big, huge');

  // 1.1G is 1100000000 bytes, more than 1Gi (1073741824): decimal vs binary suffixes compare exactly
  const decimal = evaluateGuardrails([policy], podInput([mem('a', '1.1G')]), 'admission');
  assert.equal(decimal.allowed, false);
  const decimalOk = evaluateGuardrails([policy], podInput([mem('a', '1.07G')]), 'admission');
  assert.equal(decimalOk.allowed, true);

  // an unparseable quantity is a runtime error: failurePolicy Fail denies and reports it, nothing throws
  const bad = evaluateGuardrails([policy], podInput([mem('a', '1.5.3')]), 'admission');
  assert.equal(bad.allowed, false);
  assert.equal(bad.errors.length, 1);
  assert.equal(bad.errors[0]?.rule, 'max-memory');
  assert.match(bad.errors[0]?.message ?? '', /quantities must match the regular expression/);

  const env = (value: string) => ({ name: 'a', image: 'x', env: [{ name: 'REGISTRY', value }] });
  assert.equal(evaluateGuardrails([policy], podInput([env('https://r.example.com:5000/v2')]), 'admission').allowed, true);
  const foreign = evaluateGuardrails([policy], podInput([env('https://evil.test/v2')]), 'admission');
  assert.equal(foreign.allowed, false);
  assert.equal(foreign.message, 'registry must be under example.com');
});

test('a GuardrailPolicy with a wrongly typed library call is rejected at load', () => {
  const doc = structuredClone(POLICY) as { spec: { validations: { expression: string }[] } };
  const first = doc.spec.validations[0];
  assert.ok(first);
  first.expression = "quantity(object.spec.x).isGreaterThan(1024)";
  assert.throws(
    () => compileGuardrail(parseEnvelope(doc)),
    (err: unknown) => err instanceof PolicyError && err.issues.some((i) => i.path === 'spec.validations.0.expression'),
  );
});
