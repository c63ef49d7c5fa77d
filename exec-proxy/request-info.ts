/**
 * What an API request is about, read from its method, path and query the way
 * the API server's RequestInfoFactory does
 * (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): the Kubernetes verb,
 * the target resource, and whether it is discovery or long-running.
 * Pure: no I/O, no framework types.
 */
import type { Target } from '../core/events/model.ts';
import { badTarget, parseRequestTarget, type RequestTarget } from './request-target.ts';

/** The parsed request. */
export interface RequestInfo {
  /** Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection) or the lower-case HTTP method for non-resource paths. */
  verb: string;
  isResourceRequest: boolean;
  target: Target;
  /** /api, /apis, /apis/g, /apis/g/v, /api/v1, /openapi/..., /version: cheap, frequent, sampled by configuration. */
  isDiscovery: boolean;
  /** watch, follow=true logs, exec/attach/portforward/proxy: no request timeout applies. */
  isLongRunning: boolean;
  /** Writes have their (masked) body recorded and their event made durable before the response completes. */
  isWrite: boolean;
}

const NAMESPACE_SUBRESOURCES_THAT_ARE_NOT_RESOURCES = new Set(['status', 'finalize']);
const STREAM_SUBRESOURCES = new Set(['exec', 'attach', 'portforward', 'proxy']);
// requestinfo.go specialVerbs: a path prefix that is the verb; `proxy` takes no subresource.
const SPECIAL_VERBS = new Set(['watch', 'proxy']);
/** The methods the API server serves; anything else is refused before it is forwarded. */
export const SERVED_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * A boolean query parameter as the API server converts it
 * (apimachinery runtime/conversion.go Convert_Slice_string_To_bool): the
 * first value; absent, "0" or "false" in any case is false, anything else
 * (also "yes" or the empty string) is true.
 */
function queryBool(query: URLSearchParams, name: string): boolean {
  const v = query.get(name);
  return v !== null && v !== '0' && v.toLowerCase() !== 'false';
}

/** Segments as requestinfo.go splitPath makes them: slashes trimmed at both ends, then split. */
function splitPath(path: string): string[] {
  const trimmed = path.replace(/^\/+|\/+$/g, '');
  return trimmed === '' ? [] : trimmed.split('/');
}

/**
 * The object name a list or watch is narrowed to by `fieldSelector`, as the
 * API server takes it into RequestInfo.Name (fields.ParseSelector +
 * RequiresExactMatch("metadata.name"), kept only when it is a valid path
 * segment name): the first `metadata.name=` or `==` term.
 */
function fieldSelectorName(selector: string | null): string | undefined {
  if (selector === null) return undefined;
  // Terms are split on unescaped ','; values unescape \\, \, and \=.
  const terms: string[] = [];
  let cur = '';
  for (let i = 0; i < selector.length; i++) {
    const c = selector[i] as string;
    if (c === '\\' && i + 1 < selector.length) {
      cur += c + (selector[i + 1] as string);
      i++;
    } else if (c === ',') {
      terms.push(cur);
      cur = '';
    } else cur += c;
  }
  terms.push(cur);
  for (const term of terms) {
    // fields.splitTerm: the first operator wins, tried as "!=", "==", "=" at each position.
    const at = term.search(/!=|==|=/);
    if (at === -1 || term.slice(0, at) !== 'metadata.name' || term.startsWith('!=', at)) continue;
    const raw = term.slice(at + (term.startsWith('==', at) ? 2 : 1));
    // fields.UnescapeValue: only \\, \, and \= are escapes; any other makes the selector (and the name) invalid.
    let name = '';
    for (let i = 0; i < raw.length; i++) {
      const c = raw[i] as string;
      if (c !== '\\') name += c;
      else if (i + 1 < raw.length && '\\,='.includes(raw[i + 1] as string)) name += raw[++i] as string;
      else return undefined;
    }
    // apimachinery path.IsValidPathSegmentName.
    if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('%')) return undefined;
    return name;
  }
  return undefined;
}

