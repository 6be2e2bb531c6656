"""Offline checks of Kubernetes manifests: Knative CRD schemas, made strict.

Each CRD's ``openAPIV3Schema`` (every served version) is made strict: an object that
lists ``properties`` and is not ``x-kubernetes-preserve-unknown-fields`` also gets
``additionalProperties: false``. The API server would silently prune an unknown
field; here a typo is an error. Built-in kinds have no schema here (Kubernetes'
OpenAPI is not available offline), so :func:`builtin_errors` checks only their
basic structure, by hand.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator

CRD_DIR = Path(
    os.environ.get("KNATIVE_CRDS")
    or Path(__file__).resolve().parents[2] / "shared" / "knative-crds"
)

# A CR's schema may leave these out; the API server handles them itself.
TOP_LEVEL = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {"type": "object"},
}
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")

# core/v1 Container fields: a ContainerSource's template is not validated at all
# (x-kubernetes-preserve-unknown-fields), so a typo such as "comand" would pass.
CONTAINER_FIELDS = frozenset(
    [
        "name",
        "image",
        "command",
        "args",
        "workingDir",
        "ports",
        "envFrom",
        "env",
        "resources",
        "resizePolicy",
        "restartPolicy",
        "volumeMounts",
        "volumeDevices",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
        "terminationMessagePath",
        "terminationMessagePolicy",
        "imagePullPolicy",
        "securityContext",
        "stdin",
        "stdinOnce",
        "tty",
    ]
)

# Built-in kinds this project uses, with their top-level fields.
BUILTIN_FIELDS = {
    ("v1", "Namespace"): {"apiVersion", "kind", "metadata", "spec"},
    ("v1", "ConfigMap"): {
        "apiVersion",
        "kind",
        "metadata",
        "data",
        "binaryData",
        "immutable",
    },
    ("v1", "Secret"): {
        "apiVersion",
        "kind",
        "metadata",
        "data",
        "stringData",
        "type",
        "immutable",
    },
    ("batch/v1", "Job"): {"apiVersion", "kind", "metadata", "spec"},
    ("apps/v1", "Deployment"): {"apiVersion", "kind", "metadata", "spec"},
}
DEPLOYMENT_SPEC_FIELDS = frozenset(
    [
        "minReadySeconds",
        "paused",
        "progressDeadlineSeconds",
        "replicas",
        "revisionHistoryLimit",
        "selector",
        "strategy",
        "template",
    ]
)
PROBE_FIELDS = frozenset(
    [
        "exec",
        "failureThreshold",
        "grpc",
        "httpGet",
        "initialDelaySeconds",
        "periodSeconds",
        "successThreshold",
        "tcpSocket",
        "terminationGracePeriodSeconds",
        "timeoutSeconds",
    ]
)
JOB_SPEC_FIELDS = frozenset(
    [
        "activeDeadlineSeconds",
        "backoffLimit",
        "backoffLimitPerIndex",
        "completionMode",
        "completions",
        "managedBy",
        "manualSelector",
        "maxFailedIndexes",
        "parallelism",
        "podFailurePolicy",
        "podReplacementPolicy",
        "selector",
        "successPolicy",
        "suspend",
        "template",
        "ttlSecondsAfterFinished",
    ]
)


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of an OpenAPI v3 schema that rejects the fields it does not list."""
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {k: strict(v) for k, v in out["properties"].items()}
        if not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    for key in ("items", "additionalProperties", "not"):
        if isinstance(out.get(key), dict):
            out[key] = strict(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [strict(sub) for sub in out[key]]
    return out


def load_validators(directory: Path = CRD_DIR) -> dict[tuple[str, str], Any]:
    """Strict validators keyed by ``(apiVersion, kind)``, for every served version."""
    validators = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served"):
                    continue
                root = dict(version["schema"]["openAPIV3Schema"])
                root["properties"] = {**TOP_LEVEL, **root.get("properties", {})}
                schema = strict(root)
                Draft7Validator.check_schema(schema)
                validators[(f"{group}/{version['name']}", kind)] = Draft7Validator(
                    schema
                )
    return validators


def schema_errors(doc: dict[str, Any], validators: dict) -> list[str]:
    """What the strict CRD schema says about ``doc`` (empty when it is valid)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    validator = validators.get(key)
    if validator is None:
        return [f"no served CRD version for apiVersion/kind {key}"]
    errors = sorted(validator.iter_errors(doc), key=lambda e: e.json_path)
    return [f"{error.json_path}: {error.message}" for error in errors]


def container_errors(container: Any, where: str) -> list[str]:
    """Basic core/v1 Container structure: known fields, a name and an image."""
    if not isinstance(container, dict):
        return [f"{where}: a container must be a mapping"]
    errors = [
        f"{where}: unknown container field {key!r}"
        for key in sorted(set(container) - CONTAINER_FIELDS)
    ]
    if not isinstance(container.get("image"), str) or not container["image"]:
        errors.append(f"{where}: no image")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(key)
        if probe is None:
            continue
        if not isinstance(probe, dict):
            errors.append(f"{where}.{key}: must be a mapping")
            continue
        errors += [
            f"{where}.{key}: unknown probe field {field!r}"
            for field in sorted(set(probe) - PROBE_FIELDS)
        ]
        command = (probe.get("exec") or {}).get("command", [])
        if not isinstance(command, list) or not all(
            isinstance(a, str) for a in command
        ):
            errors.append(f"{where}.{key}.exec.command: must be a list of strings")
    for key in ("command", "args"):
        value = container.get(key, [])
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            errors.append(f"{where}.{key}: must be a list of strings")
    return errors


def builtin_errors(doc: dict[str, Any]) -> list[str]:
    """Hand-written structure checks for the built-in kinds (no schema offline)."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    if key not in BUILTIN_FIELDS:
        return [f"no hand check for built-in apiVersion/kind {key}"]
    errors = [
        f"unknown top-level field {field!r}"
        for field in sorted(set(doc) - BUILTIN_FIELDS[key])
    ]
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not DNS_LABEL.match(name):
        errors.append(f"metadata.name {name!r} is not a DNS-1123 label")
    kind = key[1]
    if kind in ("ConfigMap", "Secret"):
        for field in ("data", "stringData"):
            values = doc.get(field) or {}
            if not all(isinstance(v, str) for v in values.values()):
                errors.append(f"{field}: values must be strings")
        if kind == "Secret":
            for name, value in (doc.get("data") or {}).items():
                try:
                    base64.b64decode(str(value), validate=True)
                except binascii.Error:
                    errors.append(f"data.{name}: not base64")
    if kind == "Deployment":
        spec = doc.get("spec") or {}
        errors += [
            f"spec: unknown Deployment field {field!r}"
            for field in sorted(set(spec) - DEPLOYMENT_SPEC_FIELDS)
        ]
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        if not selector or any((labels or {}).get(k) != v for k, v in selector.items()):
            errors.append("spec.selector.matchLabels: must match the template's labels")
        errors += _pod_errors(spec)
    if kind == "Job":
        spec = doc.get("spec") or {}
        errors += [
            f"spec: unknown Job field {field!r}"
            for field in sorted(set(spec) - JOB_SPEC_FIELDS)
        ]
        pod = (spec.get("template") or {}).get("spec") or {}
        if pod.get("restartPolicy") not in ("Never", "OnFailure"):
            errors.append("spec.template.spec.restartPolicy: Never or OnFailure")
        errors += _pod_errors(spec)
    return errors


def _pod_errors(spec: dict[str, Any]) -> list[str]:
    """A workload's pod template: named containers of known structure."""
    errors = []
    pod = (spec.get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    if not containers:
        errors.append("spec.template.spec.containers: empty")
    for i, container in enumerate(containers):
        where = f"spec.template.spec.containers[{i}]"
        errors += container_errors(container, where)
        if not isinstance(container, dict) or not container.get("name"):
            errors.append(f"{where}: no name")
    return errors


def kustomization_files(directory: Path) -> list[Path]:
    """The files a kustomization lists under ``resources``."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    return [directory / name for name in kustomization.get("resources", [])]


def load_raw(directory: Path) -> list[dict[str, Any]]:
    """The documents of the files a kustomization lists, as written."""
    return [
        doc
        for path in kustomization_files(directory)
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def render(directory: Path) -> list[dict[str, Any]] | None:
    """``kubectl kustomize directory`` parsed; None when kubectl is not on PATH."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return None
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode:
        raise RuntimeError(f"kubectl kustomize failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
