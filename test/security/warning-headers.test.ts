/**
 * Attack class: response header values the gateway builds from text a
 * caller controls (issue 13 item 9, "the rest of the class"). A gateway
 * guardrail's `warn` message may quote the object (messageExpression), so a
 * caller chooses its bytes: control characters and characters outside
 * latin1 must not make the header unwritable (which threw inside the
 * relay's response handler), and the warning reaches the client as UTF-8,
 * as the API server sends warnings. Real API server, real kubectl.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { compileGuardrail } from '../../core/policy/guardrail.ts';
import { parseEnvelope } from '../../core/policy/document.ts';
import { kubectl } from '../support/env.ts';
import { createNamespace, serviceAccountWithToken, startTestGateway, uniq, type TestGateway } from '../gateway/support.ts';

const ns = `warn-${uniq()}`;
let t: TestGateway;
let token: string;
let dropNamespace: () => Promise<void>;

before(async () => {
  dropNamespace = await createNamespace(ns);
  token = await serviceAccountWithToken(ns, 'warn');
  const policy = compileGuardrail(
    parseEnvelope({
      apiVersion: 'kubetrail.io/v1alpha1',
      kind: 'GuardrailPolicy',
      metadata: { name: 'quote-the-note' },
      spec: {
        stages: ['gateway'],
        action: 'warn',
        match: { resourceRules: [{ apiGroups: [''], resources: ['configmaps'], operations: ['CREATE'] }], namespaces: { include: [ns] } },
        validations: [{ name: 'note', expression: 'false', message: 'noted', messageExpression: "'note: ' + object.data.note" }],
      },
    }),
  );
  t = await startTestGateway({ guardrails: () => [policy] });
});
after(async () => {
  await t?.close();
  await dropNamespace?.();
});

const notes: { what: string; note: string; shown: RegExp }[] = [
  { what: 'characters outside latin1', note: 'Grüße, őrült, 日本, 🙂', shown: /note: Grüße, őrült, 日本, 🙂/ },
  { what: 'control characters', note: 'bell\u0007 esc\u001b[31m nul\u0000 del\u007f', shown: /note: bell  esc \[31m nul  del / },
  { what: 'CR LF and quotes', note: 'a\r\nWarning: 299 - "forged"\\', shown: /note: a  Warning: 299 - "forged"\\/ },
];
for (const n of notes) {
  test(`a warn message quoting ${n.what} reaches kubectl as a warning, and the create succeeds`, async () => {
    const name = `w-${uniq()}`;
    const body = JSON.stringify({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data: { note: n.note } });
    const r = await kubectl(t.kubeconfigFor(token, ns), ['create', '-f', '-', '-o', 'name'], body);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), `configmap/${name}`);
    assert.match(r.stderr, /Warning: /);
    assert.match(r.stderr, n.shown);
  });
}
