"""Offline checks of the deployment files: compose.yaml, deploy/Dockerfile and the settings they name.

No container engine runs here, so nothing is built or started: the compose file is validated against
the Compose specification's JSON Schema, and the files are read to check that they agree with each
other and with the Python package (subcommands, settings, ports).
"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from trace_service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
CLI = ROOT / "trace_service" / "cli.py"

APP_SERVICES = {"migrate", "api", "worker", "deliver"}
# The subcommands of `trace-service` that containers may run (`dev` is for people, not containers).
# trace_service/cli.py is checked for them as well once it exists; until then this list is the
# reference, taken from the CLI's specification in docs.
CONTAINER_SUBCOMMANDS = {"migrate", "api", "worker", "deliver"}

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The final stage's instructions as (INSTRUCTION, arguments), continuation lines joined."""
    stages = _dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    assert len(stages) >= 2, "the Dockerfile must be multi-stage"
    return stages[-1]


def _dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped by docker too
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    assert not buf, "the Dockerfile ends inside a continued line"
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        assert stages, f"instruction before the first FROM: {line}"
        stages[-1].append((instruction, args.strip()))
    return stages


def _instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list), f"not the exec (JSON array) form: {args}"
    assert all(isinstance(v, str) for v in value)
    return value


def _port_option(command: list[str]) -> int:
    assert "--port" in command, f"no --port in {command}"
    return int(command[command.index("--port") + 1])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the `- KEY=value` form
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _interpolate_defaults(value: str) -> str:
    """What compose substitutes when no variable is set: defaults, and a placeholder for required ones."""

    def repl(m: re.Match[str]) -> str:
        op = m.group("op") or ""
        if op.endswith("-"):
            return m.group("arg")
        if op.endswith("?"):
            return "required-value"
        return ""

    return _INTERPOLATION.sub(repl, value)


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # the short form means service_started
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _services_of_app_image(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    images = {s.get("image") for name, s in compose["services"].items() if name in APP_SERVICES}
    return {
        name: s
        for name, s in compose["services"].items()
        if "build" in s or (s.get("image") is not None and s.get("image") in images)
    }


# --- the compose file is valid Compose -------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    exe = Path(sys.executable).parent / "check-jsonschema"
    assert exe.exists(), f"check-jsonschema is not installed next to {sys.executable}"
    result = subprocess.run(
        [str(exe), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_no_obsolete_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose


# --- image and build ----------------------------------------------------------------------------


def test_every_app_service_builds_the_one_image_from_deploy_dockerfile(compose: dict[str, Any]) -> None:
    services = _services_of_app_image(compose)
    assert set(services) == APP_SERVICES
    images = {s.get("image") for s in services.values()}
    assert len(images) == 1, f"migrate, api and worker must run the same image, got {images}"
    for name, service in services.items():
        build = service.get("build")
        assert isinstance(build, dict), f"{name}: build must name the context and the Dockerfile"
        context = (COMPOSE.parent / build.get("context", ".")).resolve()
        assert context == ROOT, f"{name}: the build context must be the repository root"
        dockerfile = (context / build.get("dockerfile", "Dockerfile")).resolve()
        assert dockerfile == DOCKERFILE.resolve(), f"{name}: builds from {dockerfile}"
        assert dockerfile.is_file()


def test_dockerfile_stages_and_user(dockerfile: list[tuple[str, str]]) -> None:
    stages = _dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    for stage in stages:
        base = stage[0][1].split()[0]
        assert base == "python:3.11-slim", f"stage based on {base}"
    # The wheel is built in an earlier stage and only installed in the last one.
    assert any("pip wheel" in args for args in _instructions(stages[0], "RUN"))
    assert any("from=" in args for args in _instructions(dockerfile, "RUN") + _instructions(dockerfile, "COPY"))
    users = _instructions(dockerfile, "USER")
    assert users, "the final stage must switch to a non-root user"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    env = " ".join(_instructions(dockerfile, "ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    # No compiler or package manager work in the runtime image.
    runs = " ".join(_instructions(dockerfile, "RUN"))
    assert "apt-get install" not in runs
    assert "build-essential" not in runs


def test_dockerfile_copies_only_what_exists(dockerfile: list[tuple[str, str]]) -> None:
    stages = _dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))
    for stage in stages:
        for args in _instructions(stage, "COPY"):
            if args.startswith("--from"):
                continue
            *sources, _dest = args.split()
            for source in sources:
                if any(ch in source for ch in "*?["):
                    continue  # optional by design (README*)
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (".venv", ".git", ".trace-data", ".pytest_cache", "**/__pycache__"):
        assert needed in patterns, f".dockerignore lacks {needed}"
    for kept in ("pyproject.toml", "trace_service"):
        assert kept not in patterns


# --- commands, ports, health -------------------------------------------------------------------


def test_commands_are_real_subcommands(compose: dict[str, Any], dockerfile: list[tuple[str, str]]) -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    scripts = pyproject["project"]["scripts"]
    assert "trace-service" in scripts
    commands = {name: compose["services"][name].get("command") for name in APP_SERVICES}
    commands["<image CMD>"] = _exec_form(_instructions(dockerfile, "CMD")[-1])
    used = set()
    for name, command in commands.items():
        assert isinstance(command, list), f"{name}: command must be the exec (list) form"
        assert command[0] == "trace-service", f"{name}: runs {command[0]}"
        assert command[1] in CONTAINER_SUBCOMMANDS, f"{name}: unknown subcommand {command[1]}"
        used.add(command[1])
    assert used == CONTAINER_SUBCOMMANDS
    assert commands["migrate"][1] == "migrate"
    assert commands["worker"][1] == "worker"
    assert commands["api"][1] == "api"
    if CLI.exists():
        cli = CLI.read_text(encoding="utf-8")
        for sub in CONTAINER_SUBCOMMANDS:
            assert f'"{sub}"' in cli, f"trace_service/cli.py has no subcommand {sub!r}"


def test_api_port_agrees_between_dockerfile_and_compose(
    compose: dict[str, Any], dockerfile: list[tuple[str, str]]
) -> None:
    cmd = _exec_form(_instructions(dockerfile, "CMD")[-1])
    assert cmd[:2] == ["trace-service", "api"]
    # Listen on every interface of the container, else the published port reaches nothing.
    assert ipaddress.ip_address(cmd[cmd.index("--host") + 1]).is_unspecified
    port = _port_option(cmd)
    exposed = {int(p.split("/")[0]) for args in _instructions(dockerfile, "EXPOSE") for p in args.split()}
    assert port in exposed

    api = compose["services"]["api"]
    if api.get("command"):
        assert _port_option(api["command"]) == port
    container_ports = set()
    for mapping in api.get("ports", []):
        if isinstance(mapping, dict):
            container_ports.add(int(mapping["target"]))
        else:
            container_ports.add(int(str(mapping).split(":")[-1].split("/")[0]))
    assert port in container_ports, f"api publishes {container_ports}, the server listens on {port}"

    image_check = " ".join(_instructions(dockerfile, "HEALTHCHECK"))
    assert f"127.0.0.1:{port}/healthz" in image_check
    assert "curl" not in image_check
    api_check = " ".join(str(part) for part in api["healthcheck"]["test"])
    assert re.search(rf"127\.0\.0\.1:{port}/(healthz|readyz)", api_check)


def test_services_without_http_disable_the_image_healthcheck(compose: dict[str, Any]) -> None:
    for name in ("migrate", "worker"):
        service = compose["services"][name]
        assert service.get("healthcheck", {}).get("disable") is True, name
        assert "ports" not in service, name


# --- start order -----------------------------------------------------------------------------


def test_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert _depends_on(services["migrate"]) == {"postgres": "service_healthy", "kafka": "service_healthy"}
    assert str(services["migrate"].get("restart")) == "no"
    for name in ("api", "worker"):
        assert _depends_on(services[name]).get("migrate") == "service_completed_successfully", name
    assert services["worker"].get("restart") == "unless-stopped"
    # A `service_healthy` condition on a service without a healthcheck would never be met.
    for name, service in services.items():
        for dep, condition in _depends_on(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            if condition == "service_healthy":
                check = services[dep].get("healthcheck") or {}
                assert check.get("test"), f"{dep} has no healthcheck"
                assert not check.get("disable"), f"{dep} disables its healthcheck"


def test_postgres_and_kafka_health_and_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert str(services["postgres"]["image"]).startswith("postgres:16")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert str(services["kafka"]["image"]).startswith("apache/kafka:3.9.")
    kafka_check = " ".join(services["kafka"]["healthcheck"]["test"])
    assert re.search(r"/opt/kafka/bin/kafka-(broker-api-versions|topics)\.sh", kafka_check)
    named = set(compose.get("volumes") or {})
    for name in ("postgres", "kafka"):
        mounts = [str(v).split(":")[0] for v in services[name].get("volumes", [])]
        assert any(m in named for m in mounts), f"{name} keeps its data in no named volume"


def test_kafka_is_single_node_kraft_without_auto_topic_creation(compose: dict[str, Any]) -> None:
    env = _environment(compose["services"]["kafka"])
    assert env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "").lower() == "false"
    roles = {r.strip() for r in env.get("KAFKA_PROCESS_ROLES", "").split(",")}
    assert roles == {"broker", "controller"}
    node_id = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{node_id}@kafka:")
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert f"{controller}://" in env["KAFKA_LISTENERS"]
    assert controller not in env["KAFKA_ADVERTISED_LISTENERS"]
    # The bootstrap the service is given must be the broker's advertised listener.
    trace_env = _environment(compose["services"]["api"])
    assert f"//{trace_env['TRACE_KAFKA_BOOTSTRAP']}" in env["KAFKA_ADVERTISED_LISTENERS"]
    # One broker: replication cannot exceed 1 anywhere.
    assert int(trace_env["TRACE_REPLICATION_FACTOR"]) == 1
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1


# --- settings --------------------------------------------------------------------------------


def test_every_trace_variable_is_a_setting(dockerfile: list[tuple[str, str]]) -> None:
    text = COMPOSE.read_text(encoding="utf-8") + "\n".join(_instructions(dockerfile, "ENV"))
    named = set(re.findall(r"\bTRACE_[A-Z0-9_]+\b", text))
    assert named, "compose.yaml names no TRACE_ variable"
    fields = set(Settings.model_fields)
    unknown = sorted(v for v in named if v.removeprefix("TRACE_").lower() not in fields)
    assert not unknown, f"not fields of trace_service.settings.Settings: {unknown}"


def test_app_services_share_one_environment_that_settings_accept(compose: dict[str, Any]) -> None:
    envs = [_environment(compose["services"][name]) for name in sorted(APP_SERVICES)]
    assert all(env == envs[0] for env in envs), "migrate, api and worker must share the environment"
    env = envs[0]
    for required in ("TRACE_DATABASE_URL", "TRACE_KAFKA_BOOTSTRAP", "TRACE_ADMIN_TOKEN", "TRACE_KEY_PEPPER"):
        assert required in env
    values = {
        k.removeprefix("TRACE_").lower(): _interpolate_defaults(v) for k, v in env.items() if k.startswith("TRACE_")
    }
    settings = Settings(**values)  # raises on a value of the wrong type, e.g. a non-integer partition count
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.database_url.split("@", 1)[1].startswith("postgres:5432/")
    assert settings.kafka_bootstrap == "kafka:9092"
    assert settings.consumer_group == "trace-projector"
    assert settings.log_format in {"json", "console"}


def test_secrets_are_required_and_never_written_in(compose: dict[str, Any]) -> None:
    env = _environment(compose["services"]["api"])
    for secret in ("TRACE_ADMIN_TOKEN", "TRACE_KEY_PEPPER"):
        m = _INTERPOLATION.fullmatch(env[secret])
        assert m, f"{secret} must come from the environment, not the file"
        assert m.group("name") == secret
        assert m.group("op") in {"?", ":?"}, f"{secret} must be required (${{{secret}:?...}})"
