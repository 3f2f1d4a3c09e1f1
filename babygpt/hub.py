"""The Hugging Face Hub: push a checkpoint directory to a model repo, load one back by repo id.

``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` are the same three verbs as in
transformers, for every family and for LoRA adapters: ``from_pretrained`` takes a directory, a
shipped name or a repo id.

The endpoint is the ``endpoint`` argument, else ``HF_ENDPOINT`` (read by huggingface_hub), else
huggingface.co. The token is the ``token`` argument (a Space's signed-in user), else
huggingface_hub's usual sources (``HF_TOKEN``, the stored login). Failures become one clear
``ValueError``; no message ever contains the token.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx2
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    get_hf_file_metadata,
    get_session,
    get_token,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from . import machine
from .card import card_for
from .checkpoint import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_FILE,
    BASE_REPO_KEY,
    CONFIG_FILE,
    HUB_ORIGIN_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PICKLE_SUFFIXES,
    SHIPPED_DIR,
    Checkpoint,
    base_among,
    file_sha256,
    find_checkpoint,
    is_adapter,
    load_adapter,
    load_checkpoint,
    read_adapter_config,
    read_json,
    save_adapter,
    save_checkpoint,
    shipped_checkpoints,
    write_json,
)
from .export import export_transformers
from .from_transformers import IMPORT_FILES, check_size, import_transformers, is_transformers_config, save_imported
from .tokenizer import TOKENIZER_FILE

CARD_FILE = "README.md"
# In a repo pushed in transformers' layout, BabyGPT's own checkpoint sits in this folder, so the two
# config.json files never meet.
BABYGPT_FOLDER = "babygpt"
LAYOUTS = ("babygpt", "transformers")

# A model's files, or a LoRA adapter's (which loads only where its base is: a shipped name travels).
CHECKPOINT_FILES = [CONFIG_FILE, TOKENIZER_FILE, MODEL_FILE, METRICS_FILE, ADAPTER_CONFIG_FILE, ADAPTER_FILE]
# HTTP answers, transport failures and timeouts (huggingface_hub speaks httpx2), files
HUB_ERRORS = (HfHubHTTPError, httpx2.HTTPError, OSError)
# huggingface_hub's shared HTTP client waits for an answer forever (file downloads have their own
# limit, 10 s a request): a Hub that stops answering would hang a push, and the visitor waiting on it.
TIMEOUT_SECONDS = float(os.environ.get("BABYGPT_HUB_TIMEOUT", 60))
REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def check_repo_id(repo_id: str) -> str:
    repo_id = (repo_id or "").strip()
    if not REPO_ID.fullmatch(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise ValueError(f"{repo_id!r} is not a repo id: write it as owner/name, e.g. alice/babygpt-shakespeare")
    return repo_id


def _http_answer(error: BaseException | None) -> BaseException | None:
    """The Hub's own answer inside ``error``: huggingface_hub wraps it (e.g. a 500 in
    snapshot_download surfaces as LocalEntryNotFoundError, the HTTP error its cause)."""
    while error is not None:
        answered = isinstance(error, HfHubHTTPError) and error.response is not None
        if isinstance(error, RepositoryNotFoundError) or answered:
            return error
        error = error.__cause__ or error.__context__
    return None


def _bounded() -> None:
    """Every request of huggingface_hub's shared client gives up after ``TIMEOUT_SECONDS``."""
    get_session().timeout = TIMEOUT_SECONDS


def _explain(error: Exception, repo_id: str, endpoint: str | None) -> ValueError:
    where = endpoint or "the Hugging Face Hub"
    if isinstance(error, httpx2.TimeoutException) or isinstance(error.__cause__, httpx2.TimeoutException):
        return ValueError(f"{where} stopped answering ({repo_id}); try again in a moment: nothing was half-written")
    error = _http_answer(error) or error
    if isinstance(error, RepositoryNotFoundError):
        return ValueError(f"{where} has no repository {repo_id} that you can see (is it private, or misspelt?)")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 401:
            return ValueError(f"{where} refused the token: sign in again or set a valid HF_TOKEN")
        if status == 403:
            return ValueError(f"your token may not write to {repo_id}: it needs write access to that namespace")
        return ValueError(f"{where} answered {status} for {repo_id}; try again in a moment")
    return ValueError(f"{where} cannot be reached ({type(error).__name__}); check the connection and try again")


@dataclass
class Pushed:
    url: str
    card_written: bool  # False: the repo's README.md was written or edited by someone and was kept


