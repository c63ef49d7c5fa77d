/**
 * What an API request is about, read from its method, path and query the way
 * the API server's RequestInfoFactory does
 * (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go): the Kubernetes verb,
 * the target resource, and whether it is discovery or long-running.
 * Pure: no I/O, no framework types.
 */
import type { Target } from '../core/events/model.ts';

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

function queryFlag(query: URLSearchParams | undefined, name: string): boolean {
  if (query === undefined) return false;
  const v = query.get(name);
  return v === 'true' || v === '1';
}

/** Non-empty path segments, percent-decoded (a segment that does not decode is kept as is). */
function pathSegments(pathname: string): string[] {
  const parts: string[] = [];
  for (const p of pathname.split('/')) {
    if (p === '') continue;
    if (!p.includes('%')) {
      parts.push(p);
      continue;
    }
    try {
      parts.push(decodeURIComponent(p));
    } catch {
      parts.push(p);
    }
  }
  return parts;
}

/** Parses `method` + `rawUrl` (path and query, as in `req.url`). */
export function parseRequestInfo(method: string, rawUrl: string): RequestInfo {
  const q = rawUrl.indexOf('?');
  const pathname = q === -1 ? rawUrl : rawUrl.slice(0, q);
  const query = q === -1 ? undefined : new URLSearchParams(rawUrl.slice(q + 1));
  const m = method.toUpperCase();
  const isWriteMethod = m === 'POST' || m === 'PUT' || m === 'PATCH' || m === 'DELETE';
  const parts = pathSegments(pathname);

  const nonResource = (): RequestInfo => {
    const first = parts[0];
    const isDiscovery =
      pathname === '/version' ||
      pathname === '/version/' ||
      first === 'openapi' ||
      (first === 'api' && parts.length <= 2) ||
      (first === 'apis' && parts.length <= 3);
    return { verb: m.toLowerCase(), isResourceRequest: false, target: {}, isDiscovery, isLongRunning: false, isWrite: isWriteMethod };
  };

  let rest: string[];
  const target: Target = {};
  if (parts[0] === 'api' && parts.length >= 3) {
    target.group = '';
    target.version = parts[1] as string;
    rest = parts.slice(2);
  } else if (parts[0] === 'apis' && parts.length >= 4) {
    target.group = parts[1] as string;
    target.version = parts[2] as string;
    rest = parts.slice(3);
  } else {
    return nonResource();
  }

  let verb: string;
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

  // The deprecated /watch/ prefix.
  let watchPrefix = false;
  if (rest[0] === 'watch') {
    watchPrefix = true;
    rest = rest.slice(1);
    verb = 'watch';
  }

  if (rest[0] === 'namespaces') {
    if (rest.length >= 2) {
      target.namespace = rest[1] as string;
      // /namespaces/{name}/status and /finalize address the namespace itself.
      if (rest.length >= 3 && !NAMESPACE_SUBRESOURCES_THAT_ARE_NOT_RESOURCES.has(rest[2] as string)) {
        rest = rest.slice(2);
      }
    }
  }
  if (target.namespace !== undefined && rest[0] === 'namespaces') {
    // The namespace object itself: /api/v1/namespaces/{name}[/status].
    target.resource = 'namespaces';
    target.name = target.namespace;
    delete target.namespace;
    if (rest[2] !== undefined) target.subresource = rest[2];
  } else {
    if (rest[0] !== undefined) target.resource = rest[0];
    if (rest[1] !== undefined) target.name = rest[1];
    if (rest[2] !== undefined) target.subresource = rest[2];
  }

  // Collection verbs, as the API server names them.
  if (target.name === undefined) {
    if (verb === 'get') verb = queryFlag(query, 'watch') ? 'watch' : 'list';
    else if (verb === 'delete') verb = 'deletecollection';
  } else if (verb === 'get' && queryFlag(query, 'watch')) {
    verb = 'watch';
  }
  if (watchPrefix) verb = 'watch';

  const sub = target.subresource;
  const isStream = sub !== undefined && STREAM_SUBRESOURCES.has(sub);
  const isFollow = sub === 'log' && queryFlag(query, 'follow');
  return {
    verb,
    isResourceRequest: true,
    target,
    isDiscovery: false,
    isLongRunning: verb === 'watch' || isStream || isFollow,
    isWrite: isWriteMethod || (isStream && m === 'POST'),
  };
}

/** exec, attach and portforward: the subresources the stream relay records. */
export function isStreamSubresource(info: RequestInfo): boolean {
  const s = info.target.subresource;
  return info.target.resource === 'pods' && (s === 'exec' || s === 'attach' || s === 'portforward');
}
