"""A loopback, Hugging Face Hub-compatible test server (stdlib only).

Implements the subset of the Hub HTTP API that the real ``huggingface_hub`` (2.4, httpx client, ``HF_HUB_DISABLE_XET=1``),
``transformers`` and ``datasets`` clients call for ``push_to_hub`` / ``from_pretrained`` / ``load_dataset``:

* ``POST /api/repos/create`` (409 when the repo exists; the client's ``exist_ok`` handles it)
* ``GET /api/{models|datasets}/{repo}[/revision/{rev}]`` (info: ``sha``, ``siblings``)
* ``POST /api/validate-yaml``, ``GET /api/whoami-v2``
* ``POST /api/{type}s/{repo}/preupload/{rev}`` ("lfs" for binary/large files, "regular" otherwise)
* ``POST /{prefix}{repo}.git/info/lfs/objects/batch`` + ``PUT /lfs-upload/{oid}`` (sha256 verified)
* ``POST /api/{type}s/{repo}/commit/{rev}`` (ndjson: header, file, lfsFile, deletedFile, deletedFolder)
* ``GET /api/{type}s/{repo}/tree/{rev}[/{path}]``, ``POST .../paths-info/{rev}``, ``GET .../refs``,
  ``GET .../commits/{rev}``
* ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` and ``/datasets/{repo}/resolve/{rev}/{path}`` with ``ETag``,
  ``X-Repo-Commit``, ``Content-Length``, ``X-Linked-Etag``/``X-Linked-Size`` (LFS) and ``Range`` support.

Errors carry the ``X-Error-Code`` header the client maps to exceptions (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``); writes without ``Authorization: Bearer ...`` get 401.

Usage::

    with HubServer() as hub:          # or: url, stop = start_hub_server()
        os.environ["HF_ENDPOINT"] = hub.url
        ...

Blobs are stored content-addressed (sha256) in a temporary directory; repo metadata (a linear history of commits on
``main``) lives in memory.  ``hub.requests`` records ``(method, path, status)`` for debugging.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

LFS_EXTENSIONS = (
    ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".parquet", ".arrow", ".npy", ".npz",
    ".pkl", ".pickle", ".zip", ".gz", ".tar", ".zst", ".png", ".jpg", ".jpeg", ".gif", ".mp4", ".wav", ".model",
)
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = b"".join(
    f"*{ext} filter=lfs diff=lfs merge=lfs -text\n".encode() for ext in LFS_EXTENSIONS
)
DEFAULT_BRANCH = "main"
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


class _Repo:
    def __init__(self, repo_type: str, repo_id: str, private: bool):
        self.repo_type, self.repo_id, self.private = repo_type, repo_id, private
        self.created_at = _now()
        # Linear history, oldest first: dict(oid, title, message, date, files={path: entry})
        self.commits: list[dict] = []

    @property
    def head(self) -> dict:
        return self.commits[-1]

    def resolve(self, rev: str) -> dict:
        rev = unquote(rev)
        if rev in (DEFAULT_BRANCH, "refs/heads/" + DEFAULT_BRANCH):
            return self.head
        if _COMMIT_RE.match(rev) or (len(rev) >= 7 and re.match(r"^[0-9a-f]+$", rev)):
            for c in reversed(self.commits):
                if c["oid"].startswith(rev):
                    return c
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")


class HubServer:
    """Loopback Hub. ``.url`` is the endpoint to put in ``HF_ENDPOINT``; ``.close()`` stops it and removes the data."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, user: str = "user"):
        self.root = tempfile.mkdtemp(prefix="hub_server_")
        self.blob_dir = os.path.join(self.root, "blobs")
        os.makedirs(self.blob_dir)
        self.user = user
        self.repos: dict[tuple[str, str], _Repo] = {}
        self.pending_lfs: set[str] = set()
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str, int]] = []
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()

    # -- lifecycle --------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- storage ----------------------------------------------------------------------------------------------------
    def _blob_path(self, sha256: str) -> str:
        return os.path.join(self.blob_dir, sha256)

    def store_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self._blob_path(sha)
        if not os.path.exists(path):
            tmp = f"{path}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        return sha

    def has_blob(self, sha256: str) -> bool:
        return os.path.exists(self._blob_path(sha256))

    def read_blob(self, sha256: str) -> bytes:
        with open(self._blob_path(sha256), "rb") as f:
            return f.read()

    def get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def repo_url(self, repo_type: str, repo_id: str) -> str:
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        return f"{self.url}/{prefix}{repo_id}"

    def make_commit(self, repo: _Repo, files: dict, title: str, message: str = "") -> dict:
        parent = repo.commits[-1]["oid"] if repo.commits else ""
        digest = hashlib.sha1()
        digest.update(f"{parent}\n{title}\n{message}\n{len(repo.commits)}\n".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{files[path]['sha256']}\n".encode())
        commit = {"oid": digest.hexdigest(), "title": title, "message": message, "date": _now(), "files": files,
                  "parents": [parent] if parent else []}
        repo.commits.append(commit)
        return commit

    def file_entry(self, data: bytes, lfs: bool) -> dict:
        sha = self.store_blob(data)
        return {"sha256": sha, "size": len(data), "lfs": lfs, "blob_id": git_blob_sha1(data) if not lfs else
                git_blob_sha1(self.lfs_pointer(sha, len(data)))}

    @staticmethod
    def lfs_pointer(sha256: str, size: int) -> bytes:
        return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()

    def create_repo(self, repo_type: str, repo_id: str, private: bool = False) -> tuple[_Repo, bool]:
        with self.lock:
            key = (repo_type, repo_id)
            if key in self.repos:
                return self.repos[key], False
            repo = _Repo(repo_type, repo_id, private)
            self.make_commit(repo, {".gitattributes": self.file_entry(GITATTRIBUTES, False)}, "initial commit")
            self.repos[key] = repo
            return repo, True


def _tree_entries(hub: HubServer, repo: _Repo, commit: dict, path: str, recursive: bool, expand: bool) -> list[dict]:
    files = commit["files"]
    path = path.strip("/")
    prefix = path + "/" if path else ""
    if path and path in files:
        raise HubError(404, f"{path} is a file, not a directory", "EntryNotFound",
                       {"X-Repo-Commit": commit["oid"]})
    under = [p for p in files if p.startswith(prefix)]
    if path and not under:
        raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit["oid"]})
    out_files, out_dirs = [], set()
    for p in under:
        rel = p[len(prefix):]
        parts = rel.split("/")
        if recursive:
            out_files.append(p)
            for i in range(1, len(parts)):
                out_dirs.add(prefix + "/".join(parts[:i]))
        elif len(parts) == 1:
            out_files.append(p)
        else:
            out_dirs.add(prefix + parts[0])
    entries = [_dir_entry(repo, commit, d, expand) for d in sorted(out_dirs)]
    entries += [_file_entry(repo, commit, p, expand) for p in sorted(out_files)]
    return entries


