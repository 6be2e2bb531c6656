"""k8s/ (the polls example on Knative): CRD schemas plus the rules they cannot say.

The documents are what ``kubectl kustomize k8s`` renders, or the raw files the
kustomization lists when kubectl is not installed. Knative kinds are validated
against the CRDs in ../shared/knative-crds/ with unknown fields rejected; the
built-in kinds get a hand-written structure check only (see tests/k8s_schema.py).
The schemas leave out what Knative's webhooks check (backoffPolicy, durations,
extension names, required sink/subscriber), so those are project rules here.
"""

from __future__ import annotations

import copy
import datetime
import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, find_commands, load_command_class
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

import django_cloudevents_bridge.management as bridge_management
from django_cloudevents_bridge import urls as bridge_urls
from django_cloudevents_bridge.emit import sources
from tests import k8s_schema
from tests.conftest import need
from tests.testapp.models import Question

K8S = Path(__file__).resolve().parents[1] / "k8s"

# examples/polls mounts the bridge as the urls.py docstring says:
# path("cloudevents/", include("django_cloudevents_bridge.urls")).
EXAMPLE_MOUNT = "cloudevents/"
IMAGE = "ghcr.io/example/django-cloudevents-polls:latest"
WEB_PORT = 8000  # gunicorn in the example's Dockerfile

ENV_SOURCES = (("configMapRef", "ConfigMap"), ("secretRef", "Secret"))
# The Knative kinds are validated against CRDs; these are checked by hand.
BUILTIN_GROUPS = ("v1", "batch/v1", "apps/v1")

# pkg/apis/duck/v1/delivery_types.go; `delivery` is preserve-unknown-fields.
DELIVERY_FIELDS = {
    "deadLetterSink",
    "retry",
    "timeout",
    "backoffPolicy",
    "backoffDelay",
    "retryAfterMax",
    "format",
}
DELIVERY_DURATIONS = ("backoffDelay", "timeout", "retryAfterMax")
# pkg/apis/eventing/v1/trigger_types.go; a Trigger's whole spec is
# preserve-unknown-fields, so a typo there passes the schema.
TRIGGER_FIELDS = {"broker", "brokerRef", "filter", "filters", "subscriber", "delivery"}
FILTER_DIALECTS = {"exact", "prefix", "suffix", "all", "any", "not", "cesql"}
CORE_ATTRIBUTES = {
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
}
EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")
# ISO-8601 duration as Knative parses it (PT0.2S, PT10S, P1D, ...).
DURATION = re.compile(
    r"^P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?"
    r"(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$"
)


def receiver_path() -> str:
    """The receiver's URL path in the example: the mount prefix itself."""
    receiver = next(p for p in bridge_urls.urlpatterns if p.name == "receiver")
    # The receiver is the include's root, so its path is the mount prefix.
    assert str(receiver.pattern) == ""
    return "/" + EXAMPLE_MOUNT


def bridge_commands() -> list[str]:
    """The management commands django_cloudevents_bridge ships."""
    return find_commands(str(Path(bridge_management.__file__).parent))


# --- project rules: what the CRD schemas cannot express --------------------------


def destination_problems(dest: Any, where: str) -> list[str]:
    """A Destination needs a ref (apiVersion, kind, name) or a uri."""
    if not isinstance(dest, dict) or not (dest.get("ref") or dest.get("uri")):
        return [f"{where}: needs a ref or a uri"]
    ref = dest.get("ref")
    if ref and not all(ref.get(key) for key in ("apiVersion", "kind", "name")):
        return [f"{where}.ref: needs apiVersion, kind and name"]
    return []


def delivery_problems(delivery: dict[str, Any], where: str) -> list[str]:
    """DeliverySpec rules Knative's webhook enforces (the schema does not)."""
    problems = [
        f"{where}: unknown delivery field {key!r}"
        for key in sorted(set(delivery) - DELIVERY_FIELDS)
    ]
    policy = delivery.get("backoffPolicy")
    if policy is not None and policy not in ("linear", "exponential"):
        problems.append(f"{where}.backoffPolicy: {policy!r} not linear/exponential")
    for key in DELIVERY_DURATIONS:
        value = delivery.get(key)
        if value is not None and not (isinstance(value, str) and DURATION.match(value)):
            problems.append(f"{where}.{key}: {value!r} is not an ISO-8601 duration")
    retry = delivery.get("retry")
    if isinstance(retry, int) and retry < 0:
        problems.append(f"{where}.retry: must not be negative")
    if delivery.get("format") not in (None, "json", "binary"):
        problems.append(f"{where}.format: json or binary")
    if "deadLetterSink" in delivery:
        problems += destination_problems(
            delivery["deadLetterSink"], f"{where}.deadLetterSink"
        )
    return problems


