"""docker-compose.yml, the Dockerfile and the Procfile cannot run here: check they agree
with the code (services, commands, queues, environment names)."""

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
        assert argv[1] == "companion.wsgi:application"
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


def test_the_dockerfile_installs_the_requirements_and_runs_an_installed_server():
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile
    requirements = (ROOT / "requirements.txt").read_text().lower()
    for package in ("gunicorn", "celery", "flower"):
        assert f"\n{package}" in requirements or requirements.startswith(package)
