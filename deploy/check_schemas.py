#!/usr/bin/env python3
"""Schema validation of deploy/: every Kubernetes object strictly (unknown fields fail) against the
schemas kubernetes-validate bundles, for each version given with --k8s; the CRD objects, the
Kustomization and compose.yaml against the published schemas vendored in deploy/schemas.

Run through deploy/check.sh (which provides the pinned tools); prints one summary line, or every
problem found and exits 1.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys

import jsonschema
import yaml
from kubernetes_validate import utils as kv

DEPLOY = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(DEPLOY, "schemas")
# apiVersion/kind -> vendored schema (deploy/schemas/README.md says where each comes from).
PUBLISHED = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh/scaledobject_v1alpha1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com/servicemonitor_v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com/prometheusrule_v1.json",
    ("kustomize.config.k8s.io/v1beta1", "Kustomization"): "kustomize.config.k8s.io/kustomization_v1beta1.json",
}


def validator(name: str) -> jsonschema.protocols.Validator:
    with open(os.path.join(SCHEMAS, name), encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    return cls(schema)


def published(where: str, doc: dict, v: jsonschema.protocols.Validator, errors: list[str]) -> None:
    for e in sorted(v.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        path = ".".join(str(p) for p in e.path) or "(top level)"
        errors.append(f"{where}: published schema: {path}: {e.message}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k8s", default="1.30", help="comma-separated Kubernetes versions to validate against")
    versions = [v.strip() for v in ap.parse_args().k8s.split(",") if v.strip()]
    errors: list[str] = []
    core = crd = 0
    validators = {key: validator(name) for key, name in PUBLISHED.items()}
    for path in sorted(glob.glob(os.path.join(DEPLOY, "k8s", "*.yaml"))):
        with open(path, encoding="utf-8") as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        for d in docs:
            if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind"):
                errors.append(f"deploy/k8s/{os.path.basename(path)}: a document without apiVersion and kind")
                continue
            where = f"deploy/k8s/{os.path.basename(path)} {d.get('kind')}/{(d.get('metadata') or {}).get('name')}"
            key = (d.get("apiVersion"), d.get("kind"))
            if key in validators:
                published(where, d, validators[key], errors)
                crd += 1
                continue
            for v in versions:
                try:
                    kv.validate(d, v, strict=True)
                except kv.ValidationError as e:
                    path_ = ".".join(str(p) for p in e.path) or "(top level)"
                    errors.append(f"{where}: Kubernetes {v} schema (strict): {path_}: {e.message}")
                except kv.SchemaNotFoundError:
                    errors.append(f"{where}: Kubernetes {v} has no {key[0]} {key[1]} (a removed or misspelt API?)")
                except kv.VersionNotSupportedError:
                    errors.append(f"{where}: kubernetes-validate has no schemas for Kubernetes {v}")
            core += 1
    with open(os.path.join(DEPLOY, "compose.yaml"), encoding="utf-8") as f:
        published("deploy/compose.yaml", yaml.safe_load(f), validator("compose-spec.json"), errors)
    if errors:
        print(f"schema check: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(
        f"schemas: {core} objects valid (strict, Kubernetes {', '.join(versions)}), "
        f"{crd} CRD/Kustomization objects and compose.yaml valid (published schemas)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