def _existing_card(api: HfApi, repo_id: str) -> str | None:
    """The repo's README.md, or None when it has none (a new repo)."""
    if not api.file_exists(repo_id, CARD_FILE):
        return None
    with tempfile.TemporaryDirectory() as folder:
        return Path(api.hf_hub_download(repo_id, CARD_FILE, local_dir=folder)).read_text(encoding="utf-8")


def hub_origin(directory) -> str | None:
    """The repo id this model was pushed to or downloaded from, while its weights are still those."""
    directory = Path(directory)
    try:
        origin = read_json(directory / HUB_ORIGIN_FILE)
        unchanged = origin.get("model_sha256") == file_sha256(directory / MODEL_FILE)
    except (ValueError, OSError):
        return None
    return origin.get("repo_id") if unchanged and isinstance(origin.get("repo_id"), str) else None


def _record_origin(directory: Path, repo_id: str) -> None:
    """Remember where a model is on the Hub, so an adapter on it can name it when pushed (a shipped
    model travels by name, and its folder is not ours to write)."""
    if is_adapter(directory) or directory.resolve().is_relative_to(SHIPPED_DIR.resolve()):
        return
    try:
        weights = file_sha256(directory / MODEL_FILE)
        write_json(directory / HUB_ORIGIN_FILE, {"repo_id": repo_id, "model_sha256": weights})
    except OSError:
        pass  # a read-only folder: the adapter's push will ask for the base's repo id instead


def _adapter_config_to_push(directory: Path, base_repo: str | None) -> bytes | None:
    """The adapter's config naming its base by repo id (PEFT's ``base_model_name_or_path``), or None
    when the base is a shipped model, which travels by name."""
    config = read_json(directory / ADAPTER_CONFIG_FILE)
    base = config.get("base", "")
    if base in shipped_checkpoints():
        return None
    repo = base_repo or config.get(BASE_REPO_KEY) or (hub_origin(base) if Path(base).is_dir() else None)
    if not repo:
        raise ValueError(f"this adapter's base ({Path(base).name}) is only on this machine, so no one who loads the "
                         "adapter could find it: push the base model first (the Hub tab's push, or push_to_hub(base, "
                         "'you/base')), then push the adapter again and it names the base by that repo id")
    return (json.dumps({**config, BASE_REPO_KEY: check_repo_id(repo)}, indent=2) + "\n").encode("utf-8")


