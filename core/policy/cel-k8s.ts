/**
 * The Kubernetes CEL libraries, for policies written against
 * ValidatingAdmissionPolicy / Kyverno, on @marcbachmann/cel-js.
 *
 * Semantics follow https://kubernetes.io/docs/reference/using-api/cel/ and
 * the k8s.io/apiserver/pkg/cel/library and cel-go ext sources they name
 * (re-implemented here, nothing copied):
 *
 * - Quantity: `quantity()`, `isQuantity()`, `sign`, `isInteger`,
 *   `asInteger`, `asApproximateFloat`, `add`, `sub`, `compareTo`,
 *   `isGreaterThan`, `isLessThan`, `==`. A value is held exactly as a bigint
 *   count of nano-units, which is what resource.Quantity keeps too (parsing
 *   rounds finer values up, away from zero, to 1n; binary-suffixed values are
 *   capped at 2^63-1) — so comparisons across suffixes are exact.
 * - URL: `url()`, `isURL()`, `getScheme`, `getHost`, `getHostname`,
 *   `getPort`, `getEscapedPath`, `getQuery`. Parsed the way Go's net/url
 *   does (ParseRequestURI to accept, then Parse), not by WHATWG `URL`, which
 *   normalises (drops default ports, lowercases hosts, resolves `..`) where
 *   Kubernetes does not.
 * - IP / CIDR: `ip()`, `isIP()`, `ip.isCanonical()`, `family`,
 *   `isUnspecified`, `isLoopback`, `isLinkLocalMulticast`,
 *   `isLinkLocalUnicast`, `isGlobalUnicast`, `cidr()`, `isCIDR()`,
 *   `containsIP`, `containsCIDR`, `ip`, `masked`, `prefixLength`,
 *   `string()`, `==`. Zones and IPv4-mapped IPv6 are rejected as Kubernetes
 *   does.
 * - Strings extension: `charAt`, `replace`, `reverse`, `format`,
 *   `strings.quote` (`indexOf`/`lastIndexOf`/`split`/`substring`/`join`/
 *   `trim`/`lowerAscii`/`upperAscii` are cel-js built-ins).
 * - Regex: `find`, `findAll`.
 * - Lists: `sum`, `min`, `max`, `isSorted`, `indexOf`, `lastIndexOf`,
 *   `slice`, `flatten`, `sort`, `distinct`, `reverse`, `lists.range`.
 * - Sets: `sets.contains`, `sets.equivalent`, `sets.intersects`.
 * - Math: `math.greatest`, `math.least`, `ceil`, `floor`, `round`, `trunc`,
 *   `abs`, `sign`, `isNaN`, `isInf`, `isFinite`, `sqrt`, `bitAnd`, `bitOr`,
 *   `bitXor`, `bitNot`, `bitShiftLeft`, `bitShiftRight`.
 *
 * Runtime failures throw an Error whose message names the function; cel-js
 * turns it into an evaluation error (CEL_ERR_RUNTIME in compileCel).
 *
 * One file per library under cel-k8s/ (quantity, url, ip, strings, lists,
 * math; values.ts has what they share). Pure: no I/O, no logging.
 */
import { isIP as netIsIP } from 'node:net';
import type { Environment } from '@marcbachmann/cel-js';
import { registerIP } from './cel-k8s/ip.ts';
import { registerLists } from './cel-k8s/lists.ts';
import { registerMath } from './cel-k8s/math.ts';
import { registerQuantity } from './cel-k8s/quantity.ts';
import { registerStrings } from './cel-k8s/strings.ts';
import { registerURL } from './cel-k8s/url.ts';
import { captureRuntimeClasses } from './cel-k8s/values.ts';

export { parseQuantity, Quantity } from './cel-k8s/quantity.ts';
export { parseKubeURL, KubeURL } from './cel-k8s/url.ts';
export { parseKubeCIDR, parseKubeIP, KubeCIDR, KubeIP } from './cel-k8s/ip.ts';

/**
 * Registers the Kubernetes CEL libraries (quantity, URL, IP/CIDR, regex,
 * lists, sets, math, strings extensions) on `env`. Call once per
 * environment, after its variables.
 */
export function registerKubernetesLibraries(env: Environment): Environment {
  captureRuntimeClasses(env);
  registerQuantity(env);
  registerURL(env);
  registerIP(env);
  registerStrings(env);
  registerLists(env);
  registerMath(env);
  return env;
}
