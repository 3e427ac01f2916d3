#!/usr/bin/env python3
"""deploy/'s own rules, which no general tool knows (schemas: check_schemas.py; security: checkov; style:
yamllint, hadolint; every variable named here is read: the settings tests). One summary line, or every
problem and exit 1. QFREFUND_DEPLOY_DIR: check a copy instead (as deploy/check_rules_fail.py does)."""

import glob
import os
import re
import sys
from pathlib import Path

import yaml

DEPLOY = os.environ.get("QFREFUND_DEPLOY_DIR", os.path.dirname(os.path.abspath(__file__)))
K8S = os.path.join(DEPLOY, "k8s")
DRAIN_MS, MARGIN_S = 20000, 5  # the worker's default drain; what is left after drain + preStop
REDIS_FLAGS = (
    "--appendonly yes",
    "--appendfsync (everysec|always)",
    "--maxmemory-policy noeviction",
    r"--requirepass \S",
)
errors, passed = [], 0


def need(cond: object, where: str, msg: str) -> bool:
    global passed
    passed += 1
    errors.extend([] if cond else [f"{where}: {msg}"])
    return bool(cond)


def docs(path: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(Path(path).read_text("utf-8")) if isinstance(d, dict)]


def g(d: object, *keys: str, default: object = None) -> object:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return default if d is None else d


def selects(sel: object, labels: object) -> bool:
    sel = g(sel, "matchLabels") or sel if isinstance(sel, dict) else {}
    return bool(sel) and all((labels or {}).get(k) == v for k, v in sel.items())


def dockerfile_uid() -> int | None:
    text = Path(DEPLOY, "Dockerfile").read_text("utf-8")
    for target in ("/usr/local/cargo/registry", "/src/target"):
        need(f"--mount=type=cache,target={target}" in text, "deploy/Dockerfile", f"no cache mount for {target}")
    users = [u.split(":")[0] for u in re.findall(r"^USER\s+(\S+)", text, re.M)]
    ok = need(users and users[-1].isdigit() and users[-1] != "0", "deploy/Dockerfile", "last USER: no non-root UID")
    return int(users[-1]) if ok else None


def container(ps: dict, c: dict, w: str, ctx: dict) -> None:
    image = re.sub(r"[:@].*$", "", str(c.get("image")))
    need(image in ctx["images"], w, f"image {image!r} is not rewritten by kustomization.yaml `images:`")
    env = {}  # name -> its literal value, or the env entry when it has none
    for s in c.get("envFrom") or []:
        ref = g(s, "configMapRef", "name") or g(s, "secretRef", "name")
        need(ref in ctx["cms"] or ref in ctx["secrets"], w, f"envFrom names {ref!r}, defined nowhere in deploy/k8s")
        env.update(ctx["cms"].get(ref, {}))
    env.update({e.get("name", ""): e.get("value", e) for e in c.get("env") or []})
    lit = lambda k, default="": str(env[k]) if isinstance(env.get(k), (str, int)) else default  # noqa: E731
    for v in ps.get("volumes") or []:  # Secrets come as files (QFREFUND_SECRETS_DIR)
        srcs = g(v, "projected", "sources", default=[])
        for ref in [g(v, "secret", "secretName")] + [g(x, "secret", "name") for x in srcs]:
            need(ref is None or ref in ctx["secrets"], w, f"volume {v.get('name')} mounts {ref!r}, no Secret here")
            ctx["mounted"].add(ref)
    mounts = {m.get("mountPath") for m in c.get("volumeMounts") or []} | {"/"}
    need(lit("QFREFUND_SECRETS_DIR", "/") in mounts, w, "QFREFUND_SECRETS_DIR is no volume's mountPath")
    ports = {x for p in c.get("ports") or [] for x in (p.get("name"), p.get("containerPort"))}
    sleep = int(g(c, "lifecycle", "preStop", "sleep", "seconds", default=0))
    need(sleep > 0, w, "no preStop sleep: endpoints are not removed before SIGTERM")
    role = (c.get("args") or [""])[0]
    listen = lit({"worker": "QFREFUND_METRICS_LISTEN", "serve": "QFREFUND_API_LISTEN"}.get(role, "-"))
    m = re.fullmatch(r"(?:0\.0\.0\.0|\[::\]):(\d+)", listen)
    need(m and int(m.group(1)) in ports, w, f"{role!r} must listen on 0.0.0.0:<port>, not {listen!r}")
    grace_ms = lit("QFREFUND_DRAIN_GRACE_MS", str(DRAIN_MS))
    need(grace_ms.isdigit(), w, "QFREFUND_DRAIN_GRACE_MS must be a literal number of ms here")
    drain = int(grace_ms) / 1000 if role == "worker" and grace_ms.isdigit() else 0
    tgps = ps.get("terminationGracePeriodSeconds", 30)
    need(tgps >= drain + sleep + MARGIN_S, w, f"grace {tgps} s < drain {drain:g} + preStop {sleep} + {MARGIN_S} s")
    if role == "worker":
        named = g(env.get("QFREFUND_WORKER_NAME"), "valueFrom", "fieldRef", "fieldPath")
        need(named == "metadata.name", w, "QFREFUND_WORKER_NAME must come from the pod name (fieldRef metadata.name)")