def _files_to_push(directory: Path, layout: str, folder: Path, base_repo: str | None) -> list[CommitOperationAdd]:
    """The checkpoint's files as the repo holds them in ``layout``; ``folder`` is scratch space."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose one of: {', '.join(LAYOUTS)}")
    own = {name: str(directory / name) for name in CHECKPOINT_FILES if (directory / name).is_file()}
    if is_adapter(directory):
        own[ADAPTER_CONFIG_FILE] = _adapter_config_to_push(directory, base_repo) or own[ADAPTER_CONFIG_FILE]
    prefix = ""
    operations = []
    if layout == "transformers":
        exported = export_transformers(directory, folder / "transformers")  # or why transformers cannot hold it
        operations = [CommitOperationAdd(path_in_repo=path.name, path_or_fileobj=str(path))
                      for path in sorted(exported.iterdir())]
        prefix = f"{BABYGPT_FOLDER}/"
    return operations + [CommitOperationAdd(path_in_repo=prefix + name, path_or_fileobj=source)
                         for name, source in own.items()]


def push_checkpoint(directory, repo_id: str, token: str | None = None, private: bool = False,
                    endpoint: str | None = None, layout: str = "babygpt", base_repo: str | None = None) -> Pushed:
    """Upload a checkpoint's files and a generated model card to ``repo_id`` (created if needed).

    ``layout="transformers"`` puts the model at the repo's root in transformers' layout (what
    ``AutoModelForCausalLM`` and ``AutoTokenizer`` read) and BabyGPT's checkpoint in ``babygpt/``.
    An adapter names its base by repo id: ``base_repo``, else where the base was pushed to or
    downloaded from; a base only on this machine must be pushed first (a shipped one travels by name).
    A README.md already in the repo that someone wrote or edited is kept (``card_written`` False)."""
    repo_id = check_repo_id(repo_id)
    directory = Path(directory)
    load_checkpoint(directory)  # never publish a checkpoint that would not load
    if token is None and get_token() is None:  # HF_TOKEN, or a stored `hf auth login`
        raise ValueError("pushing needs a Hugging Face token with write access: sign in with Hugging Face (on a "
                         "Space), or set HF_TOKEN / run `hf auth login` locally")
    api = HfApi(endpoint=endpoint, token=token)
    _bounded()
    with tempfile.TemporaryDirectory() as folder:
        operations = _files_to_push(directory, layout, Path(folder), base_repo)  # refused before anything is sent
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            existing = _existing_card(api, repo_id)
            card, fresh = card_for(directory, repo_id, existing, layout)
            if card != existing:  # a fresh card, or an edited one whose numbers changed
                operations.append(CommitOperationAdd(path_in_repo=CARD_FILE, path_or_fileobj=card.encode("utf-8")))
            api.create_commit(repo_id, operations, commit_message="Upload BabyGPT checkpoint")
        except HUB_ERRORS as error:
            raise _explain(error, repo_id, endpoint) from None
    _record_origin(directory, repo_id)
    return Pushed(str(url), fresh)


def _files_to_fetch(api: HfApi, repo_id: str, max_bytes: int | None) -> tuple[list[str], str]:
    """(the repo's files to download, the folder in it that becomes the checkpoint), from its file list.

    A repo in transformers' layout keeps BabyGPT's own checkpoint in ``babygpt/``; any other repo
    is BabyGPT's layout, or transformers' alone (imported). Pickle-only weights and weights over
    ``max_bytes`` are refused here, before a byte of them is fetched."""
    names = {sibling.rfilename for sibling in api.model_info(repo_id).siblings or []}
    if f"{BABYGPT_FOLDER}/{CONFIG_FILE}" in names:
        wanted, folder = [f"{BABYGPT_FOLDER}/{name}" for name in CHECKPOINT_FILES], BABYGPT_FOLDER
    else:
        wanted, folder = list(dict.fromkeys(CHECKPOINT_FILES + list(IMPORT_FILES))), ""
    weights = next((name for name in wanted if name in names and name.endswith((MODEL_FILE, ADAPTER_FILE))), None)
    pickles = sorted(name for name in names if name.lower().endswith(PICKLE_SUFFIXES))
    if weights is None and pickles:
        raise ValueError(f"{repo_id} has only pickle weights ({', '.join(pickles)}): loading pickle can run any "
                         "code in it, so BabyGPT never does (nothing was downloaded); ask for model.safetensors")
    if weights is not None and max_bytes is not None:
        check_size(get_hf_file_metadata(hf_hub_url(repo_id, weights, endpoint=api.endpoint), token=api.token).size,
                   max_bytes, repo_id)
    return wanted, folder


def download_checkpoint(repo_id: str, destination, token: str | None = None, endpoint: str | None = None,
                        bases: dict[str, Path] | None = None, max_bytes: int | None = None) -> Path:
    """Fetch ``repo_id`` into the new directory ``destination``, only once it is known to load.

    A transformers GPT-2 or Llama repo is imported into a BabyGPT checkpoint. ``bases`` (name ->
    checkpoint directory): when given, an adapter may only sit on one of these. The app passes the
    visitor's own models, so a repo cannot point it at other files on the server. ``max_bytes``
    refuses weights above it before downloading them."""
    repo_id = check_repo_id(repo_id)
    destination = Path(destination)
    if destination.exists():
        raise ValueError(f"{destination} already exists")
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=destination.parent))
    _bounded()
    try:
        wanted, folder = _files_to_fetch(HfApi(endpoint=endpoint, token=token), repo_id, max_bytes)
        snapshot_download(repo_id, endpoint=endpoint, token=token, local_dir=staging, allow_patterns=wanted)
        fetched = staging / folder
        for leftover in fetched.iterdir():  # huggingface_hub's own cache folder, if any
            if leftover.relative_to(staging).as_posix() not in wanted:
                shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
        try:
            if (fetched / CONFIG_FILE).is_file() and is_transformers_config(read_json(fetched / CONFIG_FILE)):
                fetched = save_imported(fetched, staging / ".imported", max_bytes, source=repo_id)
            if is_adapter(fetched):
                load_adapter(fetched, base=_adapter_base(fetched, bases, destination.parent, token, endpoint,
                                                         max_bytes))
            else:
                load_checkpoint(fetched)
        except ValueError as error:
            raise ValueError(f"{repo_id} is not a model BabyGPT can load: {error}") from None
        fetched.rename(destination)  # all or nothing: no half-written model appears
        if not is_adapter(destination):
            _record_origin(destination, repo_id)
        return destination
    except HUB_ERRORS as error:
        raise _explain(error, repo_id, endpoint) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _adapter_base(adapter_dir: Path, bases: dict[str, Path] | None, folder: Path, token, endpoint,
                  max_bytes: int | None) -> Path | None:
    """The base a downloaded adapter goes on: one of ``bases`` (the app's visitor's models) or, with
    none given, the one its config names, when here; else its base repo, fetched into ``folder``."""
    config = read_adapter_config(adapter_dir)
    try:
        return base_among(adapter_dir, bases) if bases is not None else find_checkpoint(config["base"])
    except ValueError:
        if not config.get(BASE_REPO_KEY):
            raise
    base = _fetched_base(check_repo_id(config[BASE_REPO_KEY]), config["base_sha256"], folder, token, endpoint,
                         max_bytes)
    raw = read_json(adapter_dir / ADAPTER_CONFIG_FILE)
    write_json(adapter_dir / ADAPTER_CONFIG_FILE, {**raw, "base": str(base.resolve())})  # found here from now on
    return base


def _fetched_base(repo_id: str, sha256: str, folder: Path, token, endpoint, max_bytes: int | None) -> Path:
    """The base model ``repo_id`` in ``folder`` (fetched unless the same weights are already there),
    refused when its weights are not the ones the adapter was trained on."""
    target = folder / repo_id.replace("/", "--")
    if (target / MODEL_FILE).is_file() and file_sha256(target / MODEL_FILE) == sha256:
        return target
    fresh = download_checkpoint(repo_id, target.with_name(f".{target.name}.{os.getpid()}.base"), token, endpoint,
                                max_bytes=max_bytes)
    found = file_sha256(fresh / MODEL_FILE) if (fresh / MODEL_FILE).is_file() else "none (not a model)"
    if found != sha256:
        shutil.rmtree(fresh, ignore_errors=True)
        raise ValueError(f"the adapter's base {repo_id} has changed since the adapter was trained: its weights' sha256 "
                         f"is {found[:12]}…, the adapter was trained on {sha256[:12]}…; an adapter only fits the exact "
                         "weights it learned on")
    if target.exists():
        shutil.rmtree(target)
    fresh.rename(target)
    return target


def save_pretrained(loaded: Checkpoint, directory) -> Path:
    """Write a loaded model or adapter as a checkpoint directory (what ``push_to_hub`` uploads)."""
    directory = Path(directory)
    written_anew = ("format_version", "kind", "lora", "model", "tokenizer")
    config = {k: v for k, v in loaded.config.items() if k not in written_anew}
    if loaded.config.get("kind") == "lora":
        save_adapter(directory, loaded.model, loaded.metrics, config)
    else:
        save_checkpoint(directory, loaded.model, loaded.tokenizer, loaded.metrics, config)
    return directory


def from_pretrained(source: str, token: str | None = None, endpoint: str | None = None, cache_dir=None,
                    device: str = "cpu") -> Checkpoint:
    """A checkpoint from a directory, a shipped name (``gpt``) or a Hub repo id (``owner/name``).

    A directory or repo of transformers' GPT-2 or Llama is imported (``babygpt.from_transformers``).

    A repo is downloaded into ``cache_dir`` (default ``~/.cache/babygpt/hub``), replacing an older
    copy only once the new one is known to load."""
    if Path(source).is_dir() and (Path(source) / CONFIG_FILE).is_file() and not is_adapter(source):
        if is_transformers_config(read_json(Path(source) / CONFIG_FILE)):  # GPT-2 or Llama, saved by transformers
            loaded = import_transformers(source)
            loaded.model.to(device)
            return loaded
    if Path(source).is_dir() or source in shipped_checkpoints():
        return load_checkpoint(find_checkpoint(source), device)
    repo_id = check_repo_id(source)
    target = Path(cache_dir or machine.cache_dir() / "hub") / repo_id.replace("/", "--")
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = download_checkpoint(repo_id, target.with_name(f".{target.name}.{os.getpid()}.new"), token, endpoint)
    if target.exists():
        shutil.rmtree(target)
    fresh.rename(target)
    return load_checkpoint(target, device)


def push_to_hub(source, repo_id: str, token: str | None = None, private: bool = False,
                endpoint: str | None = None, layout: str = "babygpt", base_repo: str | None = None) -> Pushed:
    """Push a checkpoint directory, a shipped name or a loaded ``Checkpoint`` to ``repo_id``, in
    BabyGPT's layout or (``layout="transformers"``) in transformers' with BabyGPT's in ``babygpt/``."""
    if isinstance(source, Checkpoint):
        with tempfile.TemporaryDirectory() as folder:
            return push_checkpoint(save_pretrained(source, Path(folder) / "checkpoint"), repo_id, token, private,
                                   endpoint, layout, base_repo)
    return push_checkpoint(find_checkpoint(source), repo_id, token, private, endpoint, layout, base_repo)