def overrides_problems(overrides: dict[str, Any], where: str) -> list[str]:
    """ceOverrides.extensions: names ``[a-z0-9]+``, not core attributes; strings."""
    extensions = overrides.get("extensions") or {}
    problems = []
    for name, value in extensions.items():
        if not EXTENSION_NAME.match(str(name)):
            problems.append(f"{where}: extension name {name!r} is not [a-z0-9]+")
        elif name in CORE_ATTRIBUTES:
            problems.append(f"{where}: {name!r} is a core attribute, not an extension")
        if not isinstance(value, str):
            problems.append(f"{where}: extension {name!r} value must be a string")
    return problems


def filter_problems(expression: Any, where: str) -> list[str]:
    """One Subscriptions API filter: a single dialect, non-empty string operands."""
    if not isinstance(expression, dict) or len(expression) != 1:
        return [f"{where}: one dialect per filter expression"]
    ((dialect, operand),) = expression.items()
    if dialect not in FILTER_DIALECTS:
        return [f"{where}: unknown filter dialect {dialect!r}"]
    if dialect in ("exact", "prefix", "suffix"):
        if not isinstance(operand, dict) or len(operand) != 1:
            return [f"{where}.{dialect}: exactly one attribute"]
        ((name, value),) = operand.items()
        if not (isinstance(name, str) and name and isinstance(value, str) and value):
            return [f"{where}.{dialect}: name and value must be non-empty strings"]
    elif dialect in ("all", "any"):
        return [
            problem
            for i, sub in enumerate(operand or [])
            for problem in filter_problems(sub, f"{where}.{dialect}[{i}]")
        ]
    elif dialect == "not":
        return filter_problems(operand, f"{where}.not")
    return []


def trigger_problems(spec: dict[str, Any]) -> list[str]:
    """Required broker and subscriber, at the receiver; filters and delivery."""
    problems = [
        f"spec: unknown Trigger field {key!r}"
        for key in sorted(set(spec) - TRIGGER_FIELDS)
    ]
    if not (spec.get("broker") or spec.get("brokerRef")):
        problems.append("spec: needs broker or brokerRef")
    if "subscriber" not in spec:
        problems.append("spec.subscriber: required")
    else:
        problems += destination_problems(spec["subscriber"], "spec.subscriber")
        uri = spec["subscriber"].get("uri") if spec["subscriber"] else None
        if uri != receiver_path():
            problems.append(
                f"spec.subscriber.uri: {uri!r} is not the receiver {receiver_path()!r}"
            )
    attributes = (spec.get("filter") or {}).get("attributes") or {}
    if not all(isinstance(v, str) for v in attributes.values()):
        problems.append("spec.filter.attributes: values must be strings")
    for i, expression in enumerate(spec.get("filters") or []):
        problems += filter_problems(expression, f"spec.filters[{i}]")
    if "delivery" in spec:
        problems += delivery_problems(spec["delivery"], "spec.delivery")
    return problems


def command_problems(argv: list[str], where: str) -> list[str]:
    """``python manage.py <bridge command> <options it accepts>``, or a problem."""
    if argv[:2] != ["python", "manage.py"] or len(argv) < 3:
        return [f"{where}: {argv!r} is not python manage.py <command>"]
    if argv[2] not in bridge_commands():
        return [f"{where}: no management command {argv[2]!r}"]
    command = load_command_class("django_cloudevents_bridge", argv[2])
    try:
        command.create_parser("manage.py", argv[2]).parse_args(argv[3:])
    except CommandError as err:
        return [f"{where}: {argv[2]}: {err}"]
    return []


def relay_problems(spec: dict[str, Any]) -> list[str]:
    """A Deployment's pod template runs a bridge management command (the relay,
    the worker), and its probes' management commands exist and parse."""
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
    if not containers:
        return ["spec.template.spec.containers: empty"]
    problems = []
    for i, container in enumerate(containers):
        where = f"spec.template.spec.containers[{i}]"
        problems += k8s_schema.container_errors(container, where)
    argv = [*containers[0].get("command", []), *containers[0].get("args", [])]
    problems += command_problems(argv, "containers[0]")
    for key in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = ((containers[0].get(key) or {}).get("exec") or {}).get("command")
        if probe and probe[1:2] == ["manage.py"]:
            problems += command_problems(probe, f"containers[0].{key}")
    return problems


