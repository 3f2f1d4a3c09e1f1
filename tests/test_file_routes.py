"""The app's file routes serve what the app hands out, and nothing of the project, the system or
another visitor: real requests against ``python app.py`` on 127.0.0.1."""

import hashlib
import json
import shutil
import time
import zipfile
from urllib.parse import quote

import gradio.utils
import httpx
import pytest
from gradio_client import Client, handle_file
from huggingface_hub import HfApi
from test_app import TINY_TRAINING
from test_finetune import finetune, run

from babygpt.hub import push_checkpoint

from conftest import HUB_TOKEN, ROOT, raw_call, running_app

ROUTES = ("gradio_api/file=", "gradio_api/file/", "file=")


def variants(path: str) -> list[str]:
    """The path as written, URL-encoded, and reached by climbing out of gradio's own folder."""
    climb = "../" * 12 + path.lstrip("/")
    return [path, quote(path, safe=""), climb, quote(climb, safe=""), climb.replace("/", "%2F")]


def test_file_routes_refuse_the_project_the_system_and_other_sessions(app_and_its_tmp):
    url, tmp_path = app_and_its_tmp
    before = set(tmp_path.glob("babygpt-session-*"))
    alice = Client(url, verbose=False, analytics_enabled=False)
    *_, names, archive = alice.predict(*TINY_TRAINING.values(), api_name="/train")
    assert zipfile.ZipFile(archive).namelist()  # what the app hands out is served
    sessions = list(set(tmp_path.glob("babygpt-session-*")) - before)
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


HOSTILE_NAMES = ["../../../../etc/passwd", "/etc/passwd", f"{ROOT}/checkpoints/gpt", "gpt/../../../etc",
                 "..", "~", "gpt\x00", "ｇｐｔ", "gpt\u202e", "../" * 5 + "checkpoints/gpt"]


def test_hostile_model_names_never_reach_the_file_system(app_and_its_tmp):
    """A model name is a key into the session's own list, never a path: every endpoint that takes
    one refuses these, and nothing appears outside the session's folder."""
    url, tmp_path = app_and_its_tmp
    before = set(tmp_path.iterdir())
    c = Client(url, verbose=False, analytics_enabled=False)
    calls = {
        "/compare": lambda name: c.predict([name], "Hi", 5, 1.0, 0, 1.0, 0, api_name="/compare"),
        "/attention": lambda name: c.predict(name, "Hi", 0, 0, api_name="/attention"),
        "/stats": lambda name: c.predict(name, None, 12, 1000, api_name="/stats"),
        "/download": lambda name: c.predict(name, api_name="/download"),
        "/push": lambda name: c.predict(name, "alice/x", True, api_name="/push"),
        "/load": lambda name: c.predict(name, api_name="/load"),
    }
    answered = []
    for endpoint, call in calls.items():
        for name in HOSTILE_NAMES:
            try:
                call(name)
                answered.append(f"{endpoint} {name!r}")
            except Exception as error:
                assert "Traceback" not in str(error)
    assert answered == []
    created = set(tmp_path.iterdir()) - before
    sessions = [p for p in created if p.name.startswith("babygpt-session-")]
    assert created - set(sessions) <= {tmp_path / "gradio"}, created  # gradio's own cache besides
    for session in sessions:
        assert not list(session.rglob("*")), "a refused request left files behind"


def test_an_uploaded_symlink_arrives_as_plain_text_and_no_link_is_ever_made(app_and_its_tmp, tmp_path):
    """What crosses the wire is bytes: a visitor's symlink to a file becomes that file's text in
    the app's folders, and nothing under them links anywhere (the server's own files included)."""
    url, server_tmp = app_and_its_tmp
    visitor = tmp_path / "visitor"
    visitor.mkdir()
    target = visitor / "plays.txt"
    target.write_text("To be, or not to be, that is the question.\n" * 200)
    link = visitor / "link.txt"
    link.symlink_to(target)
    c = Client(url, verbose=False, analytics_enabled=False)
    _, status, *_ = c.predict(*{**TINY_TRAINING, "corpus": "upload a .txt file",
                                "upload": handle_file(str(link))}.values(), api_name="/train")
    assert "is ready" in status
    links = [p for p in server_tmp.rglob("*") if p.is_symlink()]
    uploads = [p for p in server_tmp.rglob("link.txt")]
    assert links == [] and uploads and all(p.read_text() == target.read_text() for p in uploads)


