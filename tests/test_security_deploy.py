"""What the deployment files and settings promise about secrets, Flower, HTTPS, the
Content-Security-Policy and the production image (docs/security.md, items 3, 6, 15, 16
and 19). Flower and `manage.py check --deploy` run as real processes."""

import base64
import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError

from patients.inbox_links import inbox_link_issue
from patients.models import Membership

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).parent / "celery")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
APP_SERVICES = ("web", "worker", "writer", "beat", "flower")
FLOWER_CONF = "--conf=companion/flowerconfig.py"
# The switches the test environment (pyproject.toml) sets for plain HTTP.
HTTPS_SWITCHES = ("DJANGO_SECURE_SSL_REDIRECT", "DJANGO_SECURE_COOKIES")


def production_env(**extra: str) -> dict[str, str]:
    """This process's environment with production's settings: DEBUG off, a long random
    key, a real host name, and none of the test suite's plain-HTTP switches."""
    env = {key: value for key, value in os.environ.items() if key not in HTTPS_SWITCHES}
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="companion.example.org",
        DJANGO_SETTINGS_MODULE="companion.settings",
    )
    env.update(extra)
    return env


def start_up(**env: str) -> subprocess.CompletedProcess:
    """Loads the settings in a fresh interpreter and prints the ones named in PRINT."""
    code = (
        "import os; from django.conf import settings; settings.INSTALLED_APPS; "
        "print([getattr(settings, n) for n in os.environ.get('PRINT', '').split()])"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=production_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


# -- 3. No default secret key ------------------------------------------------------------


def test_compose_refuses_to_start_without_a_secret_key():
    for name in APP_SERVICES:
        value = COMPOSE["services"][name]["environment"]["DJANGO_SECRET_KEY"]
        assert re.fullmatch(r"\$\{DJANGO_SECRET_KEY:\?[^}]+\}", value), f"{name}: {value}"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("change-me-in-production", "a placeholder"),
        ("test-secret-key", "has 15 characters"),
        ("x" * 49, "has 49 characters"),
        ("ab" * 40, "fewer than 5 different characters"),
        ("django-insecure-" + "k3y" * 20, "a placeholder"),
    ],
)
def test_production_refuses_a_placeholder_or_short_secret_key(key, problem):
    result = start_up(DJANGO_SECRET_KEY=key)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr and problem in result.stderr
    assert key not in result.stderr  # a secret is never echoed, even a weak one


def test_a_long_random_key_starts_and_debug_takes_any_key():
    assert start_up().returncode == 0
    assert start_up(DJANGO_DEBUG="true", DJANGO_SECRET_KEY="short").returncode == 0