def _last_commit(repo: _Repo, commit: dict, path: str, is_dir: bool) -> dict:
    """The most recent commit (up to ``commit``) that changed ``path``."""
    idx = next(i for i, c in enumerate(repo.commits) if c["oid"] == commit["oid"])

    def snapshot(c):
        if is_dir:
            return sorted((p, e["sha256"]) for p, e in c["files"].items() if p.startswith(path + "/"))
        e = c["files"].get(path)
        return e and e["sha256"]

    last, prev = repo.commits[0], None
    for c in repo.commits[: idx + 1]:
        snap = snapshot(c)
        if snap != prev:
            last = c
        prev = snap
    return {"id": last["oid"], "title": last["title"], "date": last["date"]}


def _file_entry(repo: _Repo, commit: dict, path: str, expand: bool) -> dict:
    e = commit["files"][path]
    entry = {"type": "file", "oid": e["blob_id"], "size": e["size"], "path": path}
    if e["lfs"]:
        entry["lfs"] = {"oid": e["sha256"], "size": e["size"], "pointerSize": len(HubServer.lfs_pointer(e["sha256"],
                                                                                                          e["size"]))}
    if expand:
        entry["lastCommit"] = _last_commit(repo, commit, path, False)
        entry["securityFileStatus"] = {"status": "safe"}
    return entry


