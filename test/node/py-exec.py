"""Exec through the gateway with the Python `kubernetes` client's stream() (WebSocket
v4.channel.k8s.io). argv: kubeconfig namespace pod stdin-text. Prints one JSON line:
{"stdout", "stderr", "returncode"}."""
import json
import sys

from kubernetes import client, config
from kubernetes.stream import stream

kubeconfig, namespace, pod, stdin_text = sys.argv[1:5]
config.load_kube_config(config_file=kubeconfig)
api = client.CoreV1Api()
resp = stream(
    api.connect_get_namespaced_pod_exec, pod, namespace,
    command=["sh", "-c", "read l; echo py:$l; echo to-stderr >&2; exit 4"],
    stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False,
)
resp.write_stdin(stdin_text)
out, err = "", ""
while resp.is_open():
    resp.update(timeout=5)
    out += resp.read_stdout() if resp.peek_stdout() else ""
    err += resp.read_stderr() if resp.peek_stderr() else ""
resp.close()
print(json.dumps({"stdout": out, "stderr": err, "returncode": resp.returncode}))
