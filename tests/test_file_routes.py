"""The app's file routes serve what the app hands out, and nothing of the project, the system or
another visitor: real requests against ``python app.py`` on 127.0.0.1."""

import zipfile
from urllib.parse import quote

import httpx
from gradio_client import Client

from conftest import ROOT, running_app
from test_app import TINY_TRAINING

ROUTES = ("gradio_api/file=", "gradio_api/file/", "file=")


def variants(path: str) -> list[str]:
    """The path as written, URL-encoded, and reached by climbing out of gradio's own folder."""
    climb = "../" * 12 + path.lstrip("/")
    return [path, quote(path, safe=""), climb, quote(climb, safe=""), climb.replace("/", "%2F")]


def test_file_routes_refuse_the_project_the_system_and_other_sessions(tmp_path):
    with running_app(TMPDIR=str(tmp_path)) as url:
        alice = Client(url, verbose=False, analytics_enabled=False)
        *_, names, archive = alice.predict(*TINY_TRAINING.values(), api_name="/train")
        assert zipfile.ZipFile(archive).namelist()  # what the app hands out is served
        sessions = list(tmp_path.glob("babygpt-session-*"))
        assert len(sessions) == 1
        private = sorted(str(p) for p in sessions[0].rglob("*") if p.is_file())
        assert any(p.endswith("model.safetensors") for p in private)
        secrets = [f"{ROOT}/app.py", f"{ROOT}/README.md", f"{ROOT}/checkpoints/gpt/model.safetensors",
                   f"{ROOT}/.git/config", "/etc/passwd", "/proc/self/environ", *private]
        served = []
        for secret in secrets:
            for route in ROUTES:
                for path in variants(secret):
                    answer = httpx.get(url + route + path, timeout=10)
                    if answer.status_code == 200:
                        served.append(f"{route}{path}")
        assert served == []
