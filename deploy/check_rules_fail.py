#!/usr/bin/env python3
"""Shows that deploy/check_manifests.py can fail: on a copy of deploy/, each case breaks one thing the
project relies on and expects the rules to refuse it with the message given; the unbroken copy must
pass. Run by deploy/check.sh; prints one summary line, or every case that was not caught and exits 1."""

import os
import shutil
import subprocess
import sys
import tempfile

DEPLOY = os.path.dirname(os.path.abspath(__file__))
RULES = os.path.join(DEPLOY, "check_manifests.py")

# (file under deploy/, text in it, what it becomes, a part of the message expected)
CASES = [
    ("Dockerfile", "USER 10001:10001", "USER root", "last USER: no non-root UID"),
    ("Dockerfile", "--mount=type=cache,target=/src/target,", "", "no cache mount for /src/target"),
    (
        "k8s/worker-deployment.yaml",
        "terminationGracePeriodSeconds: 40",
        "terminationGracePeriodSeconds: 25",
        "grace 25 s < drain 20",
    ),
    ("k8s/configmap.yaml", 'QFREFUND_DRAIN_GRACE_MS: "20000"', 'QFREFUND_DRAIN_GRACE_MS: "40000"', "< drain 40"),
    ("k8s/api-deployment.yaml", "seconds: 5", "seconds: 0", "no preStop sleep"),
    ("k8s/worker-deployment.yaml", "runAsUser: 10001", "runAsUser: 10002", "runAsUser is not the USER 10001"),
    (
        "k8s/worker-deployment.yaml",
        "fieldPath: metadata.name",
        "fieldPath: spec.nodeName",
        "QFREFUND_WORKER_NAME must come from the pod name",
    ),
    ("k8s/worker-deployment.yaml", "value: 0.0.0.0:9464", "value: 127.0.0.1:9464", "must listen on 0.0.0.0"),
    ("k8s/api-deployment.yaml", "value: 0.0.0.0:8080", "value: 0.0.0.0:8081", "must listen on 0.0.0.0"),
    (
        "k8s/worker-deployment.yaml",
        "mountPath: /var/run/secrets/qfrefund",
        "mountPath: /secrets",
        "QFREFUND_SECRETS_DIR is no volume's mountPath",
    ),
    ("k8s/api-deployment.yaml", "name: qfrefund-secrets", "name: qfrefund-secret", "no Secret here"),
    ("k8s/worker-deployment.yaml", "image: qfrefund", "image: docker.io/qfrefund", "is not rewritten"),
    (
        "k8s/secret.example.yaml",
        'QFPAY_CLIENT_KEY: "CHANGE-ME"',
        'QFPAY_CLIENT_KEY: "0123abcd"',
        "stringData.QFPAY_CLIENT_KEY is not a CHANGE-ME placeholder",
    ),
    ("k8s/kustomization.yaml", "  - prometheusrule.yaml\n", "", "list it in kustomization.yaml"),
    ("k8s/configmap.yaml", "kind: ConfigMap", "kind: Secret", "applies a Secret"),
    (
        "k8s/poddisruptionbudgets.yaml",
        "      app.kubernetes.io/component: worker\n---",
        "      app.kubernetes.io/component: workers\n---",
        "needs exactly one PodDisruptionBudget",
    ),
    (
        "k8s/kustomization.yaml",
        "kind: Kustomization\n",
        "kind: Kustomization\nnamespace: default\n",
        "a namespace is set",
    ),
    ("k8s/keda-scaledobject.yaml", "query: max(", "query: sum(", "must read max(qfrefund_due_backlog)"),
    ("k8s/keda-scaledobject.yaml", 'job="qfrefund-worker-metrics"', 'job="qfrefund-worker"', "names no scraped"),
    ("k8s/keda-scaledobject.yaml", 'threshold: "1000"', 'threshold: "0"', "threshold: no positive number"),
    ("k8s/keda-scaledobject.yaml", "minReplicaCount: 2", "minReplicaCount: 0", "minReplicaCount < 1"),
    (
        "k8s/servicemonitors.yaml",
        "      app.kubernetes.io/component: api\n  endpoints",
        "      app.kubernetes.io/component: apis\n  endpoints",
        "no ServiceMonitor scrapes it",
    ),
    ("compose.yaml", "      - noeviction\n", "      - allkeys-lru\n", "without --maxmemory-policy noeviction"),
    ("compose.yaml", "@redis:6379", "@redis:6379", ""),  # the unbroken copy: must pass
    ("compose.yaml", "QFREFUND_WORKER_NAME: worker-2", "QFREFUND_WORKER_NAME: worker-1", "distinct"),
    ("compose.yaml", "stop_grace_period: 30s", "stop_grace_period: 15s", "must exceed the drain"),
    ("compose.yaml", "redis://:${REDIS_PASSWORD:-qfrefund-demo-password}@", "redis://:other@", "not Redis' password"),
]


def run(copy: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, QFREFUND_DEPLOY_DIR=copy)
    return subprocess.run([sys.executable, RULES], env=env, capture_output=True, text=True, check=False)


def main() -> int:
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, old, new, expect) in enumerate(CASES):
            copy = os.path.join(tmp, str(i))
            shutil.copytree(DEPLOY, copy, ignore=shutil.ignore_patterns("schemas", "grafana", "*.md"))
            path = os.path.join(copy, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if old not in text:
                missed.append(f"{name}: the case's text {old!r} is gone; update deploy/check_rules_fail.py")
                continue
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace(old, new, 1))
            r = run(copy)
            if expect and (r.returncode != 1 or expect not in r.stderr):
                missed.append(f"{name}: {old!r} -> {new!r} was not refused with {expect!r}:\n{r.stdout}{r.stderr}")
            elif not expect and r.returncode != 0:
                missed.append(f"the unbroken copy failed:\n{r.stderr}")
    if missed:
        print("project rules that cannot fail:\n" + "\n".join(f"  - {m}" for m in missed), file=sys.stderr)
        return 1
    print(f"each of {len(CASES) - 1} broken copies refused")
    return 0


if __name__ == "__main__":
    sys.exit(main())
