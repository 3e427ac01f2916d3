#!/usr/bin/env python3
"""deploy/'s own rules, which no general tool knows (schemas: check_schemas.py; security: checkov,
.checkov.yaml; style: yamllint, hadolint): what kustomization.yaml applies and how it tags images; the
Secret stays a template; every QFREFUND_*/QFPAY_* name is read by the code; grace periods cover the
drain; ports, PDBs, policies, scraping and the KEDA query fit; the pods run as the Dockerfile's USER;
compose keeps Redis durable. Prints one summary line, or every problem and exits 1."""

import glob
import os
import re
import sys

import yaml

DEPLOY = os.path.dirname(os.path.abspath(__file__))
ROOT, K8S = os.path.dirname(DEPLOY), os.path.join(DEPLOY, "k8s")
DEFAULT_DRAIN_GRACE_MS = 20000  # the worker's default (docs/configuration.md)
MARGIN_S = 5  # left after the drain and the preStop sleep for the final writes
errors: list[str] = []
passed = 0


def need(cond: object, where: str, msg: str) -> bool:
    global passed
    passed += 1
    if not cond:
        errors.append(f"{where}: {msg}")
    return bool(cond)


def docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if isinstance(d, dict)]


def g(d: object, *keys: str, default: object = None) -> object:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return default if d is None else d


def selects(sel: object, labels: object) -> bool:
    sel = g(sel, "matchLabels") or sel if isinstance(sel, dict) else {}
    return bool(sel) and all((labels or {}).get(k) == v for k, v in sel.items())


KNOWN = set()
for src in glob.glob(os.path.join(ROOT, "crates", "*", "src", "**", "*.rs"), recursive=True):
    with open(src, encoding="utf-8") as f:
        KNOWN.update(re.findall(r'"((?:QFREFUND|QFPAY)_[A-Z0-9_]+)"', f.read()))


def known(where: str, name: str) -> None:
    if name.startswith(("QFREFUND_", "QFPAY_")):
        need(name in KNOWN, where, f"{name} is read nowhere in crates/*/src (a typo?)")


def dockerfile_uid() -> int | None:
    with open(os.path.join(DEPLOY, "Dockerfile"), encoding="utf-8") as f:
        text = f.read()
    for target in ("/usr/local/cargo/registry", "/src/target"):
        need(f"--mount=type=cache,target={target}" in text, "deploy/Dockerfile", f"no cache mount for {target}")
    users = [u.split(":")[0] for u in re.findall(r"^USER\s+(\S+)", text, re.M)]
    ok = need(users and users[-1].isdigit() and users[-1] != "0", "deploy/Dockerfile",
              "the last USER is no numeric non-root UID")
    return int(users[-1]) if ok else None


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
    need(not kust.get("namespace") and not any(g(d, "metadata", "namespace") for d, _, _ in objs), "deploy/k8s",
         "a namespace is set; the manifests are namespace-agnostic")

    def of(kind: str, examples: bool = False) -> list[tuple[dict, str]]:
        return [(d, w) for d, ex, w in objs if d.get("kind") == kind and (examples or not ex)]

    need(not of("Secret"), "kustomization.yaml", "applies a Secret; keep secret.example.yaml a template")
    secrets = {g(d, "metadata", "name") for d, _ in of("Secret", True)}
    for d, w in of("Secret", True):
        need(not d.get("data"), w, "a Secret template uses stringData only")
        for k, v in (d.get("stringData") or {}).items():
            need("CHANGE-ME" in str(v), w, f"stringData.{k} is not a CHANGE-ME placeholder (a real secret?)")
            known(w, k)
    cms = {g(d, "metadata", "name"): d.get("data") or {} for d, _ in of("ConfigMap")}
    deps = {g(d, "metadata", "name"): (d, w) for d, w in of("Deployment")}
    pods = {n: g(d, "spec", "template", "metadata", "labels", default={}) for n, (d, _) in deps.items()}
    ports: dict[str, set] = {}
    mounted: set[str] = set()
    for n, (d, w) in deps.items():
        ps = g(d, "spec", "template", "spec", default={})
        if uid is not None:
            need(g(ps, "securityContext", "runAsUser") == uid, w, f"runAsUser is not the Dockerfile's USER {uid}")
        for c in ps.get("containers") or []:
            image = re.sub(r"[:@].*$", "", str(c.get("image")))
            need(image in images, w, f"image {image!r} is not rewritten by kustomization.yaml `images:`")
            env = {}  # name -> value, or the env entry when it has no literal value
            for s in c.get("envFrom") or []:
                ref = g(s, "configMapRef", "name") or g(s, "secretRef", "name")
                need(ref in cms or ref in secrets, w, f"envFrom names {ref!r}, defined nowhere in deploy/k8s")
                env.update(cms.get(ref, {}))
            env.update({e.get("name", ""): e.get("value", e) for e in c.get("env") or []})
            lit = lambda k, default="": str(env[k]) if isinstance(env.get(k), (str, int)) else default  # noqa: E731
            for k in env:
                known(w, k)
            for v in ps.get("volumes") or []:  # Secrets come as files (QFREFUND_SECRETS_DIR)
                sources = g(v, "projected", "sources", default=[])
                for ref in [g(v, "secret", "secretName")] + [g(x, "secret", "name") for x in sources]:
                    need(ref is None or ref in secrets, w, f"volume {v.get('name')} mounts {ref!r}, no Secret here")
                    mounted.add(ref)
            mounts = {m.get("mountPath") for m in c.get("volumeMounts") or []}
            need(lit("QFREFUND_SECRETS_DIR", "/") in mounts | {"/"}, w, "QFREFUND_SECRETS_DIR is no volume's mountPath")
            ports[n] = {x for p in c.get("ports") or [] for x in (p.get("name"), p.get("containerPort"))}
            sleep = int(g(c, "lifecycle", "preStop", "sleep", "seconds", default=0))
            need(sleep > 0, w, "no preStop sleep: endpoints are not removed before SIGTERM")
            role = (c.get("args") or [""])[0]
            listen = lit({"worker": "QFREFUND_METRICS_LISTEN", "serve": "QFREFUND_API_LISTEN"}.get(role, "-"))
            m = re.fullmatch(r"(?:0\.0\.0\.0|\[::\]):(\d+)", listen)
            need(m and int(m.group(1)) in ports[n], w, f"{role!r} must listen on 0.0.0.0:<port>, not {listen!r}")
            grace_ms = lit("QFREFUND_DRAIN_GRACE_MS", str(DEFAULT_DRAIN_GRACE_MS))
            need(grace_ms.isdigit(), w, "QFREFUND_DRAIN_GRACE_MS must be a literal number of ms here")
            drain = int(grace_ms) / 1000 if role == "worker" and grace_ms.isdigit() else 0
            tgps = ps.get("terminationGracePeriodSeconds", 30)
            need(tgps >= drain + sleep + MARGIN_S, w,
                 f"terminationGracePeriodSeconds {tgps} < drain {drain:g} + preStop {sleep} + {MARGIN_S} s margin")
            if role == "worker":
                need(g(env.get("QFREFUND_WORKER_NAME"), "valueFrom", "fieldRef", "fieldPath") == "metadata.name", w,
                     "QFREFUND_WORKER_NAME must come from the pod name (fieldRef metadata.name)")

    for name in secrets:
        need(name in mounted, "secret.example.yaml", f"Secret {name} is mounted by no Deployment")
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
        need(d["spec"].get("minReplicaCount", 0) >= 1, w, "minReplicaCount < 1: refunds due later are no backlog")
        for t in d["spec"].get("triggers") or []:
            md = g(t, "metadata", default={})
            q = str(md.get("query", ""))
            maxed = re.search(r"\bmax\s*(\(|by\b|without\b)", q) and not re.search(r"\b(sum|avg)\b", q)
            need("qfrefund_due_backlog" in q and maxed, w,
                 "the query must read max(qfrefund_due_backlog): every worker reports the whole backlog")
            need(str(md.get("serverAddress", "")).startswith(("http://", "https://")), w, "serverAddress: no URL")
            need(re.fullmatch(r"\d+(\.\d+)?", str(md.get("threshold", ""))) and float(md["threshold"]) > 0, w,
                 "threshold must be a positive number (a string, as KEDA reads it)")
            for job in re.findall(r'job\s*=\s*"([^"]+)"', q):
                need(job in scraped, w, f"job={job!r} names no scraped Service")


