"""Models on the Hugging Face Hub (captioner/hub.py), against a fake Hub on 127.0.0.1: the few
endpoints huggingface_hub uses to download a snapshot (revision info, file tree, file resolve)
and to commit one (create repo and branch, validate the card's YAML, preupload, commit)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from conftest import photo
from huggingface_hub import constants

from captioner import Captioner
from captioner.cli.push import main as push_main
from captioner.registry import HUB_FILES as MODEL_FILES
from captioner.registry import MODELS_DIR, HubError, parse_hub_model, resolve_model

TOKEN = "hf_fake_write_token_0123456789"
REPO = r"(?P<repo>[^/]+/[^/]+)"


class FakeHub:
    """Repositories as commits of files in memory, and every request the server saw."""

    def __init__(self) -> None:
        self.repos: dict[str, dict] = {}  # repo id -> {"branches": {name: sha}, "commits": {}}
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.messages: dict[str, str] = {}  # commit sha -> its message

    def commit(self, repo_id: str, branch: str, files: dict[str, bytes]) -> str:
        """Add `files` to `branch` (made from main if new) as one commit; returns its sha."""
        repo = self.repos.setdefault(repo_id, {"branches": {}, "commits": {}})
        parent = repo["branches"].get(branch) or repo["branches"].get("main")
        tree = {**repo["commits"].get(parent, {}), **files}
        sha = hashlib.sha1(repr((parent, sorted(tree.items()))).encode()).hexdigest()
        repo["commits"][sha] = tree
        repo["branches"][branch] = sha
        return sha

    def resolve(self, repo_id: str, revision: str) -> str | None:
        repo = self.repos[repo_id]
        return repo["branches"].get(revision) or (revision if revision in repo["commits"] else None)

    def downloads(self) -> list[str]:
        return [path for _, path in self.requests if "/resolve/" in path]


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class HubHandler(BaseHTTPRequestHandler):
    hub: FakeHub

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        path = urlsplit(self.path).path
        self.hub.requests.append((method, path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        routes = [
            ("GET", rf"/api/models/{REPO}/revision/(?P<rev>[^/]+)", self._model_info),
            ("GET", rf"/api/models/{REPO}/tree/(?P<rev>[^/]+)", self._tree),
            ("HEAD", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self._file),
            ("GET", rf"/{REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", self._file),
            ("POST", r"/api/repos/create", self._create_repo),
            ("POST", r"/api/validate-yaml", lambda body: self._json({"errors": []})),
            ("POST", rf"/api/models/{REPO}/branch/(?P<rev>[^/]+)", self._create_branch),
            ("POST", rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", self._preupload),
            ("POST", rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", self._commit),
        ]
        for route_method, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                args = {key: unquote(value) for key, value in match.groupdict().items()}
                if method == "POST" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._error(401, "Unauthorized", "Invalid credentials in Authorization")
                if "repo" in args and args["repo"] not in self.hub.repos and "/create" not in path:
                    return self._error(404, "RepoNotFound", "Repository not found")
                if method != "POST" and "rev" in args:  # a commit's rev is its branch's name
                    args["rev"] = self.hub.resolve(args["repo"], args["rev"])
                    if args["rev"] is None:
                        return self._error(404, "RevisionNotFound", "Invalid rev id")
                return handler(body, **args)
        self._error(404, None, f"no fake endpoint for {method} {path}")

    def _model_info(self, body, repo, rev) -> None:
        files = self.hub.repos[repo]["commits"][rev]
        self._json({"id": repo, "sha": rev, "siblings": [{"rfilename": f} for f in files]})

    def _tree(self, body, repo, rev) -> None:
        files = self.hub.repos[repo]["commits"][rev]
        entries = [
            {"type": "file", "path": name, "size": len(data), "oid": git_blob_id(data)}
            for name, data in sorted(files.items())
        ]
        self._json(entries)

    def _file(self, body, repo, rev, file) -> None:
        data = self.hub.repos[repo]["commits"][rev].get(file)
        if data is None:
            return self._error(404, "EntryNotFound", f"{file} does not exist", commit=rev)
        self.send_response(200)
        self.send_header("X-Repo-Commit", rev)
        self.send_header("ETag", f'"{git_blob_id(data)}"')
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(data)

    def _create_repo(self, body) -> None:
        payload = json.loads(body)
        repo_id = f"{payload['organization']}/{payload['name']}"
        url = f"http://{self.headers['Host']}/{repo_id}"
        if repo_id in self.hub.repos:  # the Hub names the repository in its 409 too
            return self._json({"error": "You already created this model repo", "url": url}, 409)
        self.hub.repos[repo_id] = {"branches": {}, "commits": {}, "private": payload["visibility"]}
        self.hub.commit(repo_id, "main", {".gitattributes": b"*.safetensors filter=lfs\n"})
        self._json({"url": url})

    def _create_branch(self, body, repo, rev) -> None:
        branches = self.hub.repos[repo]["branches"]
        if rev in branches:
            return self._error(409, None, "Reference already exists")
        branches[rev] = branches.get("main")
        self._json({})

    def _preupload(self, body, repo, rev) -> None:
        files = json.loads(body)["files"]
        modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
        self._json({"files": modes})

    def _commit(self, body, repo, rev) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        assert lines[0]["key"] == "header"
        files = {
            line["value"]["path"]: base64.b64decode(line["value"]["content"])
            for line in lines
            if line["key"] == "file"
        }
        if rev not in self.hub.repos[repo]["branches"]:
            return self._error(404, "RevisionNotFound", f"no branch {rev}")
        sha = self.hub.commit(repo, rev, files)
        self.hub.messages[sha] = lines[0]["value"]["summary"]
        url = f"http://{self.headers['Host']}/{repo}/commit/{sha}"
        self._json({"commitUrl": url, "commitOid": sha, "pullRequestUrl": None})

    def _json(self, value, status: int = 200) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str | None, message: str, commit: str = "") -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake Hub on an ephemeral port that huggingface_hub talks to, with its cache and token
    file in tmp_path. huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE when it is
    imported, so its constants are set here as well as the environment."""
    fake = FakeHub()
    handler = type("Handler", (HubHandler,), {"hub": fake})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    home = tmp_path / "hf-home"
    settings = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_OFFLINE": False,
    }
    for name, value in settings.items():
        monkeypatch.setattr(constants, name, value)
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """The shipped shapes model, with a captioner-evaluate report beside it."""
    directory = tmp_path / "shapes"
    shutil.copytree(MODELS_DIR / "shapes", directory)
    report = {"Bleu_4": 0.689, "CIDEr": 3.93, "num_images": 1000, "split": "test", "beam_size": 5}
    (directory / "metrics.json").write_text(json.dumps(report))
    return directory