def _dir_entry(repo: _Repo, commit: dict, path: str, expand: bool) -> dict:
    digest = hashlib.sha1(json.dumps(sorted((p, e["sha256"]) for p, e in commit["files"].items()
                                            if p.startswith(path + "/"))).encode()).hexdigest()
    entry = {"type": "directory", "oid": digest, "size": 0, "path": path}
    if expand:
        entry["lastCommit"] = _last_commit(repo, commit, path, True)
    return entry


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep pytest output clean
        pass

    # -- plumbing ---------------------------------------------------------------------------------------------------
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, content_type: str = "application/json",
              head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)) if not (headers and "Content-Length" in headers) else
                         headers["Content-Length"])
        for k, v in (headers or {}).items():
            if k != "Content-Length":
                self.send_header(k, v)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)
        self.server_hub.requests.append((self.command, self.path, status))

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, err: HubError, head: bool = False) -> None:
        headers = {"X-Error-Message": err.message, **err.headers}
        if err.code:
            headers["X-Error-Code"] = err.code
        self._send(err.status, json.dumps({"error": err.message}).encode(), headers, head=head)

    def _require_auth(self) -> str:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or not auth[len("Bearer "):].strip():
            raise HubError(401, "Authentication required: write operations need an 'Authorization: Bearer <token>' "
                                "header (401 Unauthorized)")
        return auth[len("Bearer "):].strip()

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        raw_parts = [p for p in split.path.split("/") if p != ""]
        parts = [unquote(p) for p in raw_parts]
        head = method == "HEAD"
        try:
            with self.server_hub.lock:
                handled = self._route(method, parts)
            if not handled:
                raise HubError(404, f"Not implemented by the test hub: {method} {split.path}")
        except HubError as err:
            self._error(err, head=head)
        except Exception as exc:  # noqa: BLE001 - surfaced to the client as a 500
            self._error(HubError(500, f"{type(exc).__name__}: {exc}"), head=head)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # -- routing ----------------------------------------------------------------------------------------------------
    def _route(self, method: str, parts: list[str]) -> bool:
        if not parts:
            return False
        if parts[0] == "api":
            return self._route_api(method, parts[1:])
        if parts[0] == "lfs-upload" and method == "PUT" and len(parts) == 2:
            return self._lfs_put(parts[1])
        # LFS batch: /{prefix}{ns}/{name}.git/info/lfs/objects/batch
        if len(parts) >= 5 and parts[-4:] == ["info", "lfs", "objects", "batch"] and method == "POST":
            repo_parts = parts[:-4]
            repo_type = "model"
            if repo_parts[0] in ("datasets", "spaces"):
                repo_type, repo_parts = repo_parts[0][:-1], repo_parts[1:]
            repo_id = "/".join(repo_parts)
            if not repo_id.endswith(".git"):
                return False
            return self._lfs_batch(repo_type, repo_id[: -len(".git")])
        # resolve: /[datasets/]{repo}/resolve/{rev}/{path}
        if "resolve" in parts and method in ("GET", "HEAD"):
            i = parts.index("resolve")
            repo_parts, rest = parts[:i], parts[i + 1:]
            repo_type = "model"
            if repo_parts and repo_parts[0] in ("datasets", "spaces") and len(repo_parts) > 1:
                repo_type, repo_parts = repo_parts[0][:-1], repo_parts[1:]
            if not repo_parts or len(rest) < 2:
                return False
            return self._resolve(method, repo_type, "/".join(repo_parts), rest[0], "/".join(rest[1:]))
        return False

    def _route_api(self, method: str, parts: list[str]) -> bool:
        hub = self.server_hub
        if parts == ["repos", "create"] and method == "POST":
            return self._create_repo()
        if parts == ["validate-yaml"] and method == "POST":
            self._body()
            self._json({"errors": [], "warnings": []})
            return True
        if parts == ["whoami-v2"] and method == "GET":
            token = self._require_auth()
            self._json({"type": "user", "name": hub.user, "fullname": hub.user, "orgs": [],
                        "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
                        "token_hint": token[:2]})
            return True
        if len(parts) < 2 or parts[0] not in ("models", "datasets", "spaces"):
            return False
        repo_type = parts[0][:-1]
        # repo ids are "ns/name" (or a bare "name"); find the action keyword after them
        actions = {"revision", "preupload", "commit", "tree", "paths-info", "refs", "commits"}
        rest = parts[1:]
        k = next((i for i in (2, 1) if len(rest) > i and rest[i] in actions), None)
        if k is None:
            if len(rest) in (1, 2) and method == "GET":
                return self._repo_info(repo_type, "/".join(rest), DEFAULT_BRANCH)
            return False
        repo_id, action, args = "/".join(rest[:k]), rest[k], rest[k + 1:]
        rev = args[0] if args else DEFAULT_BRANCH
        if action == "revision" and method == "GET" and args:
            return self._repo_info(repo_type, repo_id, "/".join(args))
        if action == "preupload" and method == "POST":
            return self._preupload(repo_type, repo_id, rev)
        if action == "commit" and method == "POST":
            return self._commit(repo_type, repo_id, rev)
        if action == "tree" and method == "GET" and args:
            return self._tree(repo_type, repo_id, rev, "/".join(args[1:]))
        if action == "paths-info" and method == "POST":
            return self._paths_info(repo_type, repo_id, rev)
        if action == "refs" and method == "GET":
            repo = hub.get_repo(repo_type, repo_id)
            self._json({"branches": [{"name": DEFAULT_BRANCH, "ref": f"refs/heads/{DEFAULT_BRANCH}",
                                      "targetCommit": repo.head["oid"]}], "converts": [], "tags": []})
            return True
        if action == "commits" and method == "GET":
            repo = hub.get_repo(repo_type, repo_id)
            c = repo.resolve(rev)
            idx = repo.commits.index(c)
            self._json([{"id": x["oid"], "title": x["title"], "message": x["message"], "date": x["date"],
                         "authors": [{"user": hub.user}]} for x in reversed(repo.commits[: idx + 1])])
            return True
        return False

    # -- endpoints --------------------------------------------------------------------------------------------------
    def _create_repo(self) -> bool:
        hub = self.server_hub
        body = self._body()
        self._require_auth()
        payload = json.loads(body or b"{}")
        repo_type = payload.get("type") or "model"
        if repo_type not in ("model", "dataset", "space"):
            raise HubError(400, f"Invalid repo type: {repo_type}")
        name, org = payload.get("name"), payload.get("organization")
        if not name:
            raise HubError(400, "Missing repo name")
        repo_id = f"{org}/{name}" if org else f"{hub.user}/{name}"
        private = payload.get("private") or payload.get("visibility") == "private"
        _repo, created = hub.create_repo(repo_type, repo_id, bool(private))
        url = hub.repo_url(repo_type, repo_id)
        if not created:
            self._json({"error": f"You already created this {repo_type} repo", "url": url}, status=409)
        else:
            self._json({"url": url, "name": repo_id, "id": repo_id})
        return True

    def _repo_info(self, repo_type: str, repo_id: str, rev: str) -> bool:
        hub = self.server_hub
        repo = hub.get_repo(repo_type, repo_id)
        commit = repo.resolve(rev)
        siblings = []
        for path in sorted(commit["files"]):
            e = commit["files"][path]
            s = {"rfilename": path}
            if self.query.get("blobs", ["false"])[0].lower() in ("1", "true"):
                s.update(size=e["size"], blobId=e["blob_id"])
                if e["lfs"]:
                    s["lfs"] = {"sha256": e["sha256"], "size": e["size"], "pointerSize": 134}
            siblings.append(s)
        author = repo_id.split("/")[0] if "/" in repo_id else hub.user
        info = {"_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "author": author,
                "sha": commit["oid"], "lastModified": commit["date"], "createdAt": repo.created_at,
                "private": repo.private, "disabled": False, "gated": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": siblings}
        if repo_type == "model":
            info["modelId"] = repo_id
        self._json(info)
        return True

    def _preupload(self, repo_type: str, repo_id: str, rev: str) -> bool:
        hub = self.server_hub
        body = self._body()
        self._require_auth()
        repo = hub.get_repo(repo_type, repo_id)
        commit = repo.resolve(rev)
        payload = json.loads(body or b"{}")
        out = []
        for f in payload.get("files", []):
            path, size = f["path"], int(f.get("size") or 0)
            sample = base64.b64decode(f.get("sample") or "")
            lfs = path.lower().endswith(LFS_EXTENSIONS) or size >= LFS_SIZE_THRESHOLD or b"\0" in sample
            existing = commit["files"].get(path)
            oid = None
            if existing is not None:
                oid = existing["sha256"] if existing["lfs"] else existing["blob_id"]
            out.append({"path": path, "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False, "oid": oid})
        self._json({"files": out, "commitOid": commit["oid"]})
        return True

    def _lfs_batch(self, repo_type: str, repo_id: str) -> bool:
        hub = self.server_hub
        body = self._body()
        self._require_auth()
        hub.get_repo(repo_type, repo_id)
        payload = json.loads(body or b"{}")
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the 'upload' LFS operation is supported")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], int(obj["size"])
            if hub.has_blob(oid):
                objects.append({"oid": oid, "size": size})  # no actions: already uploaded
                continue
            hub.pending_lfs.add(oid)
            objects.append({"oid": oid, "size": size, "authenticated": True,
                            "actions": {"upload": {"href": f"{hub.url}/lfs-upload/{oid}", "header": {}}}})
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(),
                   content_type="application/vnd.git-lfs+json")
        return True

    def _lfs_put(self, oid: str) -> bool:
        hub = self.server_hub
        data = self._body()
        if oid not in hub.pending_lfs and not hub.has_blob(oid):
            raise HubError(403, f"No pending LFS upload for oid {oid} (call the batch endpoint first)")
        actual = hashlib.sha256(data).hexdigest()
        if actual != oid:
            raise HubError(400, f"LFS object sha256 mismatch: expected {oid}, got {actual}")
        hub.store_blob(data)
        hub.pending_lfs.discard(oid)
        self._send(200, b"", content_type="text/plain")
        return True

    def _commit(self, repo_type: str, repo_id: str, rev: str) -> bool:
        hub = self.server_hub
        body = self._body()
        self._require_auth()
        repo = hub.get_repo(repo_type, repo_id)
        if unquote(rev) not in (DEFAULT_BRANCH, f"refs/heads/{DEFAULT_BRANCH}"):
            raise HubError(400, f"Commits are only supported on '{DEFAULT_BRANCH}' by the test hub (got {rev})")
        if self.query.get("create_pr", ["0"])[0] in ("1", "true"):
            raise HubError(400, "create_pr is not supported by the test hub")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "Commit payload must start with a 'header' line")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        if parent and parent != repo.head["oid"]:
            raise HubError(412, f"A commit has happened since. Please refresh and try again. (parent {parent} != "
                                f"head {repo.head['oid']})")
        files = dict(repo.head["files"])
        for line in lines[1:]:
            key, value = line.get("key"), line.get("value", {})
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')}")
                files[value["path"]] = hub.file_entry(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                oid = value["oid"]
                if not hub.has_blob(oid):
                    raise HubError(422, f"LFS object {oid} for {value['path']} was not uploaded")
                size = os.path.getsize(hub._blob_path(oid))
                if value.get("size") is not None and int(value["size"]) != size:
                    raise HubError(422, f"LFS object {oid}: size mismatch")
                files[value["path"]] = {"sha256": oid, "size": size, "lfs": True,
                                        "blob_id": git_blob_sha1(hub.lfs_pointer(oid, size))}
            elif key == "deletedFile":
                if value["path"] not in files:
                    raise HubError(404, f"File to delete not found: {value['path']}", "EntryNotFound")
                del files[value["path"]]
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                for p in [p for p in files if p.startswith(prefix)]:
                    del files[p]
            else:
                raise HubError(400, f"Unknown commit operation key: {key}")
        commit = hub.make_commit(repo, files, header.get("summary") or "commit", header.get("description") or "")
        self._json({"success": True, "commitOid": commit["oid"],
                    "commitUrl": f"{hub.repo_url(repo_type, repo_id)}/commit/{commit['oid']}",
                    "hookOutput": ""})
        return True

    def _tree(self, repo_type: str, repo_id: str, rev: str, path: str) -> bool:
        hub = self.server_hub
        repo = hub.get_repo(repo_type, repo_id)
        commit = repo.resolve(rev)
        truthy = ("1", "true", "True")
        recursive = self.query.get("recursive", ["false"])[0] in truthy
        expand = self.query.get("expand", ["false"])[0] in truthy
        self._json(_tree_entries(hub, repo, commit, path, recursive, expand))
        return True

    def _paths_info(self, repo_type: str, repo_id: str, rev: str) -> bool:
        hub = self.server_hub
        body = self._body()
        repo = hub.get_repo(repo_type, repo_id)
        commit = repo.resolve(rev)
        if (self.headers.get("Content-Type") or "").startswith("application/json"):
            payload = json.loads(body or b"{}")
            paths, expand = payload.get("paths", []), bool(payload.get("expand"))
        else:
            form = parse_qs(body.decode(), keep_blank_values=True)
            paths, expand = form.get("paths", []), form.get("expand", ["False"])[0] in ("1", "true", "True")
        out = []
        for p in paths:
            p = p.strip("/")
            if p in commit["files"]:
                out.append(_file_entry(repo, commit, p, expand))
            elif p == "" or any(f.startswith(p + "/") for f in commit["files"]):
                out.append(_dir_entry(repo, commit, p, expand))
        self._json(out)
        return True

    def _resolve(self, method: str, repo_type: str, repo_id: str, rev: str, path: str) -> bool:
        hub = self.server_hub
        head = method == "HEAD"
        repo = hub.get_repo(repo_type, repo_id)
        commit = repo.resolve(rev)
        entry = commit["files"].get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit["oid"]})
        data = hub.read_blob(entry["sha256"])
        headers = {"X-Repo-Commit": commit["oid"], "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers["ETag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Etag"] = f'"{entry["sha256"]}"'
            headers["X-Linked-Size"] = str(entry["size"])
        else:
            headers["ETag"] = f'"{entry["blob_id"]}"'
        status = 200
        rng = self.headers.get("Range")
        if rng and not head:
            m = re.match(r"bytes=(\d*)-(\d*)$", rng.strip())
            if m:
                size = len(data)
                if m.group(1) == "":
                    start, end = max(0, size - int(m.group(2))), size - 1
                else:
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if start >= size > 0:
                    raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
                data = data[start:end + 1]
                headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{size}"
                status = 206
        self._send(status, data, headers, content_type="application/octet-stream", head=head)
        return True


def start_hub_server(**kwargs) -> tuple[str, Callable[[], None]]:
    """Start a :class:`HubServer`; returns ``(url, stop)``."""
    hub = HubServer(**kwargs)
    return hub.url, hub.close


__all__ = ["HubServer", "git_blob_sha1", "start_hub_server"]


# ----------------------------------------------------------------------------------------------- client helpers
REPO_ROOT = Path(__file__).resolve().parents[1]


def client_env(endpoint: str, home: Path) -> dict:
    """Environment for a client subprocess: loopback endpoint, Xet off, fresh caches under ``home``, no ambient
    token, and this checkout first on the import path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE_", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=endpoint, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0",
        TRANSFORMERS_OFFLINE="0", HF_HOME=str(home / "hf_home"), HF_HUB_CACHE=str(home / "hub_cache"),
        HF_DATASETS_CACHE=str(home / "datasets_cache"), HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1", TOKENIZERS_PARALLELISM="false",
        NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost",
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p),
    )
    return env


def run_client(env: dict, code: str, cwd: Path, timeout: int = 180) -> str:
    """Run ``code`` in a fresh Python with ``env``; fail the test with its output if it exits non-zero."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"client subprocess failed:\nSTDOUT:\n{proc.stdout}\nSTDERR:\n{proc.stderr[-6000:]}"
    return proc.stdout