def test_every_key_the_repository_sets_would_start_production():
    """The test suite and the benchmarks run with DEBUG off: each key the repository
    sets must pass the settings' checks (the lint step and the image build run with
    development settings and set none)."""
    files = [
        "Makefile",
        "pyproject.toml",
        "tests/conftest.py",
        "tests/bench/run.py",
        "tests/chaos/conftest.py",
        "deploy/Dockerfile",
        ".ci/run",
        "docker-compose.yml",
        "README.md",
        *(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    ]
    # NAME=value, NAME: value, "NAME": "value"; not the name inside ${NAME:?...}.
    pattern = re.compile(r"""(?<!\$\{)DJANGO_SECRET_KEY"?\s*[:=]\s*["']?([^"'\s]*)""")
    found = []
    for name in files:
        for value in pattern.findall((ROOT / name).read_text()):
            if value and not value.startswith("$"):  # compose and shell substitutions
                found.append((name, value))
                assert len(value) >= 50 and len(set(value)) >= 5, (name, value)
    assert {name for name, _ in found} >= {"pyproject.toml", "tests/bench/run.py"}


# -- 6. Flower asks for a login ----------------------------------------------------------


def test_flower_is_started_with_its_login_configuration_on_loopback():
    compose = COMPOSE["services"]["flower"]
    assert FLOWER_CONF in compose["command"].split()
    assert compose["ports"] == ["127.0.0.1:5555:5555"]
    assert re.fullmatch(
        r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", compose["environment"]["FLOWER_BASIC_AUTH"]
    )
    local = procfile()["flower"].split()
    assert FLOWER_CONF in local and "--address=127.0.0.1" in local


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_flower(port: int, **env: str) -> subprocess.Popen:
    argv = [
        CELERY,
        "-A",
        "companion",
        "flower",
        f"--port={port}",
        "--address=127.0.0.1",
        FLOWER_CONF,
    ]
    environment = production_env(**env)
    environment.pop("FLOWER_BASIC_AUTH", None)
    environment.update(env)
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> str:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
    return output


def test_flower_refuses_to_start_without_a_login_outside_debug():
    flower = start_flower(free_port())
    with contextlib.suppress(subprocess.TimeoutExpired):
        flower.wait(timeout=30)
    output = stop(flower)
    assert flower.returncode not in (None, 0), "Flower started without a login"
    assert "FLOWER_BASIC_AUTH must be set" in output


def test_flower_refuses_a_short_password_outside_debug():
    flower = start_flower(free_port(), FLOWER_BASIC_AUTH="ops:short")
    with contextlib.suppress(subprocess.TimeoutExpired):
        flower.wait(timeout=30)
    output = stop(flower)
    assert flower.returncode not in (None, 0)
    assert "FLOWER_BASIC_AUTH" in output and "12" in output and "short" not in output


def get(url: str, auth: str | None = None) -> int:
    request = urllib.request.Request(url)  # noqa: S310 - loopback
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_flower_answers_only_with_the_login(broker):
    port, login = free_port(), "ops:" + secrets.token_urlsafe(16)
    flower = start_flower(port, FLOWER_BASIC_AUTH=login)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and flower.poll() is None:
            try:
                status = get(f"http://127.0.0.1:{port}/")
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        else:
            pytest.fail(f"Flower did not answer:\n{stop(flower)}")
        assert status == 401
        assert get(f"http://127.0.0.1:{port}/", "ops:wrong-password") == 401
        assert get(f"http://127.0.0.1:{port}/", login) == 200
    finally:
        stop(flower)


def test_make_run_gives_flower_a_login_and_shows_it():
    dry_run = subprocess.run(
        ["make", "-n", "run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"},
    )
    banner = next(line for line in dry_run.stdout.splitlines() if "Flower:" in line)
    assert "login" in banner
    makefile = (ROOT / "Makefile").read_text()
    assert "export FLOWER_BASIC_AUTH" in makefile


# -- 15. HTTPS: check --deploy has nothing to say -----------------------------------------


def test_check_deploy_finds_nothing_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr


def test_each_https_setting_can_be_switched_off_for_plain_http():
    names = (
        "SECURE_SSL_REDIRECT SESSION_COOKIE_SECURE CSRF_COOKIE_SECURE SECURE_HSTS_SECONDS "
        "SECURE_HSTS_INCLUDE_SUBDOMAINS SECURE_HSTS_PRELOAD SECURE_PROXY_SSL_HEADER"
    )
    secure = start_up(PRINT=names)
    assert secure.stdout.strip() == "[True, True, True, 31536000, True, True, None]"
    plain = start_up(
        PRINT=names,
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_SECURE_COOKIES="0",
        DJANGO_SECURE_HSTS_SECONDS="0",
        DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS="no",
        DJANGO_SECURE_HSTS_PRELOAD="off",
    )
    assert plain.stdout.strip() == "[False, False, False, 0, False, False, None]"
    debug = start_up(PRINT=names, DJANGO_DEBUG="true")
    assert debug.stdout.strip() == "[False, False, False, 0, True, True, None]"


def test_behind_a_proxy_the_header_it_sets_says_https():
    proxied = start_up(
        PRINT="SECURE_PROXY_SSL_HEADER", DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto"
    )
    assert proxied.stdout.strip() == "[('HTTP_X_FORWARDED_PROTO', 'https')]"
    wrong = start_up(DJANGO_SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https")
    assert wrong.returncode != 0
    assert "DJANGO_SECURE_PROXY_SSL_HEADER" in wrong.stderr and "header name" in wrong.stderr


def test_plain_http_is_redirected_except_the_liveness_probe(client, settings, db):
    settings.SECURE_SSL_REDIRECT = True
    redirected = client.get("/admin/login/")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200


# -- 16. Content-Security-Policy and local API docs ----------------------------------------

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def directives(response) -> dict[str, str]:
    header = response["Content-Security-Policy"]
    return {
        part.split()[0]: " ".join(part.split()[1:]) for part in header.split(";") if part.strip()
    }


@pytest.fixture
def provider_client(client, organization):
    user = User.objects.create_user("nurse", password="x")
    Membership.objects.create(user=user, organization=organization)
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/login/",
        "/scheduled-messages/",
        "/scheduled-messages/new/",
        "/api/scheduler/docs/",
        "/api/scheduler/docs/redoc/",
        "/api/scheduler/patients/",
        "/healthz",
    ],
)
def test_every_page_carries_the_content_security_policy(provider_client, path):
    response = provider_client.get(path, HTTP_ACCEPT="text/html")
    assert response.status_code == 200, path
    found = directives(response)
    expected = dict(POLICY)
    if path.endswith("/redoc/"):  # Redoc writes its styles as it runs (care_team/api/docs.py)
        expected["style-src"] = "'self' 'unsafe-inline'"
    for directive, sources in expected.items():
        assert found.get(directive) == sources, (path, directive, found.get(directive))