def cmd(service: dict) -> list:
    """A compose service's command, given as a list or as one string."""
    c = service.get("command")
    return c.split() if isinstance(c, str) else list(c or [])


def compose() -> None:
    """Compose's ${VAR:-default} read with an empty environment, as `docker compose up` on a new machine."""
    c, w = docs(os.path.join(DEPLOY, "compose.yaml"))[0], "deploy/compose.yaml"
    sub = lambda v: re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", str(v))  # noqa: E731
    services = c.get("services") or {}
    redis = [" ".join(map(sub, cmd(s))) for s in services.values() if "redis:" in str(s.get("image"))]
    if not need(len(redis) == 1, w, "expected one Redis service"):
        return
    flags = ("--appendonly yes", "--appendfsync (everysec|always)", "--maxmemory-policy noeviction",
             r"--requirepass \S")
    for flag in flags:
        need(re.search(flag, redis[0]), w, f"Redis runs without {flag}")
    password, workers = (re.findall(r"--requirepass (\S+)", redis[0]) or [None])[0], []
    for name, s in services.items():
        raw = s.get("environment") or {}
        if isinstance(raw, list):  # the KEY=VALUE form
            raw = dict((str(x).split("=", 1) + [""])[:2] for x in raw)
        e = {k: sub(v) for k, v in raw.items()}
        for k in e:
            known(f"{w} {name}", k)
        need(f":{password}@" in e.get("QFREFUND_REDIS_URL", f":{password}@"), f"{w} {name}", "not Redis' password")
        if (cmd(s) or [""])[0] == "worker":
            workers.append(e.get("QFREFUND_WORKER_NAME"))
            grace = re.fullmatch(r"(\d+)s", str(s.get("stop_grace_period", "10s")))
            drain = int(e.get("QFREFUND_DRAIN_GRACE_MS") or DEFAULT_DRAIN_GRACE_MS) / 1000
            need(grace and int(grace.group(1)) > drain, f"{w} {name}", "stop_grace_period (Ns) must exceed the drain")
    need(len(workers) >= 2 and None not in workers and len(set(workers)) == len(workers), w,
         f"need 2+ workers with distinct QFREFUND_WORKER_NAME, got {workers}")


if __name__ == "__main__":
    kubernetes(dockerfile_uid())
    compose()
    if errors:
        print(f"project rules: {len(errors)} problem(s):", file=sys.stderr)
        print("\n".join(f"  - {e}" for e in errors), file=sys.stderr)
        sys.exit(1)
    print(f"{passed} project rules passed")