def load(model: str) -> Captioner:
    return Captioner.load(model, device="cpu", backend="torch")


def test_a_pushed_model_downloads_and_captions_as_the_local_directory(hub, model_dir, capsys):
    assert push_main([str(model_dir), "someone/shapes"]) == 0
    printed = capsys.readouterr()
    assert TOKEN not in printed.out + printed.err
    commit = hub.repos["someone/shapes"]["branches"]["main"]
    assert f"hf:someone/shapes@{commit}" in printed.out
    # A file a model directory does not need is never downloaded.
    hub.commit("someone/shapes", "main", {"log.jsonl": b"{}\n" * 1000})

    downloaded = resolve_model("hf:someone/shapes")
    assert sorted(p.name for p in downloaded.iterdir()) == sorted(MODEL_FILES)
    image = photo("coffee")
    local, remote = load(str(model_dir)).caption(image), load("hf:someone/shapes").caption(image)
    assert remote.text == local.text and remote.text
    assert remote.log_prob == pytest.approx(local.log_prob, abs=1e-6)

    hub.requests.clear()  # the second load reads the cache: no file is fetched again
    assert load("hf:someone/shapes").caption(image).text == local.text
    assert hub.downloads() == []


def test_a_revision_pins_the_model_and_a_cached_model_loads_offline(hub, model_dir, monkeypatch):
    assert push_main([str(model_dir), "someone/shapes"]) == 0
    first = hub.repos["someone/shapes"]["branches"]["main"]
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "name": "shapes-v2"}))
    assert push_main([str(model_dir), "someone/shapes", "--revision", "v2"]) == 0

    assert load("hf:someone/shapes").name == "scenes-default"
    assert load("hf:someone/shapes@v2").name == "shapes-v2"
    assert load(f"hf:someone/shapes@{first}").name == "scenes-default"
    hub.requests.clear()
    resolve_model(f"hf:someone/shapes@{first}")
    assert hub.requests == []  # a cached commit is not even looked up
    assert hub.repos["someone/shapes"]["branches"]["main"] == first  # v2 left main alone

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.requests.clear()
    assert load("hf:someone/shapes@v2").name == "shapes-v2"
    assert hub.requests == []  # offline: not even the revision is asked for
    hub.commit("someone/shapes", "v3", {"config.json": b"{}"})
    with pytest.raises(HubError, match=r"hf:someone/shapes@v3: .*HF_HUB_OFFLINE"):
        resolve_model("hf:someone/shapes@v3")