def rule_problems(doc: dict[str, Any]) -> list[str]:
    """The project rules for one Knative document."""
    kind, spec = doc["kind"], doc.get("spec") or {}
    problems = []
    name = (doc.get("metadata") or {}).get("name")
    if not isinstance(name, str) or not k8s_schema.DNS_LABEL.match(name):
        problems.append(f"metadata.name {name!r} is not a DNS-1123 label")
    if kind in ("SinkBinding", "ContainerSource"):
        problems += destination_problems(spec.get("sink"), "spec.sink")
        problems += overrides_problems(spec.get("ceOverrides") or {}, "ceOverrides")
    if kind == "SinkBinding":
        subject = spec.get("subject") or {}
        if not (
            subject.get("apiVersion")
            and subject.get("kind")
            and (subject.get("name") or subject.get("selector"))
        ):
            problems.append("spec.subject: needs apiVersion, kind, name or selector")
    if kind == "Broker" and "delivery" in spec:
        problems += delivery_problems(spec["delivery"], "spec.delivery")
    if kind == "Trigger":
        problems += trigger_problems(spec)
    return problems


def problems(doc: dict[str, Any], validators: dict) -> list[str]:
    """Everything wrong with a document: schema (or structure), then project rules."""
    if doc.get("apiVersion") in BUILTIN_GROUPS:
        found = k8s_schema.builtin_errors(doc)
        if doc["kind"] == "Deployment":
            found += relay_problems(doc.get("spec") or {})
        return found
    return k8s_schema.schema_errors(doc, validators) + rule_problems(doc)


# --- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    """What ``kubectl kustomize k8s`` renders; the raw files without kubectl."""
    rendered = k8s_schema.render(K8S)
    return rendered if rendered is not None else k8s_schema.load_raw(K8S)


@pytest.fixture(scope="module")
def validators() -> dict:
    """Strict validators from the Knative CRDs in ../shared/knative-crds/."""
    if not k8s_schema.CRD_DIR.is_dir():
        need("Knative CRDs", f"{k8s_schema.CRD_DIR} (set KNATIVE_CRDS) is missing")
    return k8s_schema.load_validators()


def knative(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in documents if d.get("apiVersion") not in BUILTIN_GROUPS]