def test_the_patient_inbox_carries_the_content_security_policy(client, make_patient):
    response = client.get(inbox_link_issue(patient=make_patient(chat_id=None)).path)
    assert response.status_code == 200
    assert directives(response)["script-src"] == "'self'"
    assert directives(response)["style-src"] == "'self'"


def test_our_templates_have_no_inline_script_style_or_handler():
    """The policy allows no inline code: what a template needs lives in a static file."""
    inline = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=", re.I)
    templates = [
        p
        for app in (
            "care_team",
            "conversations",
            "patients",
            "scheduling",
            "outreach",
            "channels_app",
        )
        for p in (ROOT / app).rglob("*.html")
    ]
    assert templates
    for template in templates:
        assert not inline.search(template.read_text()), template


def test_the_api_docs_need_a_login(client, db):
    for path in ("/api/scheduler/docs/", "/api/scheduler/docs/redoc/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/scheduled-messages/login/?next=")
    assert client.get("/api/scheduler/schema/").status_code == 401


def test_the_api_docs_load_only_this_sites_own_files(provider_client):
    for path in ("/api/scheduler/docs/", "/api/scheduler/docs/redoc/"):
        page = provider_client.get(path).content.decode()
        sources = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert sources, path
        assert all(source.startswith("/") and not source.startswith("//") for source in sources), (
            path,
            sources,
        )
        assert "cdn" not in page.lower() and "googleapis" not in page
    swagger = provider_client.get("/api/scheduler/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in swagger
    script = re.search(r'<script src="([^"]*script[^"]*)"', swagger).group(1).replace("&amp;", "&")
    init = provider_client.get(script)
    assert init.status_code == 200 and b"SwaggerUIBundle(" in init.content


# -- 19. The image, the demo and ignored files ------------------------------------------


def test_env_files_are_never_committed_nor_copied_into_the_image():
    for name in (".gitignore", ".dockerignore"):
        lines = (ROOT / name).read_text().split()
        assert ".env" in lines, name
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0


TEST_TOOLS = (
    "pytest",
    "hypothesis",
    "schemathesis",
    "aiosmtpd",
    "playwright",
    "ruff",
    "import-linter",
    "honcho",
)


def requirement_names(name: str) -> set[str]:
    lines = (ROOT / name).read_text().splitlines()
    return {
        re.split(r"[=<>\[ ]", line.strip())[0].lower()
        for line in lines
        if line.strip() and not line.startswith(("#", "-r"))
    }


def test_the_image_installs_the_runtime_only_and_make_installs_the_tools():
    runtime, development = requirement_names("requirements.txt"), (ROOT / "requirements-dev.txt")
    assert not runtime & {tool for tool in TEST_TOOLS}
    assert development.read_text().startswith("-r requirements.txt") or (
        "\n-r requirements.txt" in development.read_text()
    )
    assert set(TEST_TOOLS) <= requirement_names("requirements-dev.txt")
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "requirements-dev" not in dockerfile
    assert re.search(r"pip install .*-r requirements-dev.txt", (ROOT / "Makefile").read_text())
    assert "tests" in (ROOT / ".dockerignore").read_text().split()


def test_runserver_listens_on_loopback_only():
    argv = procfile()["web"].split()
    assert argv[:3] == ["python", "manage.py", "runserver"]
    assert argv[3].startswith("127.0.0.1:")


def test_seed_demo_refuses_to_run_without_debug(db, settings):
    settings.DEBUG = False
    with pytest.raises(CommandError, match="DJANGO_DEBUG=true"):
        call_command("seed_demo", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert not User.objects.filter(username="demo").exists()
