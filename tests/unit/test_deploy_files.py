"""deploy/: the image, the Compose stack and the Kubernetes manifests, checked offline (no
container engine or cluster here): each file against its schema, then the facts an operator
relies on: non-root, no secret in any file, probes on /healthz and /readyz, one worker, and
only settings clickrec knows."""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml
from detect_secrets import SecretsCollection
from detect_secrets.settings import default_settings

from clickrec.api.routes import router
from clickrec.cli import app
from clickrec.config import Settings, load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBE = DEPLOY / "kubernetes"
MANIFESTS = sorted(KUBE.glob("*.yaml"))
SECRET_TEMPLATE = KUBE / "secret.yaml.example"
# The oldest version docs/deploy.md promises (everything used is GA well before it) and the
# newest the installed kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
IMAGE_UID = 10001
# Variables the deploy files set that are not clickrec settings, and who reads them.
OTHER_VARIABLES = {
    "PGPASSWORD": "libpq (the PostgreSQL catalog's password)",
    "PGPASSFILE": "libpq (a pgpass file holding that password)",
    "FORWARDED_ALLOW_IPS": "uvicorn (whose X-Forwarded-For to trust)",
}
# What clickrec reads beside CLICKREC_<SECTION>__<KEY> (src/clickrec/config.py).
SHORT_NAMES = {"CLICKREC_PORT": ("server", "port"), "CLICKREC_DATA_KEY": ("encryption", "data_key")}


# --- reading the files ----------------------------------------------------------------


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def resources_by_kind() -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for path in [*MANIFESTS, SECRET_TEMPLATE]:
        for doc in documents(path):
            found.setdefault(doc["kind"], []).append(doc)
    return found


def deployment(name: str) -> dict[str, Any]:
    (found,) = [d for d in resources_by_kind()["Deployment"] if d["metadata"]["name"] == name]
    return found


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's schema (docker/compose-spec, Apache-2.0), as vendored
    by check-jsonschema: no network needed."""
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads((vendor / "compose-spec.json").read_text())
    return schema


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of CMD/ENTRYPOINT/HEALTHCHECK CMD, or the shell words."""
        text = re.sub(r"^(--\S+\s+)*CMD\s+", "", self.args)  # HEALTHCHECK's options
        parsed = json.loads(text) if text.startswith("[") else shlex.split(text)
        return [str(word) for word in parsed]


def dockerfile_stages(text: str) -> list[list[Instruction]]:
    """The Dockerfile's instructions per build stage, continuation lines joined and
    comments dropped, as the builder reads them."""
    stages: list[list[Instruction]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment inside a continued instruction is dropped too
        pending += " " + line[:-1] if line.endswith("\\") else " " + line
        if line.endswith("\\"):
            continue
        keyword, _, args = pending.strip().partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), " ".join(args.split()))
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def image() -> list[list[Instruction]]:
    return dockerfile_stages((DEPLOY / "Dockerfile").read_text())


def only(stage: list[Instruction], keyword: str) -> Instruction:
    (found,) = [i for i in stage if i.keyword == keyword]
    return found


def setting_of(name: str) -> tuple[str, str] | None:
    """The (section, field) a CLICKREC_ variable sets, None if it sets nothing."""
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    section, sep, key = name.removeprefix("CLICKREC_").lower().partition("__")
    if not sep or section not in Settings.model_fields:
        return None
    model = Settings.model_fields[section].annotation
    fields = getattr(model, "model_fields", {})
    return (section, key) if key in fields else None


def clickrec_environments() -> dict[str, dict[str, str]]:
    """Every environment the deploy files give a clickrec process: name -> value (a
    Secret's value as its placeholder), by where it is set."""
    found: dict[str, dict[str, str]] = {}
    kinds = resources_by_kind()
    (configmap,) = kinds["ConfigMap"]
    (secret,) = kinds["Secret"]
    found["ConfigMap"] = dict(configmap["data"])
    found["Secret template"] = dict(secret["stringData"])
    for dep in kinds["Deployment"]:
        for container in dep["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value", "") for e in container.get("env", [])}
            found[f"{dep['metadata']['name']}/{container['name']}"] = env
    for name, service in compose()["services"].items():
        if str(service.get("image", "")).startswith("${CLICKREC_IMAGE"):
            found[f"compose {name}"] = {k: str(v) for k, v in service["environment"].items()}
    return found


