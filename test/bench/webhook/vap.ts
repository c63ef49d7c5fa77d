/**
 * bench:webhook's in-process peer (issue 19): a ValidatingAdmissionPolicy
 * made from the starter pack's Pod Security policy (policies/
 * agents-pod-security.yaml) — the same variables and validations, CEL as the
 * API server runs it — bound to pods with the case's label and matched, as
 * the starter pack is, to the `agents` group. The lower bound of any CEL
 * guardrail: no network hop, no record, no stamp.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT } from '../../harness/harness.ts';
import { kubectl } from '../../support/env.ts';

interface Guardrail {
  spec: { variables?: { name: string; expression: string }[]; validations: { name: string; expression: string; message?: string; messageExpression?: string }[] };
}

/** The VAP and its binding as JSON documents. */
export function starterPackVap(name: string, label: string): object[] {
  const g = parse(readFileSync(path.join(REPO_ROOT, 'policies', 'agents-pod-security.yaml'), 'utf8')) as Guardrail;
  return [
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicy',
      metadata: { name },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: { resourceRules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['pods'] }] },
        matchConditions: [{ name: 'agents', expression: "'agents' in request.userInfo.groups" }],
        variables: g.spec.variables ?? [],
        // The messages only, not the messageExpressions: one uses flatten(), which kube-apiserver 1.33's CEL does not
        // declare (`undeclared reference to 'flatten'`); kubetrail's CEL has it. The expressions decide the cost.
        validations: g.spec.validations.map((v) => ({ expression: v.expression, ...(v.message ? { message: v.message } : {}) })),
      },
    },
    {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingAdmissionPolicyBinding',
      metadata: { name },
      spec: { policyName: name, validationActions: ['Deny'], matchResources: { objectSelector: { matchLabels: { 'kubetrail-test': label } } } },
    },
  ];
}

/**
 * Creates the VAP for pods labelled `label` and waits until the API server
 * enforces it (an agent's privileged pod with that label is refused by it);
 * resolves the function that removes it.
 */
export async function registerVap(env: { ADMIN_KUBECONFIG: string; AGENT_KUBECONFIG: string; NODE_IMAGE?: string }, label: string): Promise<() => Promise<void>> {
  const name = `kt-bench-vap-${label}`;
  const docs = starterPackVap(name, label);
  const applied = await kubectl(env.ADMIN_KUBECONFIG, ['apply', '-f', '-'], docs.map((d) => JSON.stringify(d)).join('\n'));
  if (applied.status !== 0) throw new Error(`the ValidatingAdmissionPolicy was refused: ${applied.stderr}`);
  const remove = async (): Promise<void> => void (await kubectl(env.ADMIN_KUBECONFIG, ['delete', 'validatingadmissionpolicybinding,validatingadmissionpolicy', name, '--ignore-not-found']));
  const probe = `kt-vap-probe-${label}`;
  for (let i = 0; ; i++) {
    const r = await kubectl(env.AGENT_KUBECONFIG, ['-n', 'agents', 'run', probe, `--image=${env.NODE_IMAGE ?? 'busybox'}`, '--privileged', `--labels=kubetrail-test=${label}`, '--restart=Never', '--dry-run=server', '--', 'true']);
    if (r.status !== 0 && r.stderr.includes(name)) return remove;
    if (i > 100) {
      await remove();
      throw new Error(`the ValidatingAdmissionPolicy is not enforced after ${i} tries: ${r.stderr || r.stdout}`);
    }
    await new Promise((res) => setTimeout(res, 200));
  }
}
