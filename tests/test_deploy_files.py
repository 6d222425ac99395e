"""docker-compose.yml, the Dockerfile and the Procfile cannot run here: check they agree
with the code (services, commands, queues, environment names)."""

import json
import shlex
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands

from companion import env

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = ("web", "worker", "writer", "beat", "flower")
EXPECTED_QUEUES = {
    settings.SCHEDULER_QUEUE,
    *settings.DELIVERY_QUEUES.values(),
    settings.OUTREACH_QUEUE,
    settings.INBOUND_QUEUE,
}


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def commands_in(text: str) -> list[list[str]]:
    """Each shell command of a service (split on &&), as argv lists, without the
    NAME=value assignments before it (assignments_in has those)."""
    text = text.strip()
    if text.startswith('sh -c "'):
        text = text.removeprefix('sh -c "').removesuffix('"')
    commands = [shlex.split(part) for part in text.split("&&")]
    return [argv[len(_assignments(argv)) :] for argv in commands]


def _assignments(argv: list[str]) -> list[str]:
    taken = []
    for word in argv:
        if "=" not in word or not word.split("=", 1)[0].isidentifier():
            break
        taken.append(word.split("=", 1)[0])
    return taken


def test_the_procfile_sets_only_environment_variables_the_settings_read():
    for name, command in procfile().items():
        variables = set(_assignments(shlex.split(command)))
        assert variables <= env.READ, f"{name}: {variables - env.READ} are never read"


def all_commands() -> list[tuple[str, list[str]]]:
    found = [(f"compose {n}", argv) for n in APP_SERVICES
             for argv in commands_in(COMPOSE["services"][n]["command"])]  # fmt: skip
    found += [(f"Procfile {n}", argv) for n, cmd in procfile().items() for argv in commands_in(cmd)]
    return found


def test_compose_has_the_stack_services():
    assert set(COMPOSE["services"]) == {"postgres", "redis", *APP_SERVICES, "ollama"}
    # The local language model is optional: only with `--profile llm`.
    assert COMPOSE["services"]["ollama"]["profiles"] == ["llm"]


def test_compose_builds_from_the_dockerfile_that_exists():
    for name in APP_SERVICES:
        build = COMPOSE["services"][name]["build"]
        assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_compose_sets_only_environment_variables_the_settings_read():
    for name in APP_SERVICES:
        variables = set(COMPOSE["services"][name]["environment"])
        assert variables <= env.READ, f"{name}: {variables - env.READ} are never read"
        assert {"DATABASE_URL", "REDIS_URL", "DJANGO_SECRET_KEY"} <= variables


def test_compose_database_url_matches_the_postgres_service():
    pg = COMPOSE["services"]["postgres"]["environment"]
    url = COMPOSE["services"]["web"]["environment"]["DATABASE_URL"]
    user, password, db = pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"]
    assert url == f"postgres://{user}:{password}@postgres:5432/{db}"
    assert COMPOSE["services"]["web"]["environment"]["REDIS_URL"].startswith("redis://redis:")


@pytest.mark.parametrize(("where", "argv"), all_commands())
def test_every_command_names_something_that_exists(where, argv):
    program = argv[0]
    if program == "python":
        assert argv[1] == "manage.py"
        assert argv[2] in get_commands(), f"{where}: no management command {argv[2]}"
    elif program == "celery":
        assert argv[1:3] == ["-A", "companion"], where
        assert argv[3] in {"worker", "beat", "flower"}, where
    elif program == "gunicorn":
        assert argv[1:] == ["-c", "python:companion.gunicorn_conf", "companion.wsgi:application"]
        __import__("companion.wsgi")
    else:
        pytest.fail(f"{where}: unexpected program {program}")


@pytest.mark.parametrize("where", ["compose", "Procfile"])
def test_the_workers_together_consume_every_queue_the_code_publishes_to(where):
    queues = [
        set(argv[argv.index("--queues") + 1].split(","))
        for name, argv in all_commands()
        if name.startswith(where) and "worker" in argv
    ]
    assert set().union(*queues) == EXPECTED_QUEUES
    # The companion's writers have workers of their own: a slow model holds no delivery.
    assert {settings.OUTREACH_QUEUE} in queues


def test_every_app_service_runs_the_same_image():
    images = {COMPOSE["services"][name]["image"] for name in APP_SERVICES}
    builds = {tuple(COMPOSE["services"][name]["build"].items()) for name in APP_SERVICES}
    assert (len(images), len(builds)) == (1, 1)


def dockerfile_stages() -> dict[str, list[list[str]]]:
    """The Dockerfile's instructions (continuation lines joined, comments dropped) per
    stage, by the stage's name."""
    text = (ROOT / "deploy" / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = line.split()
        if words[0] == "FROM":
            current = stages.setdefault(words[-1] if "AS" in words else str(len(stages)), [])
        current.append(words)
    return stages


def test_the_image_is_built_in_stages_and_runs_without_the_test_tools():
    stages = dockerfile_stages()
    assert list(stages) == ["builder", "runtime"]
    builder, runtime = stages["builder"], stages["runtime"]
    installs = [" ".join(words) for words in builder if words[0] == "RUN" and "pip" in words]
    assert installs == ["RUN pip install -r /tmp/requirements.txt"]
    copied = [words for stage in stages.values() for words in stage if words[0] == "COPY"]
    assert not any("requirements-dev.txt" in words for words in copied)
    # The runtime takes the builder's virtualenv and installs no Python package itself;
    # its one system package is PostgreSQL's client, for the backups.
    assert ["COPY", "--from=builder", "/opt/venv", "/opt/venv"] in runtime
    assert not any(words[0] == "RUN" and "pip" in words for words in runtime)
    system = [w for words in runtime if words[0] == "RUN" and "apt-get" in words for w in words]
    assert "postgresql-client" in system and "--no-install-recommends" in system
    # Static files are collected when the image is built: the root filesystem is
    # read-only when it runs.
    assert any(words[0] == "RUN" and "collectstatic" in words for words in runtime)


def test_the_image_runs_as_a_user_that_owns_nothing():
    runtime = dockerfile_stages()["runtime"]
    (user,) = [words[1] for words in runtime if words[0] == "USER"]
    assert user.isdigit() and int(user) >= 1000
    # The code is copied as root (no --chown), and the user is set after every COPY and
    # RUN, so nothing the processes run can be written by them.
    copies = [words for words in runtime if words[0] == "COPY"]
    assert not any(word.startswith("--chown") for words in copies for word in words)
    instructions = [words[0] for words in runtime]
    last_write = max(i for i, word in enumerate(instructions) if word in {"COPY", "RUN"})
    assert instructions.index("USER") > last_write
    assert not any(words[0] == "RUN" and "chown" in words for words in runtime)


def test_the_image_starts_gunicorn_with_the_workers_the_settings_give():
    cmd = dockerfile_stages()["runtime"][-1]
    assert cmd[0] == "CMD"
    argv = json.loads(" ".join(cmd[1:]))
    assert argv == [
        "gunicorn",
        "-c",
        "python:companion.gunicorn_conf",
        "companion.wsgi:application",
    ]
    from companion import gunicorn_conf

    assert gunicorn_conf.workers == settings.WEB_CONCURRENCY


def test_the_image_installs_the_requirements_and_runs_an_installed_server():
    requirements = (ROOT / "requirements.txt").read_text().lower()
    for package in ("gunicorn", "celery", "flower"):
        assert f"\n{package}" in requirements or requirements.startswith(package)