def test_the_model_card_lists_licence_scores_data_and_usage(hub, model_dir):
    (model_dir / "README.md").write_text("---\nlicense: mit\n---\n# My notes\n\nDrawn shapes.\n")
    assert push_main([str(model_dir), "someone/shapes", "--private", "--message", "v1"]) == 0
    assert hub.repos["someone/shapes"]["private"] == "private"
    commit = hub.repos["someone/shapes"]["branches"]["main"]
    assert hub.messages[commit] == "v1"
    files = hub.repos["someone/shapes"]["commits"][commit]
    assert sorted(files) == sorted([".gitattributes", *MODEL_FILES])
    assert files["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    front_matter = yaml.safe_load(card.split("---\n")[1])
    assert front_matter["license"] == "apache-2.0"
    assert front_matter["library_name"] == "captioner"
    assert "image-captioning" in front_matter["tags"]
    assert card.count("\n---\n") == 1  # the directory's own front matter is not repeated
    assert "| Bleu_4 | 0.689 | test, 1,000 images, beam 5 (captioner-evaluate) |" in card
    assert "| CIDEr | 4.067 | validation, best epoch 7 (captioner-train) |" in card
    assert "- train: captions `captions_train.json`" in card
    assert "captioner --model hf:someone/shapes" in card
    assert "Drawn shapes." in card
    assert "Encoder: efficientnet-lite0 at 224 px, frozen" in card  # no encoder weights pushed


def test_hub_errors_name_the_model_and_the_reason(hub, model_dir, tmp_path, monkeypatch):
    assert push_main([str(model_dir), "someone/shapes"]) == 0
    hub.commit("someone/notes", "main", {"README.md": b"# Just notes\n"})
    cases = {
        "hf:someone/missing": r"hf:someone/missing: no model repository someone/missing",
        "hf:someone/shapes@nope": r"someone/shapes has no revision 'nope'",
        "hf:someone/notes": r"hf:someone/notes: not a captioner model: .*no config.json",
        "hf:someone": r"hf:someone: not a Hub model name",
        "hf:someone/shapes@": r"not a Hub model name",
    }
    for model, message in cases.items():
        with pytest.raises(HubError, match=message):
            resolve_model(model)

    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()  # nothing listens there now
    cached = resolve_model("hf:someone/shapes")
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError, match=r"hf:someone/other: cannot reach the Hub .*not in the"):
        resolve_model("hf:someone/other")
    assert resolve_model("hf:someone/shapes") == cached  # no network: the cached copy serves


def test_push_refuses_what_does_not_load_and_reports_a_missing_token(
    hub, model_dir, monkeypatch, capsys
):
    (model_dir / "vocab.json").unlink()
    with pytest.raises(SystemExit) as exit_:
        push_main([str(model_dir), "someone/shapes"])
    assert exit_.value.code == 1
    assert "missing vocab.json" in capsys.readouterr().err
    assert hub.requests == []  # nothing reached the Hub

    shutil.copy(MODELS_DIR / "shapes" / "vocab.json", model_dir)
    monkeypatch.setenv("HF_TOKEN", "hf_not_the_right_one")
    with pytest.raises(SystemExit):
        push_main([str(model_dir), "someone/shapes"])
    err = capsys.readouterr().err
    assert "refused the upload (401)" in err and "HF_TOKEN" in err
    assert "hf_not_the_right_one" not in err
    assert "someone/shapes" not in hub.repos