def test_an_adapter_from_the_hub_sits_only_on_the_visitors_own_models(hub, tmp_path):
    """An adapter's config names its base, and a stranger's adapter may name any path on the
    server: another visitor's model, /etc. The app looks the base up among the visitor's own
    models only, and answers the same whether or not the named path exists."""
    server_tmp = tmp_path / "server"
    server_tmp.mkdir()
    with running_app(TMPDIR=str(server_tmp), HF_ENDPOINT=hub.url, HF_TOKEN=HUB_TOKEN, HF_HUB_OFFLINE="0",
                     HF_HUB_DISABLE_XET="1") as url:
        alice = Client(url, verbose=False, analytics_enabled=False)
        *_, names, _ = alice.predict(*TINY_TRAINING.values(), api_name="/train")
        (alices_model,) = [p for p in server_tmp.glob("babygpt-session-*/my-*") if p.is_dir()]
        # Mallory knows where Alice's model lies and its weights' hash (here: a copy of it).
        copy = shutil.copytree(alices_model, tmp_path / "copy")
        adapter = tmp_path / "adapter"
        run(finetune(copy, adapter, max_iters=1))
        for repo, base in (("mallory/alices", str(alices_model.resolve())), ("mallory/etc", "/etc"),
                           ("mallory/nowhere", "/no/such/folder")):
            push_checkpoint(adapter, repo, token=HUB_TOKEN, endpoint=hub.url, base_repo="mallory/base")
            config = json.loads(hub.repos[repo]["files"]["adapter_config.json"])
            config.pop("base_model_name_or_path")  # no base repo to fall back on: only the path
            HfApi(endpoint=hub.url, token=HUB_TOKEN).upload_file(
                path_or_fileobj=json.dumps({**config, "base": base}).encode(), path_in_repo="adapter_config.json",
                repo_id=repo)
        mallory = Client(url, verbose=False, analytics_enabled=False)
        answers = {}
        for repo in ("mallory/alices", "mallory/etc", "mallory/nowhere"):
            with pytest.raises(Exception) as refused:
                mallory.predict(repo, api_name="/load")
            answers[repo] = str(refused.value)
        assert all("which is not one of your models" in a for a in answers.values()), answers
        shapes = {a.replace(repo, "R").replace(str(alices_model.resolve()), "X").replace("/etc", "X")
                  .replace("/no/such/folder", "X") for repo, a in answers.items()}
        assert len(shapes) == 1, f"the answers tell the paths apart: {answers}"
        assert not [p for p in server_tmp.glob("babygpt-session-*/my-mallory*")], "nothing of a refused load is kept"
        # The same adapter is fine for the visitor who has its base.
        status, names = alice.predict("mallory/alices", api_name="/load")
        assert "my-mallory-alices" in names
        _, texts, *_ = alice.predict(["my-mallory-alices"], "Hi", 5, 1.0, 0, 1.0, 0, api_name="/compare")
        assert texts["my-mallory-alices"]


def test_uploads_are_served_back_only_as_intended_and_deleted_after_a_while(tmp_path):
    """An upload lives in gradio's cache, at a path only its uploader is told. It is never served
    as a page the browser would run, nothing lists the cache, and it is deleted once
    BABYGPT_CACHE_SECONDS old (here 4 s)."""
    server_tmp, visitor = tmp_path / "server", tmp_path / "visitor"
    server_tmp.mkdir(), visitor.mkdir()
    diary = visitor / "diary.txt"
    diary.write_text("Dear diary, the password is swordfish.\n" * 100)
    with running_app(TMPDIR=str(server_tmp), BABYGPT_CACHE_SECONDS="4") as url:
        # Uploaded straight to gradio's upload route, as any client can: a page and an SVG with a
        # script come back as downloads, never rendered on the app's own origin.
        for name, body in (("page.html", "<script>alert(1)</script>"),
                           ("image.svg", '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')):
            (stored,) = httpx.post(url + "gradio_api/upload", files={"files": (name, body)}, timeout=10).json()
            served = httpx.get(url + "gradio_api/file=" + stored, timeout=10)
            assert served.status_code == 200
            assert served.headers["content-type"] == "application/octet-stream"
            assert served.headers["content-disposition"].startswith("attachment")

        alice = Client(url, verbose=False, analytics_enabled=False)
        upload = {**TINY_TRAINING, "corpus": "upload a .txt file", "upload": handle_file(str(diary))}
        _, status, *_ = alice.predict(*upload.values(), api_name="/train")
        assert "is ready" in status
        (stored,) = (server_tmp / "gradio").rglob("diary.txt")
        # The folder is a hash of the content keyed with a secret of gradio's, so knowing a file's
        # text does not find its copy; and neither the secret nor any folder is served.
        plain_hash = hashlib.sha256(diary.read_bytes()).hexdigest()
        guesses = [str(stored.parent), str(stored.parent.parent), str(stored.parent.parent / plain_hash / "diary.txt"),
                   gradio.utils.HASH_SEED_PATH]
        assert plain_hash != stored.parent.name
        served = [f"{route}{guess}" for guess in guesses for route in ROUTES
                  if httpx.get(url + route + guess, timeout=10).status_code == 200]
        assert served == []

        deadline = time.monotonic() + 30
        while stored.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not stored.exists(), "the upload is deleted once old enough"
        assert httpx.get(url + "gradio_api/file=" + str(stored), timeout=10).status_code != 200
        # A page left open longer still holds the old upload's path: training from it says why.
        again = {**upload, "upload": {"path": str(stored), "meta": {"_type": "gradio.FileData"}}}
        event, data = raw_call(url, "train", json.dumps({"data": list(again.values())}))
        assert event == "error" and "no longer on the server" in ((data or {}).get("error") or ""), (event, data)
