"""A small in-memory fake of the Hugging Face Hub HTTP API, for tests.

It is a real HTTP server (``http.server.ThreadingHTTPServer`` in a background thread, bound to
127.0.0.1 on a free port) speaking just enough of the Hub protocol for ``huggingface_hub`` 2.4.0's
``HfApi.create_repo``, ``HfApi.upload_folder`` / ``create_commit`` (small files, inline base64),
``HfApi.model_info`` / ``repo_info``, ``snapshot_download`` and ``hf_hub_download``.
Only model repos are supported.

Routes (``{repo}`` is ``name`` or ``namespace/name``; ``{rev}`` is ``main`` or a commit sha):

    POST   /api/repos/create                      {"name", "organization", "visibility"} -> {"url"};
                                                  409 {"error", "url"} if it exists (exist_ok=True reads "url")
    POST   /api/validate-yaml                     README.md metadata check (sent when a README.md is
                                                  committed) -> {"errors": [], "warnings": []}, accepts all
    DELETE /api/repos/delete                      {"name", "organization"} -> 200
    GET    /api/models/{repo}                     model info: {"id", "sha", "private", "siblings": [{"rfilename"}]}
    GET    /api/models/{repo}/revision/{rev}      same, at a revision
    GET    /api/models/{repo}/tree/{rev}[/{dir}]  [{"type": "file"|"directory", "path", "size", "oid"}] (?recursive=)
    POST   /api/models/{repo}/preupload/{rev}     {"files": [{"path", "sample", "size"}]}
                                                  -> uploadMode "regular" for all
    POST   /api/models/{repo}/commit/{rev}        NDJSON: header, file (base64), deletedFile, deletedFolder
                                                  -> {"commitUrl", "commitOid", "pullRequestUrl": null, ...}
    HEAD   /{repo}/resolve/{rev}/{filename}       headers X-Repo-Commit, ETag (git blob sha1), Content-Length
    GET    /{repo}/resolve/{rev}/{filename}       the file's bytes (honours a simple ``Range: bytes=N-``)

Errors, shaped as the client expects them (it reads the ``X-Error-Code`` header, not only the status,
because its own 401-to-RepositoryNotFound mapping only applies to ``https://`` URLs):

    403 {"error": "You don't have the rights…"}  creating a repo outside ``FakeHub.namespaces`` (when set)
    401 {"error": "Invalid credentials"}    a write without ``Authorization: Bearer <token>``, or any request
                                            whose bearer token is wrong (X-Error-Message: "Invalid credentials
                                            in Authorization header", which the client maps to HfHubHTTPError)
    404 {"error": "Repository not found"}   X-Error-Code: RepoNotFound (-> RepositoryNotFoundError), also for a
                                            private repo requested without the token
    404 X-Error-Code: RevisionNotFound / EntryNotFound (-> RevisionNotFoundError / RemoteEntryNotFoundError)
    N   {"error": "Injected failure"}       after ``hub.fail_next(N, count)``, for the next ``count`` requests;
                                            after ``hub.fail_path(ending, N)``, for every path with that ending

Usage::

    with FakeHub(token="hf_test") as hub:
        HfApi(endpoint=hub.url, token="hf_test").create_repo("me/model", private=True)
        hub.repos["me/model"]["files"]    # {path: bytes}
        hub.requests                      # [{"method", "path", "query", "auth"}]; the token is never stored

Client-side, set ``huggingface_hub.constants.HF_HUB_OFFLINE = False`` (offline mode blocks every request)
and ``HF_HUB_DISABLE_XET = True`` (with ``hf_xet`` installed, ``upload_folder`` takes a xet pipeline
this server does not implement); see ``tests/test_hub_server.py``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json
import re
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

_REPO = r"(?P<repo>[^/]+/[^/]+|[^/]+)"
_API_REPO = re.compile(rf"^/api/models/{_REPO}$")
_API_OP = re.compile(rf"^/api/models/{_REPO}/(?P<op>revision|tree|preupload|commit)/(?P<rest>.+)$")
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<filename>.+)$")


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob, which the Hub uses as the ETag / oid of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _repo_not_found() -> HubError:
    return HubError(404, "Repository not found", "RepoNotFound")


# The huggingface_hub modules that wait between the retries of a failing request: an exponential
# back-off of 1, 2, 4, 8 and 8 s, which a test of a failing Hub would spend asleep for each file.
BACK_OFF_MODULES = ("huggingface_hub.utils._http", "huggingface_hub.file_download")


def record_retry_waits(set_attribute=setattr) -> list[float]:
    """Make huggingface_hub's waits between retries instant; return the list they are recorded in.

    Every request is still made and every retry still happens; only the sleep between them is
    skipped, so a test checks what follows the retries without waiting for them.
    ``set_attribute``: pytest's ``monkeypatch.setattr`` (undone after the test), or plain
    ``setattr`` in a test's own subprocess."""
    waits: list[float] = []
    for name in BACK_OFF_MODULES:
        clock = types.SimpleNamespace(**{n: getattr(time, n) for n in dir(time) if not n.startswith("_")})
        clock.sleep = waits.append
        set_attribute(importlib.import_module(name), "time", clock)
    return waits