def one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [
        d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"{kind}/{name}: found {len(found)}"
    return found[0]


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def label(doc: dict[str, Any]) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


# --- the manifests as written -----------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    listed = {path.name for path in k8s_schema.kustomization_files(K8S)}
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


def test_kustomize_renders_every_raw_document() -> None:
    rendered = k8s_schema.render(K8S)
    if rendered is None:
        # Not a failure under CI=true: kustomize here only adds the namespace and a
        # label, and every other test validates the raw files instead.
        pytest.skip("kubectl is not on PATH: validating the raw files instead")
    raw = k8s_schema.load_raw(K8S)
    assert sorted(map(label, rendered)) == sorted(map(label, raw))
    assert {d["metadata"].get("namespace", "polls") for d in rendered} == {"polls"}


def test_knative_documents_match_crds_and_rules(documents, validators) -> None:
    found = {label(doc): problems(doc, validators) for doc in knative(documents)}
    assert {name: errors for name, errors in found.items() if errors} == {}
    assert {doc["kind"] for doc in knative(documents)} == {
        "Service",
        "Broker",
        "Trigger",
        "SinkBinding",
    }


def test_builtin_documents_have_basic_structure(documents) -> None:
    # Structure only: Kubernetes' own OpenAPI schemas are not available offline.
    builtin = [d for d in documents if d.get("apiVersion") in BUILTIN_GROUPS]
    found = {label(doc): problems(doc, {}) for doc in builtin}
    assert {name: errors for name, errors in found.items() if errors} == {}
    assert {label(doc) for doc in builtin} == {
        "Namespace/polls",
        "ConfigMap/polls-settings",
        "Secret/polls-database",
        "Job/polls-migrate",
        "Deployment/polls-relay",
        "Deployment/polls-worker",
    }


def test_references_resolve(documents) -> None:
    present = {(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in documents}
    refs = []
    for doc in documents:
        spec = doc.get("spec") or {}
        for dest in (
            spec.get("sink"),
            spec.get("subscriber"),
            (spec.get("delivery") or {}).get("deadLetterSink"),
        ):
            if dest and dest.get("ref"):
                refs.append((label(doc), dest["ref"]))
        if doc["kind"] == "SinkBinding":
            refs.append((label(doc), spec["subject"]))
        pod = (spec.get("template") or {}).get("spec") or {}
        for container in pod.get("containers", []):
            for source in container.get("envFrom", []):
                for key, kind in ENV_SOURCES:
                    if key in source:
                        ref = {"apiVersion": "v1", "kind": kind, **source[key]}
                        refs.append((label(doc), ref))
    missing = [
        (owner, ref)
        for owner, ref in refs
        if ref.get("namespace") in (None, "polls")
        and (ref["apiVersion"], ref["kind"], ref["name"]) not in present
    ]
    assert len(refs) > 10
    assert missing == []


def test_triggers_deliver_to_the_receiver_url(documents) -> None:
    assert receiver_path() == "/cloudevents/"
    for trigger in of_kind(documents, "Trigger"):
        subscriber = trigger["spec"]["subscriber"]
        assert subscriber["ref"]["name"] == "polls"
        assert subscriber["uri"] == receiver_path()


def test_triggers_route_model_events_and_vote_cast(documents) -> None:
    filters = [f for t in of_kind(documents, "Trigger") for f in t["spec"]["filters"]]
    assert {"exact": {"type": "polls.VoteCast"}} in filters
    prefixes = [f["prefix"]["type"] for f in filters if "prefix" in f]
    assert prefixes == ["django.orm."]
    # The types the bridge really builds for a model change pass that filter.
    question = Question(pk=1, question_text="?", pub_date=timezone.now())
    types = {
        sources.from_signal(
            Question, signal=signal, instance=question, created=True
        ).get_type()
        for signal in (post_save, post_delete)
    }
    assert types == {"django.orm.post_save", "django.orm.post_delete"}
    assert all(t.startswith(prefixes[0]) for t in types)


def test_trigger_audience_is_the_receivers_setting(documents) -> None:
    settings = one(documents, "ConfigMap", "polls-settings")["data"]
    audiences = {
        t["spec"]["subscriber"].get("audience") for t in of_kind(documents, "Trigger")
    }
    assert audiences == {settings["CLOUDEVENTS_OIDC_AUDIENCE"]}


@pytest.mark.parametrize("deployment", ["polls-relay", "polls-worker"])
def test_web_and_deployments_send_the_same_extensions(documents, deployment) -> None:
    # Each event gets the overrides of the process that delivers it (the worker
    # emits replies).
    binding = one(documents, "SinkBinding", "polls-sink")["spec"]
    other = one(documents, "SinkBinding", f"{deployment}-sink")["spec"]
    assert binding["ceOverrides"] == other["ceOverrides"]
    assert binding["subject"]["name"] == "polls"
    assert other["subject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment,
    }
    assert other["sink"] == binding["sink"]


def relay_container(
    documents: list[dict[str, Any]], name: str = "polls-relay"
) -> dict[str, Any]:
    deployment = one(documents, "Deployment", name)
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_relay_runs_cloudevents_relay_until_stopped(documents) -> None:
    container = relay_container(documents)
    # A Deployment: with --once the pod would exit and restart.
    command = container["command"]
    assert command[:3] == ["python", "manage.py", "cloudevents_relay"]
    assert "--once" not in command
    assert "cloudevents_relay" in bridge_commands()
    assert container["image"] == IMAGE


def test_relay_is_scaled_apart_from_the_web_service(documents) -> None:
    deployment = one(documents, "Deployment", "polls-relay")
    assert deployment["spec"]["replicas"] >= 2  # several relays share the outbox


@pytest.mark.parametrize(
    ("deployment", "probes"),
    [
        ("polls-relay", ("livenessProbe", "readinessProbe")),
        ("polls-worker", ("livenessProbe",)),
    ],
)
def test_probes_read_the_heartbeat_file_written(
    documents, tmp_path, deployment, probes
) -> None:
    """The probes' own code, run against a file fresh and stale."""
    container = relay_container(documents, deployment)
    command = container["command"]
    written = command[command.index("--heartbeat-file") + 1]
    heartbeat = tmp_path / "beat"
    for key in probes:
        probe = container[key]["exec"]["command"]
        assert probe[:2] == ["python", "-c"] and written in probe[2]
        code = probe[2].replace(written, str(heartbeat))

        def run(probe_code: str = code) -> int:
            return subprocess.run([sys.executable, "-c", probe_code]).returncode

        assert run() != 0  # no heartbeat yet: not live, not ready
        heartbeat.touch()
        assert run() == 0
        os.utime(heartbeat, (1, 1))  # not touched since 1970
        assert run() != 0
        heartbeat.unlink()


def test_worker_runs_cloudevents_worker_scaled_apart(documents) -> None:
    container = relay_container(documents, "polls-worker")
    command = container["command"]
    assert command[:3] == ["python", "manage.py", "cloudevents_worker"]
    assert "--once" not in command  # a Deployment: the pod would exit and restart
    assert container["image"] == IMAGE
    assert one(documents, "Deployment", "polls-worker")["spec"]["replicas"] >= 2
    assert container["envFrom"] == relay_container(documents)["envFrom"]


@pytest.mark.django_db
def test_worker_readiness_is_the_backlogs_exit_status(documents) -> None:
    """The probe's own command, against a backlog with nothing overdue, then with."""
    from django.core.management import call_command

    from django_cloudevents_bridge.models import ReceivedEvent, TargetRun

    probe = relay_container(documents, "polls-worker")["readinessProbe"]["exec"]
    argv = probe["command"]
    assert argv[:3] == ["python", "manage.py", "cloudevents_backlog"]
    call_command(*argv[2:], stdout=io.StringIO())  # nothing due: ready
    stored = ReceivedEvent.objects.create(source="/s", event_id="1", event="{}")
    due = timezone.now() - datetime.timedelta(hours=1)
    TargetRun.objects.create(event=stored, target="t", next_attempt_at=due)
    with pytest.raises(CommandError, match="no worker"):
        call_command(*argv[2:], stdout=io.StringIO())


def test_web_service_listens_on_8000(documents) -> None:
    containers = one(documents, "Service", "polls")["spec"]["template"]["spec"][
        "containers"
    ]
    assert len(containers) == 1
    assert containers[0]["image"] == IMAGE
    assert containers[0]["ports"] == [{"containerPort": WEB_PORT}]


# --- the validator catches mistakes -----------------------------------------------


def _parent(doc: Any, path: str) -> tuple[Any, Any]:
    """The container of ``path`` (dotted; digits index lists) and its last key."""
    *parents, last = (int(k) if k.isdigit() else k for k in path.split("."))
    for key in parents:
        doc = doc[key]
    return doc, last


def put(path: str, value: Any) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        parent, key = _parent(doc, path)
        parent[key] = value

    return edit


def rename(path: str, new: str) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        parent, key = _parent(doc, path)
        parent[new] = parent.pop(key)

    return edit


def drop(path: str) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        parent, key = _parent(doc, path)
        del parent[key]

    return edit


TEMPLATE = "spec.template.spec.containers.0"
MISTAKES = [
    pytest.param(
        "SinkBinding",
        "polls-sink",
        rename("spec.subject", "subjet"),
        "'subjet' was unexpected",
        id="typo-spec.subjet",
    ),
    pytest.param(
        "SinkBinding",
        "polls-sink",
        put("spec.subject.bogus", "x"),
        "'bogus' was unexpected",
        id="unknown-subject-field",
    ),
    pytest.param(
        "Trigger",
        "polls-model-events",
        put("spec.delivery.retry", "three"),
        "'three' is not of type 'integer'",
        id="retry-three",
    ),
    pytest.param(
        "Broker",
        "default",
        put("spec.delivery.retry", "three"),
        "'three' is not of type 'integer'",
        id="broker-retry-three",
    ),
    pytest.param(
        "Broker",
        "default",
        put("spec.delivery.backoffPolicy", "fibonacci"),
        "'fibonacci' not linear/exponential",
        id="backoff-fibonacci",
    ),
    pytest.param(
        "Trigger",
        "polls-vote-cast",
        put("spec.delivery.backoffDelay", "200ms"),
        "not an ISO-8601 duration",
        id="backoff-delay-200ms",
    ),
    pytest.param(
        "Trigger",
        "polls-vote-cast",
        put("spec.delivery.timeout", "P"),
        "not an ISO-8601 duration",
        id="timeout-empty-period",
    ),
    pytest.param(
        "SinkBinding",
        "polls-sink",
        put("spec.ceOverrides.extensions.Bad_Name", "x"),
        "'Bad_Name' is not [a-z0-9]+",
        id="extension-Bad_Name",
    ),
    pytest.param(
        "SinkBinding",
        "polls-relay-sink",
        put("spec.ceOverrides.extensions.additional", 42),
        "value must be a string",
        id="extension-int-value",
    ),
    pytest.param(
        "SinkBinding",
        "polls-sink",
        put("spec.ceOverrides.extensions.type", "x"),
        "is a core attribute",
        id="extension-core-attribute",
    ),
    pytest.param(
        "Trigger",
        "polls-model-events",
        drop("spec.subscriber"),
        "spec.subscriber: required",
        id="no-subscriber",
    ),
    pytest.param(
        "Trigger",
        "polls-model-events",
        put("spec.subscriber.uri", "/cloudevents"),
        "is not the receiver",
        id="uri-without-slash",
    ),
    pytest.param(
        "Trigger",
        "polls-model-events",
        rename("spec.filters", "filterz"),
        "unknown Trigger field 'filterz'",
        id="trigger-spec-typo",
    ),
    pytest.param(
        "Trigger",
        "polls-model-events",
        put("spec.filters.0.prefix.type", ""),
        "non-empty strings",
        id="empty-prefix",
    ),
    pytest.param(
        "Trigger",
        "polls-vote-cast",
        put("spec.delivery.deadLeterSink", {"uri": "http://x/"}),
        "unknown delivery field 'deadLeterSink'",
        id="delivery-typo",
    ),
    pytest.param(
        "Deployment",
        "polls-relay",
        put(f"{TEMPLATE}.command.2", "cloudevents_relai"),
        "no management command 'cloudevents_relai'",
        id="unknown-command",
    ),
    pytest.param(
        "Deployment",
        "polls-worker",
        put(f"{TEMPLATE}.readinessProbe.exec.command.3", "--max-late"),
        "cloudevents_backlog: Error: unrecognized arguments: --max-late",
        id="probe-option-typo",
    ),
    pytest.param(
        "Deployment",
        "polls-worker",
        put(f"{TEMPLATE}.command.2", "cloudevents_workers"),
        "no management command 'cloudevents_workers'",
        id="unknown-worker-command",
    ),
    pytest.param(
        "Deployment",
        "polls-relay",
        rename(f"{TEMPLATE}.command", "comand"),
        "unknown container field 'comand'",
        id="container-typo",
    ),
    pytest.param(
        "SinkBinding",
        "polls-relay-sink",
        drop("spec.sink"),
        "spec.sink: needs a ref or a uri",
        id="no-sink",
    ),
    pytest.param(
        "Deployment",
        "polls-relay",
        put("spec.selector.matchLabels", {"app.kubernetes.io/name": "other"}),
        "must match the template's labels",
        id="selector-mismatch",
    ),
    pytest.param(
        "Deployment",
        "polls-relay",
        rename(f"{TEMPLATE}.livenessProbe.periodSeconds", "period"),
        "unknown probe field 'period'",
        id="probe-typo",
    ),
    pytest.param(
        "Deployment",
        "polls-relay",
        rename("spec.replicas", "replica"),
        "unknown Deployment field 'replica'",
        id="deployment-typo",
    ),
    pytest.param(
        "Service",
        "polls",
        put(f"{TEMPLATE}.ports.0.containerPort", "8000"),
        "'8000' is not of type 'integer'",
        id="port-string",
    ),
    pytest.param(
        "Service",
        "polls",
        put("apiVersion", "serving.knative.dev/v2"),
        "no served CRD version",
        id="unserved-version",
    ),
]


@pytest.mark.parametrize(("kind", "name", "edit", "expected"), MISTAKES)
def test_validator_catches(documents, validators, kind, name, edit, expected) -> None:
    doc = copy.deepcopy(one(documents, kind, name))
    edit(doc)
    found = problems(doc, validators)
    assert any(expected in problem for problem in found), found


def test_builtin_check_catches_a_typo(documents) -> None:
    job = copy.deepcopy(one(documents, "Job", "polls-migrate"))
    job["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    job["spec"]["backofLimit"] = 1
    assert k8s_schema.builtin_errors(job) == [
        "spec: unknown Job field 'backofLimit'",
        "spec.template.spec.restartPolicy: Never or OnFailure",
    ]