def kubernetes(uid: int | None) -> None:
    kust = docs(os.path.join(K8S, "kustomization.yaml"))[0]
    listed = {os.path.normpath(os.path.join(K8S, r)) for r in kust.get("resources") or []}
    images = {i.get("name") for i in kust.get("images") or [] if i.get("newTag") or i.get("digest")}
    need(images, "kustomization.yaml", "no `images:` entry with a newTag or digest")
    objs = []  # (object, from an *.example.yaml, where)
    for p in sorted(set(glob.glob(os.path.join(K8S, "*.yaml"))) - {os.path.join(K8S, "kustomization.yaml")}):
        ex = p.endswith(".example.yaml")
        need(ex != (p in listed), os.path.basename(p), "list it in kustomization.yaml or name it *.example.yaml")
        objs += [(d, ex, f"{os.path.basename(p)} {d.get('kind')}/{g(d, 'metadata', 'name')}") for d in docs(p)]
    spaced = kust.get("namespace") or any(g(d, "metadata", "namespace") for d, _, _ in objs)
    need(not spaced, "deploy/k8s", "a namespace is set; the manifests are namespace-agnostic")

    def of(kind: str, examples: bool = False) -> list[tuple[dict, str]]:
        return [(d, w) for d, ex, w in objs if d.get("kind") == kind and (examples or not ex)]

    need(not of("Secret"), "kustomization.yaml", "applies a Secret; keep secret.example.yaml a template")
    for d, w in of("Secret", True):
        need(not d.get("data"), w, "a Secret template uses stringData only")
        for k, v in (d.get("stringData") or {}).items():
            need("CHANGE-ME" in str(v), w, f"stringData.{k} is not a CHANGE-ME placeholder (a real secret?)")
    ctx = {"images": images, "mounted": set(), "secrets": {g(d, "metadata", "name") for d, _ in of("Secret", True)}}
    ctx["cms"] = {g(d, "metadata", "name"): d.get("data") or {} for d, _ in of("ConfigMap")}
    deps = {g(d, "metadata", "name"): (d, w) for d, w in of("Deployment")}
    pods = {n: g(d, "spec", "template", "metadata", "labels", default={}) for n, (d, _) in deps.items()}
    for d, w in deps.values():
        ps = g(d, "spec", "template", "spec", default={})
        need(uid is None or g(ps, "securityContext", "runAsUser") == uid, w, f"runAsUser is not the USER {uid}")
        for c in ps.get("containers") or []:
            container(ps, c, w, ctx)
    need(ctx["secrets"] <= ctx["mounted"], "secret.example.yaml", f"unmounted: {ctx['secrets'] - ctx['mounted']}")
    svcs = {g(d, "metadata", "name"): d for d, _ in of("Service")}
    for kind, key in (("PodDisruptionBudget", "selector"), ("NetworkPolicy", "podSelector")):
        for n in deps:
            need(sum(selects(g(d, "spec", key), pods[n]) for d, _ in of(kind)) == 1, n, f"needs exactly one {kind}")
    scraped = set()
    for d, w in of("ServiceMonitor"):
        hit = [s for s, sd in svcs.items() if selects(g(d, "spec", "selector"), g(sd, "metadata", "labels"))]
        need(hit, w, "selects no Service")
        scraped.update(hit)
    for n in deps:
        need(any(selects(g(svcs[s], "spec", "selector"), pods[n]) for s in scraped), n, "no ServiceMonitor scrapes it")
    need(not (of("ScaledObject") and of("HorizontalPodAutoscaler")), "kustomization.yaml", "two autoscalers fight")
    for d, w in of("ScaledObject"):
        need(g(d, "spec", "scaleTargetRef", "name") in deps, w, "scaleTargetRef is no Deployment here")
        need(g(d, "spec", "minReplicaCount", default=0) >= 1, w, "minReplicaCount < 1: a later refund is no backlog")
        for md in [g(t, "metadata", default={}) for t in g(d, "spec", "triggers", default=[])]:
            q = str(md.get("query", ""))
            maxed = re.search(r"\bmax\s*(\(|by\b|without\b)", q) and not re.search(r"\b(sum|avg)\b", q)
            maxed = maxed and "qfrefund_due_backlog" in q
            need(maxed, w, "the query must read max(qfrefund_due_backlog): every worker reports the whole backlog")
            need(str(md.get("serverAddress", "")).startswith(("http://", "https://")), w, "serverAddress: no URL")
            t = str(md.get("threshold", ""))
            need(re.fullmatch(r"\d+(\.\d+)?", t) and float(t) > 0, w, "threshold: no positive number (a string)")
            for job in re.findall(r'job\s*=\s*"([^"]+)"', q):
                need(job in scraped, w, f"job={job!r} names no scraped Service")