def command_of(container: dict[str, Any]) -> list[str]:
    return [*container.get("command", []), *container.get("args", [])]


# --- the image ------------------------------------------------------------------------


def test_the_image_is_multi_stage_on_slim_python_311() -> None:
    stages = image()
    assert len(stages) >= 2
    for stage in stages:
        base = r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?( AS \w+)?$"
        assert re.match(base, stage[0].args), stage[0].args
    runtime = stages[-1]
    copies = [i.args for i in runtime if i.keyword in ("COPY", "ADD")]
    assert copies and all(c.startswith("--from=") for c in copies), "runtime copies sources"


def test_the_image_installs_the_lock_with_hashes_then_the_project_alone() -> None:
    runs = [i.args for i in image()[0] if i.keyword == "RUN"]
    (lock,) = [r for r in runs if "-r requirements.lock" in r]
    assert "pip install --require-hashes" in lock
    (project,) = [r for r in runs if re.search(r"pip install --no-deps \.(\s|$)", r)]
    assert runs.index(lock) < runs.index(project)
    assert "COPY requirements.lock ./" in [f"COPY {i.args}" for i in image()[0]]


def test_the_image_runs_as_a_fixed_non_root_user() -> None:
    runtime = image()[-1]
    user = only(runtime, "USER").args
    assert user == f"{IMAGE_UID}:{IMAGE_UID}", "numeric, so runAsNonRoot can check it"
    made = " ".join(i.args for i in runtime if i.keyword == "RUN")
    assert f"useradd --system --uid {IMAGE_UID} --gid {IMAGE_UID}" in made
    assert f"groupadd --system --gid {IMAGE_UID}" in made


def test_the_image_serves_on_8080_and_checks_healthz() -> None:
    runtime = image()[-1]
    assert only(runtime, "EXPOSE").args == "8080"
    assert only(runtime, "CMD").exec_form() == ["clickrec", "serve", "--host", "0.0.0.0"]
    check = only(runtime, "HEALTHCHECK")
    assert check.exec_form()[0] == "python" and "/healthz" in check.args
    assert "--start-period=" in check.args  # the online state is replayed before it answers


def test_the_build_context_holds_only_what_the_image_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "everything is left out first (var/ holds keys and histories)"
    allowed = {rule[1:].rstrip("/") for rule in rules if rule.startswith("!")}
    copied = set()
    for stage in image():
        for i in stage:
            if i.keyword == "COPY" and not i.args.startswith("--from="):
                copied.update(i.args.split()[:-1])
    assert copied == allowed


def test_the_image_holds_no_secret() -> None:
    for stage in image():
        for i in stage:
            if i.keyword in ("ENV", "ARG"):
                names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", i.args) or [i.args.split()[0]]
                for name in names:
                    assert not re.search(r"PASS|SECRET|TOKEN|DATA_KEY|API_KEY", name.upper()), i
            assert not re.search(r"\b(admin|data)\.key\b|/secrets/", i.args), i


