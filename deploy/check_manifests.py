#!/usr/bin/env python3
"""The Python half of deploy/check.sh: schema and cross-checks of everything under deploy/.

- Kubernetes: every core object in deploy/k8s is validated strictly (unknown fields fail) against
  the schemas kubernetes-validate bundles, for each version given with --k8s; CRD objects (KEDA
  ScaledObject, ServiceMonitor, PodMonitor), which have no bundled schema, get their required
  fields checked here. Then the objects are checked against each other: images, envFrom
  references, termination grace versus drain grace, selectors of Services, PDBs, NetworkPolicies,
  ServiceMonitors and autoscalers, named ports, security settings, env variable names.
- deploy/compose.yaml: a `docker compose config`-like sanity check.
- deploy/Dockerfile: what hadolint cannot know (the BuildKit cache mounts, the
  UID the manifests expect, the ports).

Run through deploy/check.sh (which provides the pinned tools); prints one summary line, or every
problem found and exits 1.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

import yaml
from kubernetes_validate import utils as kv

DEPLOY = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DEPLOY)
K8S = os.path.join(DEPLOY, "k8s")

# Objects whose schema kubernetes-validate does not bundle: checked by check_crd() instead.
CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
# The worker's default (docs/configuration.md, crates/worker/src/config.rs).
DEFAULT_DRAIN_GRACE_MS = 20000
# Seconds a pod must have left after the drain grace and the preStop sleep (final writes, exit).
GRACE_MARGIN_S = 5

errors: list[str] = []
counts = {"schema": 0, "crd": 0, "cross": 0}


def fail(where: str, msg: str) -> None:
    errors.append(f"{where}: {msg}")


def check(cond: bool, where: str, msg: str) -> bool:
    """One cross-check: counted, and recorded as a failure when `cond` is false."""
    counts["cross"] += 1
    if not cond:
        fail(where, msg)
    return cond


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def load_yaml_docs(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        try:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            fail(rel(path), f"not valid YAML: {e}")
            return []
    for d in docs:
        if not isinstance(d, dict):
            fail(rel(path), "a document is not a mapping")
    return [d for d in docs if isinstance(d, dict)]


def name_of(obj: dict) -> str:
    return f"{obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"


def selects(selector: dict | None, labels: dict | None) -> bool:
    """matchLabels semantics (matchExpressions are refused by check_selector)."""
    sel = selector or {}
    labels = labels or {}
    return all(labels.get(k) == v for k, v in sel.items())


def check_selector(where: str, selector: dict | None) -> dict:
    """The matchLabels of a LabelSelector; an empty or expression-based one is refused."""
    selector = selector or {}
    if selector.get("matchExpressions"):
        fail(where, "matchExpressions are not supported by deploy/check_manifests.py; use matchLabels")
    ml = selector.get("matchLabels") or {}
    check(bool(ml), where, "empty selector (would select every pod in the namespace)")
    return ml


# ---------------------------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------------------------


class Obj:
    def __init__(self, doc: dict, path: str):
        self.doc = doc
        self.path = path
        self.kind = doc.get("kind")
        self.api = doc.get("apiVersion")
        self.name = (doc.get("metadata") or {}).get("name")

    @property
    def where(self) -> str:
        return f"{rel(self.path)} {self.kind}/{self.name}"


def schema_validate(o: Obj, versions: list[str]) -> None:
    for v in versions:
        try:
            kv.validate(o.doc, v, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(top level)"
            fail(o.where, f"Kubernetes {v} schema (strict): {path}: {e.message}")
        except kv.SchemaNotFoundError:
            fail(o.where, f"Kubernetes {v} has no {o.api} {o.kind} (a removed or misspelt API?)")
        except kv.VersionNotSupportedError:
            fail(o.where, f"kubernetes-validate has no schemas for Kubernetes {v}")
    counts["schema"] += 1


def check_crd(o: Obj, deployments: dict, services: dict, scrape_jobs: set) -> None:
    d = o.doc
    counts["crd"] += 1
    spec = d.get("spec")
    if not o.name:
        fail(o.where, "metadata.name is missing")
    if not isinstance(spec, dict):
        fail(o.where, "spec is missing")
        return
    if o.kind == "ScaledObject":
        known = {"scaleTargetRef", "minReplicaCount", "maxReplicaCount", "pollingInterval", "cooldownPeriod",
                 "idleReplicaCount", "initialCooldownPeriod", "fallback", "advanced", "triggers"}
        for k in spec:
            check(k in known, o.where, f"spec.{k}: not a ScaledObject field (KEDA 2.x)")
        target = spec.get("scaleTargetRef") or {}
        tname = target.get("name")
        check(target.get("kind", "Deployment") == "Deployment" and tname in deployments, o.where,
              f"spec.scaleTargetRef.name {tname!r} is not a Deployment defined in deploy/k8s "
              f"(Deployments: {sorted(deployments)})")
        mn, mx = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        check(isinstance(mn, int) and isinstance(mx, int) and 1 <= mn <= mx, o.where,
              f"minReplicaCount {mn!r} / maxReplicaCount {mx!r}: need 1 <= min <= max (refunds scheduled for "
              "later are not in the backlog, so zero workers would never wake up for them)")
        fb = spec.get("fallback")
        if fb is not None:
            check(isinstance(fb.get("failureThreshold"), int) and isinstance(fb.get("replicas"), int), o.where,
                  "spec.fallback needs integer failureThreshold and replicas")
        triggers = spec.get("triggers")
        if not check(isinstance(triggers, list) and len(triggers) > 0, o.where, "spec.triggers is empty"):
            return
        t = triggers[0]
        check(t.get("type") == "prometheus", o.where, f"triggers[0].type is {t.get('type')!r}, expected prometheus")
        md = t.get("metadata") or {}
        for k, v in md.items():
            check(isinstance(v, str), o.where, f"triggers[0].metadata.{k} must be a string (KEDA reads strings)")
        for k in ("serverAddress", "query", "threshold"):
            check(bool(md.get(k)), o.where, f"triggers[0].metadata.{k} is missing")
        check(str(md.get("serverAddress", "")).startswith(("http://", "https://")), o.where,
              "triggers[0].metadata.serverAddress is not an http(s) URL")
        query = str(md.get("query", ""))
        check("qfrefund_due_backlog" in query, o.where, "the query does not read qfrefund_due_backlog")
        check("sum(" not in query.replace(" ", ""), o.where,
              "the query sums qfrefund_due_backlog: every worker reports the same value, use max()")
        for job in re.findall(r'job\s*=\s*"([^"]+)"', query):
            check(job in scrape_jobs, o.where,
                  f"the query selects job={job!r}, but no ServiceMonitor scrapes a Service of that name "
                  f"(scraped: {sorted(scrape_jobs)})")
        try:
            ok = float(md.get("threshold", "x")) > 0
        except ValueError:
            ok = False
        check(ok, o.where, f"triggers[0].metadata.threshold {md.get('threshold')!r} is not a positive number")
    elif o.kind == "ServiceMonitor":
        sel = check_selector(o.where + " spec.selector", spec.get("selector"))
        matched = [s for s in services.values() if sel and selects(sel, (s.doc.get("metadata") or {}).get("labels"))]
        if not check(bool(matched), o.where,
                     f"spec.selector {sel} matches the labels of no Service in deploy/k8s"):
            return
        endpoints = spec.get("endpoints") or []
        check(bool(endpoints), o.where, "spec.endpoints is empty")
        for i, ep in enumerate(endpoints):
            port = ep.get("port")
            check(isinstance(port, str) and port != "", o.where, f"endpoints[{i}].port must name a Service port")
            for s in matched:
                names = [p.get("name") for p in (s.doc["spec"].get("ports") or [])]
                check(port in names, o.where, f"endpoints[{i}].port {port!r} is not a port of {s.where} ({names})")
            check(str(ep.get("path", "/metrics")).startswith("/"), o.where, f"endpoints[{i}].path must start with /")
    elif o.kind == "PrometheusRule":
        # The expressions and the alerts' behaviour: deploy/check_monitoring.py (promtool).
        groups = spec.get("groups")
        if check(isinstance(groups, list) and bool(groups), o.where, "spec.groups is empty"):
            for g in groups:
                check(bool(g.get("name")) and bool(g.get("rules")), o.where, f"group {g.get('name')!r} needs a name and rules")
                for r in g.get("rules") or []:
                    check(bool(r.get("expr")) and bool(r.get("alert") or r.get("record")), o.where,
                          f"rule {r.get('alert') or r.get('record')!r} needs an expr and an alert or record name")
    elif o.kind == "PodMonitor":
        sel = check_selector(o.where + " spec.selector", spec.get("selector"))
        matched = [dep for dep in deployments.values() if sel and selects(sel, pod_labels(dep))]
        if not check(bool(matched), o.where, f"spec.selector {sel} matches the pods of no Deployment"):
            return
        for i, ep in enumerate(spec.get("podMetricsEndpoints") or []):
            for dep in matched:
                names = {p.get("name") for c in containers(dep) for p in (c.get("ports") or [])}
                check(ep.get("port") in names, o.where,
                      f"podMetricsEndpoints[{i}].port {ep.get('port')!r} is not a container port of {dep.where}")


def pod_spec(dep: Obj) -> dict:
    return ((dep.doc.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(dep: Obj) -> dict:
    return (((dep.doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def containers(dep: Obj) -> list[dict]:
    return pod_spec(dep).get("containers") or []


def container_ports(dep: Obj) -> tuple[set, set]:
    names, numbers = set(), set()
    for c in containers(dep):
        for p in c.get("ports") or []:
            if p.get("name"):
                names.add(p["name"])
            numbers.add(p.get("containerPort"))
    return names, numbers


def prestop_sleep_s(c: dict) -> int:
    pre = ((c.get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre:
        return int((pre["sleep"] or {}).get("seconds", 0))
    cmd = ((pre.get("exec") or {}).get("command")) or []
    text = " ".join(str(x) for x in cmd)
    m = re.search(r"(?:^|[\s/;])sleep\s+(\d+)", text)
    return int(m.group(1)) if m else 0


def env_value(c: dict, name: str, configmaps: dict) -> str | None:
    for e in c.get("env") or []:
        if e.get("name") == name and "value" in e:
            return str(e["value"])
    for src in c.get("envFrom") or []:
        ref = (src.get("configMapRef") or {}).get("name")
        if ref in configmaps and name in (configmaps[ref].doc.get("data") or {}):
            return str(configmaps[ref].doc["data"][name])
    return None


def known_env_names() -> set[str]:
    """Every QFREFUND_*/QFPAY_* name the Rust sources read (as a string literal)."""
    names = set()
    for path in glob.glob(os.path.join(ROOT, "crates", "*", "src", "**", "*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            names.update(re.findall(r'"((?:QFREFUND|QFPAY)_[A-Z0-9_]+)"', f.read()))
    return names


def check_env_name(where: str, name: str, known: set[str]) -> None:
    if name.startswith(("QFREFUND_", "QFPAY_")):
        check(name in known, where, f"{name} is read nowhere in crates/*/src (a typo?)")


def check_kubernetes(versions: list[str], dockerfile_uid: int | None) -> None:
    kust_path = os.path.join(K8S, "kustomization.yaml")
    kdocs = load_yaml_docs(kust_path)
    if len(kdocs) != 1 or kdocs[0].get("kind") != "Kustomization":
        fail(rel(kust_path), "expected one Kustomization document")
        return
    kust = kdocs[0]
    resources = kust.get("resources") or []
    image_names = {i.get("name") for i in kust.get("images") or []}
    check(bool(image_names), rel(kust_path), "no `images:` entry (the registry and tag are set there)")
    for i in kust.get("images") or []:
        check(bool(i.get("newTag") or i.get("digest")), rel(kust_path), f"images entry {i.get('name')!r} has no newTag")
    check(not kust.get("namespace"), rel(kust_path), "sets a namespace; the base is namespace-agnostic")

    files = sorted(glob.glob(os.path.join(K8S, "*.yaml")) + glob.glob(os.path.join(K8S, "*.yml")))
    listed = set()
    for r in resources:
        p = os.path.normpath(os.path.join(K8S, r))
        if check(os.path.isfile(p), rel(kust_path), f"resource {r!r} does not exist"):
            listed.add(p)
        check(not r.endswith(".example.yaml"), rel(kust_path),
              f"resource {r!r} is an example/template and must not be applied by default")
    for p in files:
        if p == kust_path:
            continue
        check(p in listed or p.endswith(".example.yaml"), rel(p),
              "neither listed in kustomization.yaml resources nor named *.example.yaml")

    default: list[Obj] = []
    examples: list[Obj] = []
    for p in files:
        if p == kust_path:
            continue
        for d in load_yaml_docs(p):
            (default if p in listed else examples).append(Obj(d, p))
    everything = default + examples

    known = known_env_names()
    seen = set()
    for o in everything:
        if not (o.api and o.kind and o.name):
            fail(rel(o.path), "an object lacks apiVersion, kind or metadata.name")
            continue
        key = (o.kind, o.name, o.path in listed)
        check(key not in seen, o.where, "defined twice")
        seen.add(key)
        check("namespace" not in (o.doc.get("metadata") or {}), o.where,
              "sets metadata.namespace; the manifests are namespace-agnostic")

    def index(objs: list[Obj], kind: str) -> dict:
        return {o.name: o for o in objs if o.kind == kind}

    deployments = index(default, "Deployment")
    services = index(default, "Service")
    configmaps = index(default, "ConfigMap")
    secrets = index(everything, "Secret")  # the Secrets come from the template
    monitors = [o for o in default if o.kind == "ServiceMonitor"]
    scrape_jobs = set()
    for m in monitors:
        sel = ((m.doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        scrape_jobs.update(s.name for s in services.values() if sel and selects(sel, (s.doc.get("metadata") or {}).get("labels")))

    # Schemas (core) and required fields (CRDs).
    for o in everything:
        if (o.api, o.kind) in CRD_KINDS:
            check_crd(o, deployments, services, scrape_jobs)
        elif o.api and o.kind:
            schema_validate(o, versions)

    # The Secret template holds placeholders only.
    for s in (o for o in everything if o.kind == "Secret"):
        check(s.path not in listed, s.where, "a Secret is applied by kustomization.yaml; keep it a template")
        check("data" not in s.doc, s.where, "use stringData with CHANGE-ME placeholders in the template, not data")
        for k, v in (s.doc.get("stringData") or {}).items():
            check("CHANGE-ME" in str(v), s.where, f"stringData.{k} is not a CHANGE-ME placeholder (a real secret?)")
            check_env_name(s.where, k, known)
    for cm in configmaps.values():
        for k in cm.doc.get("data") or {}:
            check_env_name(cm.where, k, known)

    autoscaled = set()
    for o in default:
        if o.kind == "ScaledObject":
            autoscaled.add(((o.doc.get("spec") or {}).get("scaleTargetRef") or {}).get("name"))
        if o.kind == "HorizontalPodAutoscaler":
            autoscaled.add(((o.doc.get("spec") or {}).get("scaleTargetRef") or {}).get("name"))
    check(not any(o.kind == "HorizontalPodAutoscaler" for o in default) or not any(o.kind == "ScaledObject" for o in default),
          rel(kust_path), "both a KEDA ScaledObject and an HPA are applied: two autoscalers on one Deployment fight")

    # Deployments.
    for dep in deployments.values():
        spec = dep.doc.get("spec") or {}
        sel = check_selector(dep.where + " spec.selector", spec.get("selector"))
        check(selects(sel, pod_labels(dep)), dep.where, f"spec.selector {sel} does not match the pod template labels")
        if "replicas" not in spec:
            check(dep.name in autoscaled, dep.where, "no replicas and no autoscaler targets it")
        ps = pod_spec(dep)
        psc = ps.get("securityContext") or {}
        if dockerfile_uid is not None and "runAsUser" in psc:
            check(psc["runAsUser"] == dockerfile_uid, dep.where,
                  f"runAsUser {psc['runAsUser']} differs from the Dockerfile's USER {dockerfile_uid}")
        check(ps.get("automountServiceAccountToken") is False, dep.where,
              "automountServiceAccountToken should be false (qfrefund never calls the Kubernetes API)")
        tgps = ps.get("terminationGracePeriodSeconds", 30)
        for c in containers(dep):
            cw = f"{dep.where} container {c.get('name')}"
            image = str(c.get("image", ""))
            base = re.sub(r"@.*$", "", image)
            base = re.sub(r":[^/:]*$", "", base)
            check(base in image_names, cw, f"image {image!r} is not one kustomization.yaml `images` rewrites ({sorted(image_names)})")
            csc = c.get("securityContext") or {}
            check(csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, cw, "runAsNonRoot is not true")
            check(csc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem is not true")
            check(csc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation is not false")
            check("ALL" in ((csc.get("capabilities") or {}).get("drop") or []), cw, "capabilities.drop lacks ALL")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    check(r in (res.get(part) or {}), cw, f"resources.{part}.{r} is not set")
            for src in c.get("envFrom") or []:
                if "configMapRef" in src:
                    n = src["configMapRef"].get("name")
                    check(n in configmaps, cw, f"envFrom configMapRef {n!r} is not a ConfigMap in kustomization.yaml")
                if "secretRef" in src:
                    n = src["secretRef"].get("name")
                    check(n in secrets, cw, f"envFrom secretRef {n!r} is defined neither in secret.example.yaml nor elsewhere")
            for e in c.get("env") or []:
                check_env_name(cw, e.get("name", ""), known)
                vf = e.get("valueFrom") or {}
                for refkind, table in (("configMapKeyRef", configmaps), ("secretKeyRef", secrets)):
                    ref = vf.get(refkind)
                    if ref:
                        obj = table.get(ref.get("name"))
                        data = {} if obj is None else {**(obj.doc.get("data") or {}), **(obj.doc.get("stringData") or {})}
                        check(ref.get("key") in data, cw, f"env {e.get('name')}: {refkind} {ref.get('name')}/{ref.get('key')} does not exist")
            names, numbers = container_ports(dep)
            cport_names = [p.get("name") for p in c.get("ports") or [] if p.get("name")]
            check(len(cport_names) == len(set(cport_names)), cw, "duplicate container port names")
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                pr = c.get(probe) or {}
                for how in ("httpGet", "tcpSocket"):
                    if how in pr:
                        port = pr[how].get("port")
                        check(port in names or port in numbers, cw, f"{probe}.{how}.port {port!r} is not a container port")
            for var in ("QFREFUND_API_LISTEN", "QFREFUND_METRICS_LISTEN"):
                v = env_value(c, var, configmaps)
                if v is not None:
                    m = re.search(r":(\d+)$", v)
                    check(bool(m) and int(m.group(1)) in numbers, cw, f"{var}={v} listens on a port that is no containerPort {sorted(numbers)}")
                    check(v.startswith("0.0.0.0:") or v.startswith("[::]:"), cw, f"{var}={v}: probes and Services need 0.0.0.0")
            args = [str(a) for a in (c.get("args") or c.get("command") or [])]
            sleep = prestop_sleep_s(c)
            if args[:1] == ["worker"]:
                wn = [e for e in c.get("env") or [] if e.get("name") == "QFREFUND_WORKER_NAME"]
                check(bool(wn) and ((wn[0].get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "metadata.name",
                      cw, "QFREFUND_WORKER_NAME must come from the pod name (valueFrom.fieldRef metadata.name)")
                check(env_value(c, "QFREFUND_METRICS_LISTEN", configmaps) is not None, cw,
                      "QFREFUND_METRICS_LISTEN is not set: no /metrics for Prometheus and KEDA")
                drain_ms = int(env_value(c, "QFREFUND_DRAIN_GRACE_MS", configmaps) or DEFAULT_DRAIN_GRACE_MS)
                need = drain_ms / 1000 + sleep + GRACE_MARGIN_S
                check(tgps >= need, dep.where,
                      f"terminationGracePeriodSeconds {tgps} must be at least QFREFUND_DRAIN_GRACE_MS/1000 ({drain_ms / 1000:g}) "
                      f"+ preStop sleep ({sleep}) + {GRACE_MARGIN_S} s margin = {need:g}")
                check(sleep > 0, cw, "no preStop sleep: endpoints are not removed before SIGTERM")
            elif args[:1] == ["serve"]:
                check(tgps > sleep + GRACE_MARGIN_S, dep.where,
                      f"terminationGracePeriodSeconds {tgps} leaves under {GRACE_MARGIN_S} s after the preStop sleep ({sleep})")
                check(sleep > 0, cw, "no preStop sleep: the Service keeps routing to a stopping pod")
            else:
                fail(cw, f"args {args} run neither `worker` nor `serve`")

    def matched_deployments(where: str, sel: dict) -> list[Obj]:
        m = [d for d in deployments.values() if sel and selects(sel, pod_labels(d))]
        check(bool(m), where, f"selector {sel} matches the pods of no Deployment in kustomization.yaml")
        return m

    # Services: selectors and target ports.
    for s in services.values():
        sel = s.doc.get("spec", {}).get("selector") or {}
        check(bool(sel), s.where, "no selector")
        for dep in matched_deployments(s.where, sel):
            names, numbers = container_ports(dep)
            for p in s.doc["spec"].get("ports") or []:
                tp = p.get("targetPort", p.get("port"))
                check(tp in names or tp in numbers, s.where,
                      f"port {p.get('name')!r}: targetPort {tp!r} is not a container port of {dep.where} "
                      f"(names {sorted(names)}, numbers {sorted(numbers)})")

    # PodDisruptionBudgets: each Deployment is covered by exactly one, and none blocks every drain.
    pdbs = [o for o in default if o.kind == "PodDisruptionBudget"]
    for pdb in pdbs:
        sel = check_selector(pdb.where + " spec.selector", (pdb.doc.get("spec") or {}).get("selector"))
        for dep in matched_deployments(pdb.where, sel):
            ma = (pdb.doc.get("spec") or {}).get("minAvailable")
            replicas = (dep.doc.get("spec") or {}).get("replicas")
            if isinstance(ma, int) and isinstance(replicas, int):
                check(ma < replicas, pdb.where, f"minAvailable {ma} >= {dep.where} replicas {replicas}: no node could be drained")
    for dep in deployments.values():
        n = sum(1 for pdb in pdbs if selects(((pdb.doc.get("spec") or {}).get("selector") or {}).get("matchLabels"), pod_labels(dep)))
        check(n == 1, dep.where, f"covered by {n} PodDisruptionBudgets, expected 1")

    # NetworkPolicies: they select pods, and named ingress ports exist there.
    policies = [o for o in default if o.kind == "NetworkPolicy"]
    for np in policies:
        sel = check_selector(np.where + " spec.podSelector", (np.doc.get("spec") or {}).get("podSelector"))
        for dep in matched_deployments(np.where, sel):
            names, numbers = container_ports(dep)
            for i, rule in enumerate((np.doc.get("spec") or {}).get("ingress") or []):
                for p in rule.get("ports") or []:
                    port = p.get("port")
                    check(port in names or port in numbers, np.where,
                          f"ingress[{i}] port {port!r} is not a container port of {dep.where}")
    for dep in deployments.values():
        check(any(selects(((np.doc.get("spec") or {}).get("podSelector") or {}).get("matchLabels"), pod_labels(dep)) for np in policies),
              dep.where, "no NetworkPolicy selects its pods")

    # Every Deployment with a metrics or HTTP port is scraped.
    for dep in deployments.values():
        scraped = any(selects(((m.doc.get("spec") or {}).get("selector") or {}).get("matchLabels"), (s.doc.get("metadata") or {}).get("labels"))
                      and selects(s.doc["spec"].get("selector"), pod_labels(dep))
                      for m in monitors for s in services.values())
        check(scraped, dep.where, "no ServiceMonitor scrapes a Service of these pods")

    # Examples refer to what the base defines.
    for o in examples:
        if o.kind == "HorizontalPodAutoscaler":
            t = (o.doc.get("spec") or {}).get("scaleTargetRef") or {}
            check(t.get("name") in deployments, o.where, f"scaleTargetRef {t.get('name')!r} is not a Deployment")
        if o.kind == "Ingress":
            for rule in (o.doc.get("spec") or {}).get("rules") or []:
                for path in ((rule.get("http") or {}).get("paths")) or []:
                    svc = ((path.get("backend") or {}).get("service")) or {}
                    s = services.get(svc.get("name"))
                    if check(s is not None, o.where, f"backend Service {svc.get('name')!r} is not defined"):
                        port = svc.get("port") or {}
                        ports = s.doc["spec"].get("ports") or []
                        check(any(port.get("name") == p.get("name") or port.get("number") == p.get("port") for p in ports),
                              o.where, f"backend port {port} is not a port of {s.where}")


# ---------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------

_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(v: object) -> str:
    """Compose's ${VAR:-default} with an empty environment: the defaults ($$ stays a literal $)."""
    s = str(v).replace("$$", "\0")
    s = _INTERP.sub(lambda m: m.group(3) if m.group(2) in (":-", "-") else "", s)
    return s.replace("\0", "$")