def compose() -> None:
    """${VAR:-default} read with an empty environment, as `docker compose up` on a new machine."""
    c, w = docs(os.path.join(DEPLOY, "compose.yaml"))[0], "deploy/compose.yaml"
    sub = lambda v: re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(v))  # noqa: E731
    cmd = lambda s: s["command"].split() if isinstance(s.get("command"), str) else s.get("command") or []  # noqa: E731
    services = c.get("services") or {}
    redis = [" ".join(map(sub, cmd(s))) for s in services.values() if "redis:" in str(s.get("image"))]
    if not need(len(redis) == 1, w, "expected one Redis service"):
        return
    for flag in REDIS_FLAGS:
        need(re.search(flag, redis[0]), w, f"Redis runs without {flag}")
    password, workers = (re.findall(r"--requirepass (\S+)", redis[0]) or [None])[0], []
    for name, s in services.items():
        raw = s.get("environment") or {}
        raw = dict((str(x).split("=", 1) + [""])[:2] for x in raw) if isinstance(raw, list) else raw  # KEY=VALUE
        e = {k: sub(v) for k, v in raw.items()}
        need(f":{password}@" in e.get("QFREFUND_REDIS_URL", f":{password}@"), f"{w} {name}", "not Redis' password")
        if (cmd(s) or [""])[0] == "worker":
            workers.append(e.get("QFREFUND_WORKER_NAME"))
            grace = re.fullmatch(r"(\d+)s", str(s.get("stop_grace_period", "10s")))
            drain = int(e.get("QFREFUND_DRAIN_GRACE_MS") or DRAIN_MS) / 1000
            need(grace and int(grace.group(1)) > drain, f"{w} {name}", "stop_grace_period (Ns) must exceed the drain")
    distinct = len(workers) >= 2 and None not in workers and len(set(workers)) == len(workers)
    need(distinct, w, f"need 2+ workers with distinct QFREFUND_WORKER_NAME, got {workers}")


if __name__ == "__main__":
    kubernetes(dockerfile_uid())
    compose()
    if errors:
        print(f"project rules: {len(errors)} problem(s):\n" + "\n".join(f"  - {e}" for e in errors), file=sys.stderr)
        sys.exit(1)
    print(f"{passed} project rules passed")