/**
 * Reads a request: `method` and the target (a {@link RequestTarget} from
 * parseRequestTarget, or a raw `req.url`, which is parsed and may throw a
 * 400 ProxyError), as requestinfo.go NewRequestInfo does.
 */
export function parseRequestInfo(method: string, requestTarget: string | RequestTarget): RequestInfo {
  const t = typeof requestTarget === 'string' ? parseRequestTarget(requestTarget) : requestTarget;
  const { path, query } = t;
  const m = method.toUpperCase();
  const isWriteMethod = m === 'POST' || m === 'PUT' || m === 'PATCH' || m === 'DELETE';
  let parts = splitPath(path);

  const nonResource = (): RequestInfo => {
    const first = parts[0];
    const isDiscovery =
      path === '/version' ||
      path === '/version/' ||
      first === 'openapi' ||
      (first === 'api' && parts.length <= 2) ||
      (first === 'apis' && parts.length <= 3);
    return { verb: m.toLowerCase(), isResourceRequest: false, target: {}, isDiscovery, isLongRunning: false, isWrite: isWriteMethod };
  };

  if (parts.length < 3 || (parts[0] !== 'api' && parts[0] !== 'apis')) return nonResource();
  const target: Target = {};
  if (parts[0] === 'api') {
    target.group = '';
    parts = parts.slice(1);
  } else {
    if (parts.length < 4) return nonResource();
    target.group = parts[1] as string;
    parts = parts.slice(2);
  }
  target.version = parts[0] as string;
  parts = parts.slice(1);

  let verb: string;
  if (SPECIAL_VERBS.has(parts[0] as string)) {
    // The API server fails such a request ("unable to determine kind and namespace"); so does the gateway.
    if (parts.length < 2) throw badTarget(`nothing after /${parts[0] as string}/`);
    verb = parts[0] as string;
    parts = parts.slice(1);
  } else {
    switch (m) {
      case 'POST':
        verb = 'create';
        break;
      case 'GET':
      case 'HEAD':
        verb = 'get';
        break;
      case 'PUT':
        verb = 'update';
        break;
      case 'PATCH':
        verb = 'patch';
        break;
      case 'DELETE':
        verb = 'delete';
        break;
      default:
        verb = m.toLowerCase();
    }
  }

  if (parts[0] === 'namespaces' && parts.length > 1) {
    target.namespace = parts[1] as string;
    // /namespaces/{name}/status and /finalize address the namespace itself.
    if (parts.length > 2 && !NAMESPACE_SUBRESOURCES_THAT_ARE_NOT_RESOURCES.has(parts[2] as string)) parts = parts.slice(2);
  }
  if (parts.length >= 3 && verb !== 'proxy') target.subresource = parts[2] as string;
  if (parts.length >= 2) target.name = parts[1] as string;
  if (parts.length >= 1) target.resource = parts[0] as string;
  if (target.namespace !== undefined && parts[0] === 'namespaces') {
    // The namespace object itself: /api/v1/namespaces/{name}[/status]; recorded as a cluster-scoped target.
    delete target.namespace;
  }

  // Collection verbs, as the API server names them. A named GET stays a get even with ?watch=true (the API server serves the object).
  if (target.name === undefined && verb === 'get') {
    verb = queryBool(query, 'watch') ? 'watch' : 'list';
    const named = fieldSelectorName(query.get('fieldSelector'));
    if (named !== undefined) target.name = named;
  }
  if (target.name === undefined && verb === 'delete') verb = 'deletecollection';

  const sub = target.subresource;
  const isStream = sub !== undefined && STREAM_SUBRESOURCES.has(sub);
  const isFollow = sub === 'log' && queryBool(query, 'follow');
  return {
    verb,
    isResourceRequest: true,
    target,
    isDiscovery: false,
    isLongRunning: verb === 'watch' || verb === 'proxy' || isStream || isFollow,
    isWrite: isWriteMethod || (isStream && m === 'POST'),
  };
}

/** exec, attach and portforward: the subresources the stream relay records. */
export function isStreamSubresource(info: RequestInfo): boolean {
  const s = info.target.subresource;
  return info.target.resource === 'pods' && (s === 'exec' || s === 'attach' || s === 'portforward');
}