def test_the_batch_command_captions_with_a_hub_model(hub, model_dir, tmp_path):
    from captioner.cli.batch.command import main

    assert push_main([str(model_dir), "someone/shapes"]) == 0
    photo("coffee").save(tmp_path / "coffee.jpg")
    out = tmp_path / "captions.jsonl"
    argv = [str(tmp_path / "coffee.jpg"), "--model", "hf:someone/shapes", "-o", str(out)]
    assert main([*argv, "--backend", "torch", "--device", "cpu"]) == 0
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert row["caption"] == load(str(model_dir)).caption(tmp_path / "coffee.jpg").text


def test_captioner_export_names_a_missing_hub_model(hub, tmp_path, capsys):
    from captioner.cli.export import main

    with pytest.raises(SystemExit) as exit_:
        main(["hf:someone/missing", "--onnx", str(tmp_path / "out")])
    assert exit_.value.code == 2
    assert "hf:someone/missing: no model repository someone/missing" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_hub_name_parses_into_repository_and_revision():
    assert parse_hub_model("hf:a/b").revision is None
    assert parse_hub_model("hf:a-1/b.c_d@refs/pr/1").revision == "refs/pr/1"
    assert str(parse_hub_model("hf:a/b@v2")) == "hf:a/b@v2"
    for bad in ("a/b", "hf:a/b/c", "hf:../b", "hf:a/..", "hf:/b"):
        with pytest.raises(HubError):
            parse_hub_model(bad)


def test_the_app_opens_a_hub_model_by_name_off_the_ui_thread(
    qtbot, hub, model_dir, tmp_path, monkeypatch
):
    pytest.importorskip("PySide6")
    pytest.importorskip("pytestqt")
    from conftest import GUI_WAIT_MS, show_main_window
    from PySide6.QtWidgets import QInputDialog

    import captioner.registry
    from gui.app import model_argument
    from gui.settings import Settings
    from gui.widgets.settings_panel import HUB

    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "name": "shapes-v2"}))
    assert push_main([str(model_dir), "someone/shapes", "--revision", "v2"]) == 0
    download_threads = []

    def download_model(model):
        download_threads.append(threading.current_thread())
        return downloading(model)

    downloading = captioner.registry.download_model
    monkeypatch.setattr(captioner.registry, "download_model", download_model)
    settings = Settings.from_file(str(tmp_path / "settings.ini"))
    settings.mark_started()
    settings.backend = "torch"
    window = show_main_window(qtbot, settings, "shapes", str(tmp_path / "app-data"))
    choice = window.settings_panel.model_choice

    def answer(name: str, accepted: bool = True) -> None:
        monkeypatch.setattr(QInputDialog, "getText", lambda *args, **kwargs: (name, accepted))

    def choose(name: str, ask) -> list:
        answer(name)
        with qtbot.waitSignal(window.model_ready, timeout=GUI_WAIT_MS) as ready:
            ask()
        return ready.args

    def from_settings() -> None:
        choice.activated.emit(choice.findData(HUB))

    assert choose("hf:someone/shapes@v2", from_settings) == [True], window.session.model_error
    assert window.session.model_info.name == "shapes-v2"
    assert settings.model == "hf:someone/shapes@v2"
    assert choice.currentText() == "hf:someone/shapes@v2"
    assert download_threads and threading.main_thread() not in download_threads

    answer("hf:someone/other", accepted=False)  # cancelled: nothing changes
    from_settings()
    assert choice.currentData() == settings.model == "hf:someone/shapes@v2"
    assert window.session.model_info is not None

    # From the Settings menu; the prefix is added for the user.
    assert choose("someone/missing", window.actions.hub_model.trigger) == [False]
    assert "hf:someone/missing: no model repository" in window.banner.text.text()
    assert model_argument("hf:someone/shapes@v2") == "hf:someone/shapes@v2"
