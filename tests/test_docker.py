"""The container, without a Docker engine: the Dockerfile linted (hadolint) and read, the compose
file's structure, and the image's install and start steps replayed in a fresh virtualenv."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, require_or_skip
from tests.feedserver import FeedServer
from tests.pipeline_helpers import rss, write_watchlist
from tests.test_run import story, wait_until
from tests.test_web import free_port, get

DOCKERFILE = REPO / "Dockerfile"
HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
    "hadolint")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    joined, found = "", []
    for line in text.splitlines():
        if not joined and (not line.strip() or line.lstrip().startswith("#")):
            continue
        joined += line.rstrip()
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        word, _, rest = joined.strip().partition(" ")
        found.append((word.upper(), " ".join(rest.split())))
        joined = ""
    return found


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per build stage."""
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(DOCKERFILE.read_text()):
        if ins[0] == "FROM":
            out.append([])
        out[-1].append(ins)
    return out


def arg(stage: list[tuple[str, str]], word: str) -> list[str]:
    return [rest for w, rest in stage if w == word]


def healthcheck_command() -> list[str]:
    """The HEALTHCHECK's CMD, as the exec-form JSON array Docker runs."""
    (check,) = arg(stages()[-1], "HEALTHCHECK")
    return json.loads(check.split(" CMD ", 1)[1])


# ---------------------------------------------------------------- Dockerfile


def test_hadolint_passes_and_would_catch_a_regression(tmp_path: Path) -> None:
    if HADOLINT is None:
        require_or_skip("hadolint not installed (pip install '.[test]')")
    done = subprocess.run([HADOLINT, "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    worse = tmp_path / "Dockerfile"  # running as root, on an unpinned base
    worse.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root")
                     .replace("FROM python:3.11-slim\n", "FROM python:latest\n"))
    done = subprocess.run([HADOLINT, "--no-color", str(worse)], capture_output=True, text=True)
    assert done.returncode == 1
    assert "DL3002" in done.stdout and "DL3007" in done.stdout


def test_dockerfile_is_multi_stage_slim_non_root_with_state_volume_and_healthcheck() -> None:
    build, runtime = stages()
    assert arg(build, "FROM") == ["python:3.11-slim AS build"]
    assert arg(runtime, "FROM") == ["python:3.11-slim"]
    assert any("--from=build" in c for c in arg(runtime, "COPY"))
    assert not any("pip install" in r for r in arg(runtime, "RUN"))  # built in the first stage
    (user,) = arg(runtime, "USER")
    assert user.split(":")[0] not in ("root", "0")
    assert arg(runtime, "VOLUME") == ['["/app/state"]']
    assert arg(runtime, "WORKDIR") == ["/app"]
    assert json.loads(arg(runtime, "CMD")[0]) == ["veille", "run"]
    check = healthcheck_command()
    assert check[:2] == ["python", "-c"] and "/healthz" in check[2] and "urllib" in check[2]
    env = " ".join(arg(runtime, "ENV"))
    assert "VEILLE_HTTP_PORT=8080" in env and "VEILLE_HTTP_HOST=0.0.0.0" in env


def test_dockerignore_keeps_secrets_and_state_out_of_the_build_context() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".env", ".git", ".venv", "state", "tests", "bench"} <= ignored


# ---------------------------------------------------------------- compose


def test_compose_file_structure() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"veille", "postgres"}
    bot, pg = services["veille"], services["postgres"]
    assert bot["build"] == "." and "profiles" not in bot  # the bot always runs
    assert "veille-state:/app/state" in bot["volumes"]
    assert any(v.startswith("./watchlists:/app/watchlists") for v in bot["volumes"])
    assert "/healthz" in " ".join(bot["healthcheck"]["test"])
    assert bot["depends_on"]["postgres"] == {"condition": "service_healthy", "required": False}
    assert bot["env_file"] == [{"path": ".env", "required": False}]
    assert pg["profiles"] == ["postgres"]  # optional: only with --profile postgres
    assert pg["healthcheck"]["test"][0] == "CMD-SHELL" and "pg_isready" in pg["healthcheck"]["test"][1]
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")  # no literal
    assert "postgres-data:/var/lib/postgresql/data" in pg["volumes"]
    assert set(compose["volumes"]) == {"veille-state", "postgres-data"}


# ---------------------------------------------------------------- install and start


def dockerfile_env() -> dict[str, str]:
    """The runtime stage's ENV, as the container sees it (PATH aside)."""
    env = {}
    for rest in arg(stages()[-1], "ENV"):
        for pair in shlex.split(rest):
            key, _, val = pair.partition("=")
            if key != "PATH":
                env[key] = val
    return env


@pytest.mark.slow
def test_the_image_install_and_start_steps_work_in_a_fresh_virtualenv(
        tmp_path: Path, feed_server: FeedServer) -> None:
    # build stage: COPY pyproject.toml README.md ./ ; COPY bot ./bot ; pip install .
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "bot", src / "bot", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([venv / "bin" / "pip", "install", "-q", str(src)], capture_output=True,
                         text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    # runtime stage: WORKDIR /app ; COPY watchlists ./watchlists ; mkdir state ; ENV ...
    app = tmp_path / "app"
    shutil.copytree(REPO / "watchlists", app / "watchlists")
    (app / "state").mkdir()
    env = {"PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(tmp_path),
           **dockerfile_env()}
    veille = str(venv / "bin" / "veille")
    helped = subprocess.run([veille, "--help"], cwd=app, env=env, capture_output=True, text=True)
    assert helped.returncode == 0 and "replay" in helped.stdout
    valid = subprocess.run([veille, "validate"], cwd=app, env=env, capture_output=True, text=True)
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.startswith("ok: watchlists:")
    # CMD ["veille", "run"], with feeds on the loopback server, then the HEALTHCHECK
    feed_server.set_feed("/a.xml", rss([story(1)]))
    write_watchlist(tmp_path / "wl", [("A", feed_server.url("/a.xml"))])
    port = free_port()
    env.update(VEILLE_WATCHLISTS=str(tmp_path / "wl"), VEILLE_ALLOW_PRIVATE_URLS="1",
               VEILLE_NEWS_SEARCH="0", VEILLE_HTTP_PORT=str(port), VEILLE_HTTP_HOST="127.0.0.1")
    check = [str(venv / "bin" / "python")] + healthcheck_command()[1:]
    with (tmp_path / "run.err").open("w") as errors:
        run = subprocess.Popen(["veille", "run"], cwd=app, env=env, stdout=subprocess.DEVNULL,
                               stderr=errors)
    try:
        wait_until(lambda: subprocess.run(check, env=env).returncode == 0 or run.poll() is not None,
                   "the HEALTHCHECK to pass")
        assert run.poll() is None, (tmp_path / "run.err").read_text()
        assert get(port, "/healthz") == (200, "ok\n")
        assert (app / "state" / "veille.db").is_file()  # state lands on the volume
    finally:
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0, (tmp_path / "run.err").read_text()
