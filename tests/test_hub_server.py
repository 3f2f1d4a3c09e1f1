"""Round trips through tests/hub_server.FakeHub with the real huggingface_hub client (no network)."""

import json
import os
import socket
from pathlib import Path

import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.hub_server import FakeHub, git_blob_sha1

TOKEN = "hf_test"
REPO = "alice/babygpt-tiny"


@pytest.fixture(autouse=True)
def hub_client_env(monkeypatch, tmp_path):
    """Online (conftest sets HF_HUB_OFFLINE=1), no xet, no telemetry, no saved token, loopback only.

    huggingface_hub reads these env vars once at import, so the constants are patched as well.
    """
    for name, value in {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
                        "HF_HOME": str(tmp_path / "hf")}.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))

    real_connect = socket.socket.connect

    def loopback_only(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"test tried to reach {address}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", loopback_only)


@pytest.fixture
def hub():
    with FakeHub(token=TOKEN) as hub:
        yield hub


def make_folder(root: Path) -> dict[str, bytes]:
    files = {
        "config.json": json.dumps({"n_layer": 2, "n_embd": 32, "vocab_size": 65}).encode(),
        "model.bin": os.urandom(1024 * 1024),
        "README.md": b"# tiny\n",
        "sub/dir/vocab.txt": "abc\nüñï\n".encode(),
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(root).parts
    }


def test_round_trip_private_repo(hub, tmp_path):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    url = api.create_repo(REPO, private=True, exist_ok=True)
    assert str(url) == f"{hub.url}/{REPO}"
    assert hub.repos[REPO]["private"] is True
    assert api.create_repo(REPO, private=True, exist_ok=True) == f"{hub.url}/{REPO}"  # 409 swallowed
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO, private=True)
    assert err.value.response.status_code == 409

    files = make_folder(tmp_path / "src")
    info = api.upload_folder(folder_path=tmp_path / "src", repo_id=REPO, commit_message="first upload")
    assert info.oid == hub.repos[REPO]["sha"]
    assert hub.repos[REPO]["files"] == files
    assert hub.repos[REPO]["commits"][-1]["message"] == "first upload"
    assert api.model_info(REPO).sha == info.oid
    assert sorted(s.rfilename for s in api.model_info(REPO).siblings) == sorted(files)

    out = Path(snapshot_download(REPO, endpoint=hub.url, token=TOKEN, local_dir=tmp_path / "dst"))
    assert read_tree(out) == files

    single = hf_hub_download(REPO, "sub/dir/vocab.txt", endpoint=hub.url, token=TOKEN, cache_dir=tmp_path / "cache")
    assert Path(single).read_bytes() == files["sub/dir/vocab.txt"]

    # A second commit on top (preupload returns the stored git oid, so the client skips unchanged files).
    (tmp_path / "src" / "config.json").write_bytes(b"{}")
    api.upload_folder(folder_path=tmp_path / "src", repo_id=REPO, commit_message="second")
    assert hub.repos[REPO]["files"]["config.json"] == b"{}"
    commit_lines = [r for r in hub.requests if r["path"].endswith("/commit/main")]
    assert len(commit_lines) == 2

    paths = {(r["method"], r["path"]) for r in hub.requests}
    assert ("POST", f"/api/models/{REPO}/preupload/main") in paths
    assert ("HEAD", f"/{REPO}/resolve/{info.oid}/model.bin") in paths
    assert all(r["auth"] for r in hub.requests)
    assert not any(TOKEN in json.dumps(r) for r in hub.requests)


def test_wrong_token_is_401(hub):
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub.url, token="hf_wrong").create_repo(REPO)
    assert err.value.response.status_code == 401
    assert not isinstance(err.value, RepositoryNotFoundError)
    assert err.value.response.json() == {"error": "Invalid credentials"}
    with pytest.raises(HfHubHTTPError) as err:
        HfApi(endpoint=hub.url, token=False).create_repo(REPO)
    assert err.value.response.status_code == 401
    assert hub.repos == {}


def test_missing_and_private_repos_are_not_found(hub, tmp_path):
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=TOKEN).model_info("alice/nope")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("alice/nope", endpoint=hub.url, token=TOKEN, local_dir=tmp_path / "a")

    api = HfApi(endpoint=hub.url, token=TOKEN)
    api.create_repo(REPO, private=True)
    api.upload_folder(folder_path=make_folder_path(tmp_path), repo_id=REPO, commit_message="x")
    anonymous = HfApi(endpoint=hub.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        anonymous.model_info(REPO)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download(REPO, endpoint=hub.url, token=False, local_dir=tmp_path / "b")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "config.json", endpoint=hub.url, token=False, cache_dir=tmp_path / "c")
    assert not hub.requests[-1]["auth"]

    api.create_repo("alice/public", private=False)
    assert anonymous.model_info("alice/public").private is False


def make_folder_path(tmp_path: Path) -> Path:
    make_folder(tmp_path / "src")
    return tmp_path / "src"


def test_injected_server_error(hub):
    api = HfApi(endpoint=hub.url, token=TOKEN)
    hub.fail_next(500)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(REPO)
    assert err.value.response.status_code == 500
    assert REPO not in hub.repos
    api.create_repo(REPO)  # the switch is spent
    hub.fail_next(503, count=2)
    for _ in range(2):
        with pytest.raises(HfHubHTTPError):
            api.model_info(REPO)
    assert api.model_info(REPO).id == REPO


def test_git_blob_sha1_matches_client():
    from huggingface_hub.utils.sha import git_hash

    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391" == git_hash(b"")
    assert git_blob_sha1(b"hello\n") == git_hash(b"hello\n")