# --- Kubernetes -----------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", [*MANIFESTS, SECRET_TEMPLATE], ids=lambda p: p.name)
def test_every_manifest_is_valid_kubernetes(path: Path, version: str) -> None:
    for doc in documents(path):
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_typo_in_a_manifest_would_be_caught() -> None:
    wrong = copy.deepcopy(deployment("clickrec-api"))
    probe = wrong["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, KUBERNETES_VERSIONS[0], strict=True)


def test_the_manifests_make_the_whole_deployment_in_one_namespace() -> None:
    kinds = resources_by_kind()
    assert {k: len(v) for k, v in kinds.items()} == {
        "Namespace": 1,
        "ConfigMap": 1,
        "Secret": 1,
        "PersistentVolumeClaim": 1,
        "Deployment": 2,
        "Service": 1,
        "HorizontalPodAutoscaler": 1,
        "PodDisruptionBudget": 1,
    }
    (namespace,) = kinds["Namespace"]
    name = namespace["metadata"]["name"]
    for doc in (d for docs in kinds.values() for d in docs if d is not namespace):
        assert doc["metadata"]["namespace"] == name, doc["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_api_probes_readyz_and_healthz_and_rolls_without_a_gap() -> None:
    api = deployment("clickrec-api")
    assert api["spec"]["replicas"] == 3
    rolling = api["spec"]["strategy"]
    assert rolling["type"] == "RollingUpdate" and rolling["rollingUpdate"]["maxUnavailable"] == 0
    (container,) = api["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    served = {getattr(route, "path", None) for route in router.routes}
    assert {"/readyz", "/healthz"} <= served
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}


@pytest.mark.parametrize("name", ["clickrec-api", "clickrec-worker"])
def test_pods_run_as_the_image_user_with_a_read_only_root(name: str) -> None:
    pod = deployment(name)["spec"]["template"]["spec"]
    context = pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == context["runAsGroup"] == context["fsGroup"] == IMAGE_UID
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    own = container["securityContext"]
    assert own["readOnlyRootFilesystem"] is True and own["allowPrivilegeEscalation"] is False
    assert own["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    data = volumes[mounts["/var/lib/clickrec"]]["persistentVolumeClaim"]["claimName"]
    (claim,) = resources_by_kind()["PersistentVolumeClaim"]
    assert data == claim["metadata"]["name"] and claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_there_is_one_worker_and_no_api_pod_runs_its_own() -> None:
    worker = deployment("clickrec-worker")
    assert worker["spec"]["replicas"] == 1
    assert worker["spec"]["strategy"] == {"type": "Recreate"}  # never two, even in a rollout
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert command_of(container) == ["clickrec", "worker"]
    (api,) = deployment("clickrec-api")["spec"]["template"]["spec"]["containers"]
    assert "--no-worker" in command_of(api)
    # `serve --processes N` with N > 1 starts a worker whatever --no-worker says.
    assert "--processes" not in command_of(api)
    (configmap,) = resources_by_kind()["ConfigMap"]
    assert configmap["data"]["CLICKREC_SERVER__PROCESSES"] == "1"


def test_service_hpa_and_budget_point_at_the_api_pods() -> None:
    kinds = resources_by_kind()
    api = deployment("clickrec-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert api["spec"]["selector"]["matchLabels"] == labels
    (service,) = kinds["Service"]
    assert service["spec"]["selector"] == labels
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    (budget,) = kinds["PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"] == labels
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", api["metadata"]["name"])
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    worker_labels = deployment("clickrec-worker")["spec"]["template"]["metadata"]["labels"]
    assert worker_labels != labels, "the worker must not receive API traffic"


def test_pods_take_secrets_from_the_secret_and_the_rest_from_the_configmap() -> None:
    kinds = resources_by_kind()
    (secret,) = kinds["Secret"]
    (configmap,) = kinds["ConfigMap"]
    for name in ("clickrec-api", "clickrec-worker"):
        (container,) = deployment(name)["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"configMapRef": {"name": configmap["metadata"]["name"]}}]
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert set(refs) == set(secret["stringData"]), name
        for variable, ref in refs.items():
            assert ref == {"name": secret["metadata"]["name"], "key": variable}
    assert not set(configmap["data"]) & set(secret["stringData"])


# --- Compose --------------------------------------------------------------------------


def test_the_compose_file_follows_the_compose_specification() -> None:
    validator = jsonschema.Draft202012Validator(compose_schema())
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors


def test_a_typo_in_the_compose_file_would_be_caught() -> None:
    wrong = compose()
    wrong["services"]["redis"]["healthcheck"]["intervall"] = "5s"
    validator = jsonschema.Draft202012Validator(compose_schema())
    assert list(validator.iter_errors(wrong))


def test_compose_runs_durable_stores_replicas_one_worker_and_a_proxy() -> None:
    services = compose()["services"]
    redis = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis and "--appendfsync always" in redis
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    postgres = services["postgres"]
    assert any(v.endswith(":/var/lib/postgresql/data") for v in postgres["volumes"])
    assert postgres["environment"]["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres["environment"]
    api, worker = services["api"], services["worker"]
    assert api["deploy"]["replicas"] >= 2 and "ports" not in api  # reached through the proxy
    assert api["command"] == ["clickrec", "serve", "--host", "0.0.0.0", "--no-worker"]
    assert worker["deploy"]["replicas"] == 1 and worker["command"] == ["clickrec", "worker"]
    assert api["volumes"] == worker["volumes"], "one shared home, lake and models"
    (mount,) = api["volumes"]
    root = mount.split(":")[1]
    for variable in ("CLICKREC_HOME", "CLICKREC_STORES__LAKE", "CLICKREC_STORES__MODELS"):
        assert api["environment"][variable].removeprefix("file://").startswith(root + "/")
    proxy = services["proxy"]
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in proxy["volumes"]
    assert proxy["ports"] == ["8080:8080"]


def test_compose_starts_each_service_after_what_it_needs_is_healthy() -> None:
    services = compose()["services"]
    needs = {name: s.get("depends_on", {}) for name, s in services.items()}
    assert needs["proxy"] == {"api": {"condition": "service_healthy"}}
    for name in ("api", "worker"):
        assert needs[name] == {
            "redis": {"condition": "service_healthy"},
            "postgres": {"condition": "service_healthy"},
        }
    for name, service in services.items():
        check = service["healthcheck"]
        if name == "worker":
            assert check == {"disable": True}  # no HTTP: the image's /healthz check is off
        else:
            assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])


def test_compose_secrets_are_files_never_values() -> None:
    doc = compose()
    assert all(set(s) == {"file"} for s in doc["secrets"].values())
    for name, service in doc["services"].items():
        for secret in service.get("secrets", []):
            assert secret in doc["secrets"], name
    env = doc["services"]["api"]["environment"]
    assert env["PGPASSFILE"] == "/run/secrets/pgpass"
    assert env["CLICKREC_ENCRYPTION__KEY_FILE"] == "/run/secrets/data_key"
    assert urlsplit(env["CLICKREC_STORES__CATALOG"]).password is None


# --- HAProxy --------------------------------------------------------------------------


def haproxy_config() -> str:
    return (DEPLOY / "haproxy.cfg").read_text()


def test_haproxy_sends_traffic_only_to_ready_replicas() -> None:
    config = haproxy_config()
    backend = config.split("backend ", 1)[1]
    assert "option httpchk" in backend
    assert re.search(r"^\s*http-check send meth GET uri /readyz\s*$", backend, re.MULTILINE)
    assert re.search(r"^\s*http-check expect status 200\s*$", backend, re.MULTILINE)
    assert re.search(r"^\s*default-server check\b", backend, re.MULTILINE)
    assert re.search(r"^\s*server-template \w+ \d+ api:8080\s*$", backend, re.MULTILINE)
    assert re.search(r"^\s*option forwardfor\s*$", config, re.MULTILINE)
    api_env = compose()["services"]["api"]["environment"]
    assert api_env["FORWARDED_ALLOW_IPS"], "the replicas trust the proxy's X-Forwarded-For"


def test_haproxy_accepts_its_config() -> None:
    binary = shutil.which("haproxy")
    if binary is None:
        pytest.skip("haproxy is not installed: its own check (haproxy -c) did not run")
    done = subprocess.run(  # nosec B603: a fixed command line
        [binary, "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- settings, commands and secrets across all the files -------------------------------


def test_every_variable_the_deploy_files_set_is_a_clickrec_setting_or_known() -> None:
    for where, env in clickrec_environments().items():
        for name in env:
            if name.startswith("CLICKREC_"):
                if name == "CLICKREC_HOME":
                    continue  # the home folder, read before the settings
                assert setting_of(name) is not None, f"{where}: {name} sets nothing"
            else:
                assert name in OTHER_VARIABLES, f"{where}: who reads {name}?"


def test_a_misspelt_variable_would_be_caught() -> None:
    assert setting_of("CLICKREC_STORES__EVENT_LOG") == ("stores", "event_log")
    assert setting_of("CLICKREC_DATA_KEY") == ("encryption", "data_key")
    assert setting_of("CLICKREC_STORES__EVENTLOG") is None
    assert setting_of("CLICKREC_STORE__LAKE") is None
    assert setting_of("CLICKREC_STORES_LAKE") is None


@pytest.mark.parametrize("where", ["ConfigMap", "compose api", "compose worker"])
def test_the_deploy_settings_load(where: str, tmp_path: Path) -> None:
    env = clickrec_environments()[where]
    settings = load_settings(tmp_path / "home", environ=env)
    for name, value in env.items():
        place = setting_of(name)
        if place is not None:
            loaded = getattr(getattr(settings, place[0]), place[1])
            assert str(loaded) == value, name


def parse_command_line(words: list[str]) -> dict[str, Any]:
    """The options a `clickrec` command line gives its subcommand; raises on a subcommand
    or an option the CLI does not have (nothing runs)."""
    assert words[0] == "clickrec"
    group = typer.main.get_command(app)
    assert isinstance(group, typer.core.TyperGroup)
    sub = group.commands[words[1]]
    params: dict[str, Any] = sub.make_context(words[1], list(words[2:])).params
    return params


def test_every_command_the_deploy_files_run_is_a_clickrec_command() -> None:
    commands = [only(image()[-1], "CMD").exec_form()]
    for service in compose()["services"].values():
        if service.get("command", [None])[0] == "clickrec":
            commands.append(service["command"])
    for dep in resources_by_kind()["Deployment"]:
        for container in dep["spec"]["template"]["spec"]["containers"]:
            commands.append(command_of(container))
    assert len(commands) == 5
    for words in commands:
        params = parse_command_line(words)
        if words[1] == "serve":
            assert params["host"] == "0.0.0.0"


def test_a_misspelt_option_would_be_caught() -> None:
    assert parse_command_line(["clickrec", "serve", "--no-worker"])["no_worker"] is True
    with pytest.raises(Exception, match="No such option: --no-wroker"):
        parse_command_line(["clickrec", "serve", "--no-wroker"])


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file())


def test_no_secret_literal_in_any_deploy_file() -> None:
    files = deploy_files()
    assert {DEPLOY / "Dockerfile", DEPLOY / "compose.yaml", SECRET_TEMPLATE} <= set(files)
    found = SecretsCollection()
    with default_settings():
        found.scan_files(*(str(p) for p in files))
    assert not [(name, s.type, s.line_number) for name, ss in found.data.items() for s in ss]
    for path in files:
        text = path.read_text()
        # A URL with a password in it, other than a <placeholder> or a $VARIABLE.
        assert not re.search(r"://[^/\s:@]*:(?![<$])[^@\s/]+@", text), path
        assert not re.search(r"\b[A-Za-z0-9+/]{43}=", text), f"{path}: a base64 data key?"
        assert not re.search(r"\bck_[A-Za-z0-9_-]{16,}", text), f"{path}: an API key?"


def test_the_secret_template_holds_placeholders_only() -> None:
    (secret,) = documents(SECRET_TEMPLATE)
    assert "data" not in secret
    for name, value in secret["stringData"].items():
        # Nothing but <placeholders>, a URL's scheme and its punctuation and port.
        rest = re.sub(r"^[a-z+]+://", "", re.sub(r"<[^>]+>", "", value))
        assert "<" in value and not re.search(r"[A-Za-z]", rest), f"{name}: {value}"
    assert not SECRET_TEMPLATE.name.endswith((".yaml", ".yml", ".json"))  # apply -f skips it