class FakeHub:
    """In-memory Hub. ``repos[repo_id] = {"private": bool, "files": {path: bytes}, "sha": str, "commits": [...]}``."""

    def __init__(self, token: str = "hf_test"):
        self.token = token
        self.namespaces: set[str] | None = None  # where the token may create and write (None: anywhere)
        self.repos: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.lock = threading.RLock()
        self._failures: list[int] = []
        self._failing_paths: dict[str, int] = {}
        self._stalls: list[float] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> Self:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="FakeHub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test helpers ----------------------------------------------------------------------------

    def fail_next(self, status: int, count: int = 1) -> None:
        """Answer the next ``count`` requests (any route) with HTTP ``status``."""
        with self.lock:
            self._failures.extend([status] * count)

    def fail_path(self, ending: str, status: int) -> None:
        """Answer every request whose path ends with ``ending`` with HTTP ``status`` (a Hub that
        fails in the middle of a download: the file list answers, that file does not)."""
        with self.lock:
            self._failing_paths[ending] = status

    def stall_next(self, seconds: float, count: int = 1) -> None:
        """Hold the next ``count`` requests for ``seconds`` before answering them: a Hub that hangs."""
        with self.lock:
            self._stalls.extend([seconds] * count)

    def stop_stalling(self) -> None:
        with self.lock:
            self._stalls.clear()

    def _take_stall(self) -> float:
        with self.lock:
            return self._stalls.pop(0) if self._stalls else 0.0

    def _take_failure(self) -> int | None:
        with self.lock:
            return self._failures.pop(0) if self._failures else None

    # -- repository state ------------------------------------------------------------------------

    def _commit(self, repo: dict, files: dict[str, bytes], message: str) -> str:
        parent = repo.get("sha", "")
        digest = hashlib.sha1(f"{parent}\n{message}\n{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha1(files[path]).encode())
        sha = digest.hexdigest()
        repo["files"] = files
        repo["sha"] = sha
        repo.setdefault("commits", []).append({"sha": sha, "message": message, "files": dict(files)})
        return sha

    def _create(self, repo_id: str, private: bool) -> None:
        repo = {"private": private, "files": {}, "commits": []}
        self._commit(repo, {}, "initial commit")
        self.repos[repo_id] = repo

    def _visible_repo(self, repo_id: str, authorized: bool) -> dict:
        repo = self.repos.get(repo_id)
        if repo is None or (repo["private"] and not authorized):
            raise _repo_not_found()
        return repo

    def _files_at(self, repo: dict, revision: str) -> tuple[str, dict[str, bytes]]:
        if revision == "main":
            return repo["sha"], repo["files"]
        for commit in reversed(repo["commits"]):
            if commit["sha"] == revision:
                return commit["sha"], commit["files"]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects; every response sends Content-Length

    def log_message(self, format, *args):  # quiet
        pass

    # -- plumbing --------------------------------------------------------------------------------

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload, headers: dict | None = None):
        self._send(status, json.dumps(payload).encode(), headers)

    def _auth(self) -> bool:
        """True with the right bearer token, False with none; raises 401 on a wrong one."""
        header = self.headers.get("Authorization")
        if header is None:
            return False
        if header != f"Bearer {self.hub.token}":
            raise HubError(401, "Invalid credentials")
        return True

    def _dispatch(self, method: str):
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        body = self._read_body() if method in ("POST", "DELETE") else b""
        with self.hub.lock:
            self.hub.requests.append(
                {"method": method, "path": path, "query": split.query, "auth": "Authorization" in self.headers}
            )
        time.sleep(self.hub._take_stall())
        status = self.hub._take_failure() or next(
            (code for ending, code in self.hub._failing_paths.items() if path.endswith(ending)), None)
        if status is not None:
            self._json(status, {"error": "Injected failure"}, {"X-Error-Message": "Injected failure"})
            return
        try:
            self._route(method, path, query, body)
        except HubError as err:
            headers = {"X-Error-Message": err.message}
            if err.code:
                headers["X-Error-Code"] = err.code
            if err.status == 401:
                headers["X-Error-Message"] = "Invalid credentials in Authorization header"
            self._json(err.status, {"error": err.message}, headers)

    def _route(self, method: str, path: str, query: dict, body: bytes):
        authorized = self._auth()
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(authorized, body)
        if method == "DELETE" and path == "/api/repos/delete":
            return self._delete_repo(authorized, body)
        if method == "POST" and path == "/api/validate-yaml":
            return self._json(200, {"errors": [], "warnings": []})  # accept any README.md metadata
        if method == "GET" and (m := _API_REPO.match(path)):
            return self._model_info(m["repo"], "main", authorized)
        if m := _API_OP.match(path):
            repo_id, op, rest = m["repo"], m["op"], m["rest"]
            if method == "GET" and op == "revision":
                return self._model_info(repo_id, unquote(rest), authorized)
            if method == "GET" and op == "tree":
                revision, _, subdir = rest.partition("/")
                recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
                return self._tree(repo_id, unquote(revision), unquote(subdir), recursive, authorized)
            if method == "POST" and op == "preupload":
                return self._preupload(repo_id, authorized, body)
            if method == "POST" and op == "commit":
                return self._commit(repo_id, unquote(rest), authorized, body)
        if method in ("GET", "HEAD") and (m := _RESOLVE.match(path)):
            return self._resolve(m["repo"], unquote(m["rev"]), unquote(m["filename"]), authorized)
        raise HubError(404, f"No route for {method} {path}")

    @staticmethod
    def _require_write(authorized: bool):
        if not authorized:
            raise HubError(401, "Invalid credentials")

    def _require_namespace(self, repo_id: str):
        namespace = repo_id.split("/")[0]
        if self.hub.namespaces is not None and namespace not in self.hub.namespaces:
            raise HubError(403, f"You don't have the rights to create a model under the namespace \"{namespace}\"")

    # -- endpoints -------------------------------------------------------------------------------

    def _create_repo(self, authorized: bool, body: bytes):
        self._require_write(authorized)
        payload = json.loads(body or b"{}")
        if payload.get("type", "model") not in (None, "model"):
            raise HubError(400, "FakeHub only supports model repos")
        name, org = payload["name"], payload.get("organization")
        repo_id = f"{org}/{name}" if org else name
        self._require_namespace(repo_id)
        with self.hub.lock:
            if repo_id in self.hub.repos:
                # Like the real Hub, the 409 body carries the url: create_repo(exist_ok=True) reads it.
                message = "You already created this model repo"
                headers = {"X-Error-Message": message}
                return self._json(409, {"error": message, "url": f"{self.hub.url}/{repo_id}"}, headers)
            self.hub._create(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
        self._json(200, {"url": f"{self.hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _delete_repo(self, authorized: bool, body: bytes):
        self._require_write(authorized)
        payload = json.loads(body or b"{}")
        name, org = payload["name"], payload.get("organization")
        repo_id = f"{org}/{name}" if org else name
        with self.hub.lock:
            if self.hub.repos.pop(repo_id, None) is None:
                raise _repo_not_found()
        self._json(200, {})

    def _model_info(self, repo_id: str, revision: str, authorized: bool):
        with self.hub.lock:
            repo = self.hub._visible_repo(repo_id, authorized)
            sha, files = self.hub._files_at(repo, revision)
            info = {
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0] if "/" in repo_id else None,
                "sha": sha,
                "private": repo["private"],
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(files)],
            }
        self._json(200, info)

    def _tree(self, repo_id: str, revision: str, subdir: str, recursive: bool, authorized: bool):
        with self.hub.lock:
            repo = self.hub._visible_repo(repo_id, authorized)
            _, files = self.hub._files_at(repo, revision)
            files = dict(files)
        prefix = subdir.strip("/") + "/" if subdir.strip("/") else ""
        entries, folders = [], set()
        for path in sorted(files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix):]
            parts = rest.split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if (recursive or depth == 1) and folder not in folders:
                    folders.add(folder)
                    entries.append({"type": "directory", "path": folder,
                                    "oid": hashlib.sha1(folder.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                data = files[path]
                entries.append({"type": "file", "path": path, "size": len(data), "oid": git_blob_sha1(data)})
        if prefix and not entries:
            raise HubError(404, f"{subdir} does not exist", "EntryNotFound")
        self._json(200, entries)

    def _preupload(self, repo_id: str, authorized: bool, body: bytes):
        self._require_write(authorized)
        payload = json.loads(body or b"{}")
        with self.hub.lock:
            repo = self.hub._visible_repo(repo_id, authorized)
            existing = dict(repo["files"])
        answer = []
        for file in payload.get("files", []):
            old = existing.get(file["path"])
            answer.append(
                {
                    "path": file["path"],
                    "uploadMode": "regular",  # always inline base64 in the commit: no LFS / xet upload
                    "shouldIgnore": False,
                    "oid": git_blob_sha1(old) if old is not None else None,
                }
            )
        self._json(200, {"files": answer, "commitOid": repo["sha"]})

    def _commit(self, repo_id: str, revision: str, authorized: bool, body: bytes):
        self._require_write(authorized)
        if revision != "main":
            raise HubError(400, "FakeHub only commits to main")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        with self.hub.lock:
            repo = self.hub._visible_repo(repo_id, authorized)
            files = dict(repo["files"])
            summary = "commit"
            for item in lines:
                key, value = item["key"], item["value"]
                if key == "header":
                    summary = value.get("summary") or summary
                    parent = value.get("parentCommit")
                    if parent and not repo["sha"].startswith(parent):
                        raise HubError(412, "A commit has happened since. Please refresh and try again.")
                elif key == "file":
                    if value.get("encoding", "base64") != "base64":
                        raise HubError(400, f"Unsupported encoding {value.get('encoding')}")
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if files.pop(value["path"], None) is None:
                        raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(folder)}
                else:
                    raise HubError(400, f"FakeHub does not support commit operation {key!r} (LFS/xet/copy)")
            sha = self.hub._commit(repo, files, summary)
        self._json(
            200,
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}",
                "commitMessage": summary,
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )

    def _resolve(self, repo_id: str, revision: str, filename: str, authorized: bool):
        with self.hub.lock:
            repo = self.hub._visible_repo(repo_id, authorized)
            sha, files = self.hub._files_at(repo, revision)
            data = files.get(filename)
        if data is None:
            # X-Repo-Commit lets the client cache the file's absence for that commit.
            headers = {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found", "X-Repo-Commit": sha}
            return self._json(404, {"error": "Entry not found"}, headers)
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{git_blob_sha1(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{filename.rsplit("/", 1)[-1]}"',
        }
        status, body = 200, data
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if match and self.command == "GET":
            start = int(match[1])
            end = int(match[2]) if match[2] else len(data) - 1
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{start + len(body) - 1}/{len(data)}"
        headers["Content-Length"] = str(len(body))
        self._send(status, body, headers, content_type="application/octet-stream")


__all__ = ["FakeHub", "git_blob_sha1"]