def as_env(env: object) -> dict:
    if isinstance(env, list):
        return dict((str(e).split("=", 1) + [""])[:2] for e in env)
    return {k: "" if v is None else str(v) for k, v in (env or {}).items()}


def duration_s(v: object) -> float:
    total, text = 0.0, str(v)
    for n, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text):
        total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def check_compose() -> int:
    path = os.path.join(DEPLOY, "compose.yaml")
    where = rel(path)
    docs = load_yaml_docs(path)
    if len(docs) != 1:
        fail(where, "expected one YAML document")
        return 0
    c = docs[0]
    services = c.get("services") or {}
    if not check(bool(services), where, "no services"):
        return 0
    volumes = set((c.get("volumes") or {}).keys())
    known_keys = {"image", "build", "command", "entrypoint", "environment", "env_file", "ports", "volumes", "depends_on",
                  "healthcheck", "restart", "stop_grace_period", "stop_signal", "user", "read_only", "profiles",
                  "networks", "labels", "deploy", "init", "tmpfs", "cap_drop", "security_opt", "expose", "pull_policy"}
    qf_images = set()
    for name, s in services.items():
        sw = f"{where} service {name}"
        if not isinstance(s, dict):
            fail(sw, "not a mapping")
            continue
        for k in s:
            check(k in known_keys, sw, f"unexpected key {k!r} (misspelt?)")
        check("image" in s or "build" in s, sw, "neither image nor build")
        if "build" in s:
            b = s["build"] if isinstance(s["build"], dict) else {"context": s["build"]}
            ctx = os.path.normpath(os.path.join(DEPLOY, str(b.get("context", "."))))
            df = os.path.join(ctx, str(b.get("dockerfile", "Dockerfile")))
            check(os.path.isdir(ctx), sw, f"build context {b.get('context')!r} is not a directory")
            check(os.path.isfile(df), sw, f"Dockerfile {b.get('dockerfile')!r} not found in the build context")
            qf_images.add(interpolate(s.get("image", "")))
        for dep, cond in (s.get("depends_on") or {}).items() if isinstance(s.get("depends_on"), dict) else \
                ((d, {"condition": "service_started"}) for d in s.get("depends_on") or []):
            check(dep in services, sw, f"depends_on {dep!r}: no such service")
            cnd = (cond or {}).get("condition", "service_started")
            check(cnd in ("service_started", "service_healthy", "service_completed_successfully"), sw, f"depends_on {dep}: condition {cnd!r}")
            if cnd == "service_healthy" and dep in services:
                hc = services[dep].get("healthcheck") or {}
                check(bool(hc.get("test")) and not hc.get("disable"), sw, f"depends_on {dep} service_healthy, but {dep} has no healthcheck")
        for v in s.get("volumes") or []:
            src = str(v).split(":", 1)[0]
            if not src.startswith((".", "/", "~")):
                check(src in volumes, sw, f"named volume {src!r} is not declared under volumes:")
        hc = s.get("healthcheck") or {}
        if hc and not hc.get("disable"):
            test = hc.get("test")
            check(isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE"), sw, "healthcheck.test must be [CMD, ...] or [CMD-SHELL, ...]")
    check(len(qf_images) == 1, where, f"the services built from deploy/Dockerfile name {len(qf_images)} different images: {sorted(qf_images)}")
    qf_image = next(iter(qf_images), None)

    redis_names = [n for n, s in services.items() if "redis" in str(s.get("image", "")) and "build" not in s]
    password = None
    if check(len(redis_names) == 1, where, "expected exactly one Redis service (image redis:…)"):
        r = services[redis_names[0]]
        rw = f"{where} service {redis_names[0]}"
        cmd = [interpolate(x) for x in (r.get("command") or [])]
        text = " ".join(cmd)
        check(bool(re.search(r"--appendonly\s+yes", text)), rw, "AOF is off: add --appendonly yes")
        check(bool(re.search(r"--appendfsync\s+(everysec|always)", text)), rw, "--appendfsync must be everysec or always")
        check(bool(re.search(r"--maxmemory-policy\s+noeviction", text)), rw, "--maxmemory-policy must be noeviction")
        m = re.search(r"--requirepass\s+(\S+)", text)
        if check(bool(m), rw, "no --requirepass"):
            password = m.group(1)
        check(bool(re.search(r":(7|8)\.", str(r.get("image")))), rw, f"image {r.get('image')!r}: Redis >= 7.0 is required")

    listen_port = {}
    worker_names = []
    for name, s in services.items():
        if "build" not in s and interpolate(s.get("image", "")) != qf_image:
            continue
        sw = f"{where} service {name}"
        env = {k: interpolate(v) for k, v in as_env(s.get("environment")).items()}
        cmd = [interpolate(x) for x in (s.get("command") or ["worker"])] if not s.get("entrypoint") else []
        for k in env:
            check_env_name(sw, k, known_env_names_cached())
        role = cmd[0] if cmd else "shell"
        if role in ("worker", "serve", "shell"):
            url = env.get("QFREFUND_REDIS_URL", "")
            check(bool(url), sw, "QFREFUND_REDIS_URL is not set")
            m = re.match(r"rediss?://(?:[^:@/]*):([^@]+)@([^:/]+)", url)
            if check(bool(m), sw, f"QFREFUND_REDIS_URL {url!r} carries no password (redis://:PASSWORD@host:port)"):
                check(m.group(1) == password, sw, "the password in QFREFUND_REDIS_URL differs from Redis' --requirepass")
                check(m.group(2) in services, sw, f"QFREFUND_REDIS_URL host {m.group(2)!r} is not a service")
        if role == "worker":
            wn = env.get("QFREFUND_WORKER_NAME")
            check(bool(wn), sw, "QFREFUND_WORKER_NAME is not set")
            worker_names.append(wn)
            drain = int(env.get("QFREFUND_DRAIN_GRACE_MS") or DEFAULT_DRAIN_GRACE_MS) / 1000
            sgp = duration_s(s.get("stop_grace_period", "10s"))
            check(sgp > drain, sw, f"stop_grace_period {sgp:g}s must exceed QFREFUND_DRAIN_GRACE_MS ({drain:g}s)")
            base = env.get("QFPAY_BASE_URL", "")
            m = re.match(r"https?://([^:/]+)(?::(\d+))?", base)
            if check(bool(m), sw, f"QFPAY_BASE_URL {base!r} is not a URL"):
                host = m.group(1)
                if host in services:
                    sim_cmd = [interpolate(x) for x in services[host].get("command") or []]
                    sim_listen = sim_cmd[sim_cmd.index("--listen") + 1] if "--listen" in sim_cmd else ""
                    check(sim_listen.endswith(":" + (m.group(2) or "80")), sw,
                          f"QFPAY_BASE_URL {base} does not match service {host}'s --listen {sim_listen!r}")
            v = env.get("QFREFUND_METRICS_LISTEN", "")
            check(v.startswith("0.0.0.0:"), sw, "QFREFUND_METRICS_LISTEN must be 0.0.0.0:PORT")
            listen_port[name] = v.rsplit(":", 1)[-1]
        elif role == "serve":
            toks = env.get("QFREFUND_API_TOKENS", "")
            check(bool(toks), sw, "QFREFUND_API_TOKENS is not set")
            for t in filter(None, (x.strip() for x in toks.split(","))):
                parts = t.split(":", 2)
                check(len(parts) == 3 and parts[1] in ("read", "produce", "operate") and len(parts[2]) >= 16, sw,
                      f"QFREFUND_API_TOKENS entry {parts[0]!r}: need name:read|produce|operate:token (16+ characters)")
            v = env.get("QFREFUND_API_LISTEN", "")
            check(v.startswith("0.0.0.0:"), sw, "QFREFUND_API_LISTEN must be 0.0.0.0:PORT")
            listen_port[name] = v.rsplit(":", 1)[-1]
        elif role == "sim":
            listen = cmd[cmd.index("--listen") + 1] if "--listen" in cmd else ""
            check(listen.startswith("0.0.0.0:"), sw, "the simulator must --listen on 0.0.0.0:PORT")
            listen_port[name] = listen.rsplit(":", 1)[-1]
        # A health check over HTTP must hit the port the service listens on.
        test = [interpolate(x) for x in ((s.get("healthcheck") or {}).get("test") or [])]
        if "--http" in test and name in listen_port:
            url = test[test.index("--http") + 1]
            check(f"127.0.0.1:{listen_port[name]}/" in url, sw, f"healthcheck URL {url} is not this service's port {listen_port[name]}")
        for p in s.get("ports") or []:
            container_port = str(p).rsplit(":", 1)[-1]
            if name in listen_port:
                check(container_port == listen_port[name], sw, f"published port {p} maps to {container_port}, the service listens on {listen_port[name]}")
    check(len(worker_names) >= 2, where, f"{len(worker_names)} worker services, expected at least 2")
    check(len(set(worker_names)) == len(worker_names), where, f"worker names are not distinct: {worker_names}")
    host_ports = [str(p).rsplit(":", 1)[0] for s in services.values() for p in s.get("ports") or []]
    check(len(set(host_ports)) == len(host_ports), where, f"a host port is published twice: {host_ports}")
    return len(services)


_known_env: set[str] | None = None


def known_env_names_cached() -> set[str]:
    global _known_env
    if _known_env is None:
        _known_env = known_env_names()
    return _known_env


# ---------------------------------------------------------------------------------------------
# Dockerfile
# ---------------------------------------------------------------------------------------------


def check_dockerfile() -> int | None:
    path = os.path.join(DEPLOY, "Dockerfile")
    where = rel(path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # Dependencies are cached by BuildKit cache mounts (cargo's registry and the target directory).
    for target in ("/usr/local/cargo/registry", "/src/target"):
        check(f"--mount=type=cache,target={target}" in text, where, f"no BuildKit cache mount for {target}")
    check(bool(re.search(r"cargo build --release --locked -p qfrefund", text)), where, "does not build -p qfrefund --locked")
    check(re.search(r'^ENTRYPOINT \["qfrefund"\]', text, re.M) is not None, where, 'ENTRYPOINT must be ["qfrefund"]')
    check(re.search(r'^CMD \["worker"\]', text, re.M) is not None, where, 'CMD must be ["worker"]')
    check(re.search(r"^HEALTHCHECK .*qfrefund\", \"ping", text, re.M) is not None, where, "no HEALTHCHECK with qfrefund ping")
    check("/usr/local/bin/qfrefund" in text, where, "the binary is not installed as /usr/local/bin/qfrefund")
    exposed = set(" ".join(re.findall(r"^EXPOSE (.+)$", text, re.M)).split())
    check({"8080", "9464"} <= exposed, where, f"EXPOSE {sorted(exposed)} lacks 8080 or 9464")
    users = re.findall(r"^USER (\S+)", text, re.M)
    uid = None
    if check(bool(users), where, "no USER: the image would run as root"):
        u = users[-1].split(":")[0]
        if check(u.isdigit() and int(u) != 0, where, f"USER {users[-1]}: use a fixed numeric non-root UID"):
            uid = int(u)
    ignore = os.path.join(DEPLOY, "Dockerfile.dockerignore")
    if check(os.path.isfile(ignore), where, "deploy/Dockerfile.dockerignore is missing: target/ would be sent as build context"):
        with open(ignore, encoding="utf-8") as f:
            lines = [x.strip() for x in f if x.strip() and not x.startswith("#")]
        check("*" in lines or any("target" in x for x in lines), rel(ignore), "does not exclude target/")
    return uid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k8s", default="1.30", help="comma-separated Kubernetes versions to validate against")
    args = ap.parse_args()
    versions = [v.strip() for v in args.k8s.split(",") if v.strip()]
    uid = check_dockerfile()
    check_kubernetes(versions, uid)
    n_services = check_compose()
    if errors:
        print(f"deploy check: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(f"manifests: {counts['schema']} objects valid (strict, Kubernetes {', '.join(versions)}), "
          f"{counts['crd']} CRD objects, {n_services} compose services, {counts['cross']} cross-checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
