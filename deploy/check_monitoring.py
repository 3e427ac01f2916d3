#!/usr/bin/env python3
"""Checks the alerts (deploy/k8s/prometheusrule.yaml) and the Grafana dashboard
(deploy/grafana/qfrefund.json) with promtool: every expression parses, the alerts' unit tests in
deploy/monitoring/alerts.test.yaml pass and fire every alert at least once, and every metric
either names is one qfrefund exports (docs/metrics.md, which a test checks against /metrics).

Run through deploy/check.sh; prints one summary line, or the problems and exits 1.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

DEPLOY = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DEPLOY)
RULES = os.path.join(DEPLOY, "k8s", "prometheusrule.yaml")
TESTS = os.path.join(DEPLOY, "monitoring", "alerts.test.yaml")
DASHBOARD = os.path.join(DEPLOY, "grafana", "qfrefund.json")
errors: list[str] = []


def promtool(*args: str) -> None:
    out = subprocess.run(["promtool", *args], capture_output=True, text=True)
    if out.returncode != 0:
        errors.append(f"promtool {' '.join(args)}:\n{out.stdout}{out.stderr}")


def metric_names(expr: str) -> set[str]:
    names = set(re.findall(r"\b(qfrefund_[a-z0-9_]+)", expr))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def main() -> int:
    if shutil.which("promtool") is None:
        print("deploy check: promtool not found (Debian package prometheus; `make deps` installs it)", file=sys.stderr)
        return 1
    with open(os.path.join(ROOT, "docs", "metrics.md"), encoding="utf-8") as f:
        exported = metric_names(f.read())
    with open(RULES, encoding="utf-8") as f:
        rule = yaml.safe_load(f)
    groups = rule["spec"]["groups"]
    alerts = [r for g in groups for r in g["rules"] if "alert" in r]
    used: set[str] = set()
    for r in alerts:
        used |= metric_names(r["expr"])
        if (r.get("labels") or {}).get("severity") not in ("warning", "critical"):
            errors.append(f"{r['alert']}: labels.severity must be warning or critical")
        if not (r.get("annotations") or {}).get("summary"):
            errors.append(f"{r['alert']}: no annotations.summary")
    with open(TESTS, encoding="utf-8") as f:
        tests = yaml.safe_load(f)
    fired = {t["alertname"] for case in tests["tests"] for t in case.get("alert_rule_test", []) if t.get("exp_alerts")}
    for r in alerts:
        if r["alert"] not in fired:
            errors.append(f"{r['alert']}: no test in {os.path.relpath(TESTS, ROOT)} makes it fire")

    with open(DASHBOARD, encoding="utf-8") as f:
        dash = json.load(f)
    for key in ("uid", "title", "panels", "schemaVersion", "templating"):
        if key not in dash:
            errors.append(f"the dashboard has no {key}")
    if not any(v.get("type") == "datasource" for v in dash.get("templating", {}).get("list", [])):
        errors.append("the dashboard has no datasource variable: it would be tied to one Prometheus")
    recording = []
    ids = set()
    for p in dash.get("panels", []):
        where = f"dashboard panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids:
            errors.append(f"{where}: id used twice")
        ids.add(p.get("id"))
        if not {"x", "y", "w", "h"} <= set(p.get("gridPos", {})):
            errors.append(f"{where}: no gridPos")
        if not p.get("targets"):
            errors.append(f"{where}: no query")
        for t in p.get("targets", []):
            if (t.get("datasource") or {}).get("uid") != "${datasource}":
                errors.append(f"{where}: a query not on the datasource variable")
            used |= metric_names(t["expr"])
            recording.append({"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": t["expr"]})
    for name in sorted(used - exported):
        errors.append(f"{name} is not a metric qfrefund exports (docs/metrics.md)")

    with tempfile.TemporaryDirectory() as tmp:
        rules = os.path.join(tmp, "rules.yaml")
        with open(rules, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": groups}, f, sort_keys=False)
        shutil.copy(TESTS, os.path.join(tmp, "alerts.test.yaml"))
        panels = os.path.join(tmp, "dashboard.yaml")
        with open(panels, "w", encoding="utf-8") as f:
            yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}, f, sort_keys=False)
        promtool("check", "rules", rules, panels)
        promtool("test", "rules", os.path.join(tmp, "alerts.test.yaml"))
    if errors:
        print(f"monitoring check: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(
        f"monitoring: {len(alerts)} alerts (each fired by a promtool test), "
        f"{len(dash['panels'])} dashboard panels, {len(recording)} queries, {len(used)} metrics checked"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
