"""A test double of the Hugging Face Hub: the subset of its HTTP API that ``huggingface_hub`` uses to create,
inspect, commit to, list and download a dataset repo, with the Hub's request and response shapes.

It is not the Hub: it keeps repos in memory, speaks only what ``oneshot hf push|pull`` and
``--oneshot-hf`` need, and has no Xet storage (clients must run with ``HF_HUB_DISABLE_XET=1``, which
makes ``huggingface_hub`` upload large and binary files through Git LFS, as the Hub still accepts).
The shapes were read from huggingface_hub 2.4's ``hf_api.py``, ``_commit_api.py``, ``lfs.py``,
``file_download.py`` and ``_snapshot_download.py``:

- ``POST /api/repos/create`` ``{name, organization, type, visibility|private}`` -> ``{url, name, id}``;
  409 when it exists. A new repo has one commit with a ``.gitattributes``, as on the Hub.
- ``GET /api/datasets/{id}[/revision/{rev}]`` -> ``{id, sha, private, siblings: [{rfilename}], ...}``.
- ``POST /api/datasets/{id}/preupload/{rev}`` ``{files: [{path, sample, size}]}`` -> ``{files: [{path,
  uploadMode: lfs|regular, shouldIgnore, oid}], commitOid}``: binary samples (a NUL byte or not UTF-8)
  and files over 10 MB are ``lfs``, as the Hub decides them without a matching ``.gitattributes``.
- ``POST /datasets/{id}.git/info/lfs/objects/batch`` (Git LFS batch API, ``basic`` transfer) -> upload and
  verify actions whose ``href`` points at a second server, the storage host (S3/CDN on the Hub);
  objects already stored get no actions. ``PUT`` there stores the object (its sha256 is checked);
  ``POST .../verify`` ``{oid, size}`` confirms it.
- ``POST /api/validate-yaml`` ``{content, repoType}`` -> ``{errors, warnings}`` (400 for invalid YAML), which
  ``create_commit`` calls for a README.md.
- ``POST /api/datasets/{id}/commit/{rev}`` (NDJSON: ``header``, ``file`` base64, ``lfsFile``, ``deletedFile``,
  ``deletedFolder``) -> ``{commitUrl, commitOid, success}``; ``parentCommit`` is checked.
- ``GET /api/datasets/{id}/tree/{rev}[/{path}]?recursive=`` -> ``[{type: file|directory, oid, size, path,
  lfs?: {oid, size, pointerSize}}]``, paginated by a ``Link: <...>; rel="next"`` header.
- ``HEAD|GET /datasets/{id}/resolve/{rev}/{path}``: a regular file answers 200 with ``ETag`` (its git blob
  id), ``X-Repo-Commit`` and ``Content-Length``; an LFS file answers 302 to the storage host with
  ``X-Linked-Etag`` (its sha256), ``X-Linked-Size`` and ``X-Repo-Commit`` (the client reads these from
  the redirect itself and does not follow it for HEAD). Missing entries are 404 with the Hub's
  ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).

Writes and private reads need ``Authorization: Bearer <token>``. Every request is logged in
:attr:`FakeHub.requests` (method, path), so tests can check what did, or did not, leave the machine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import yaml
from aiohttp import web

from pytest_oneshot.model.serving import BackgroundServer

LFS_THRESHOLD_BYTES = 10 * 1024 * 1024
_API_REPO = re.compile(r"^/api/datasets/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Blob:
    data: bytes
    lfs: bool

    @property
    def oid(self) -> str:
        return git_blob_id(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class Repo:
    private: bool
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def commit(self, files: dict[str, Blob], message: str, parent: str | None) -> str:
        digest = hashlib.sha1((parent or "").encode() + message.encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path].oid.encode())
        oid = digest.hexdigest()
        self.commits[oid] = files
        self.branches["main"] = oid
        return oid


def _error(status: int, code: str | None, message: str, **headers: str) -> web.Response:
    extra = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {}), **headers}
    return web.json_response({"error": message}, status=status, headers=extra)


class FakeHub:
    """Two loopback servers: the Hub's API (:attr:`endpoint`) and its storage host (LFS objects)."""

    def __init__(self, token: str, *, page_size: int = 1000) -> None:
        self.token = token
        self.page_size = page_size
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._api = BackgroundServer(self._handle_api, host="127.0.0.1", port=0, name="fake-hub")
        self._storage = BackgroundServer(self._handle_storage, host="127.0.0.1", port=0, name="fake-hub-storage")
        self.endpoint = f"http://127.0.0.1:{self._api.port}"
        self.storage = f"http://127.0.0.1:{self._storage.port}"

    def start(self) -> None:
        self._api.start()
        self._storage.start()

    def stop(self) -> None:
        self._api.stop()
        self._storage.stop()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, Blob]:
        repo = self.repos[repo_id]
        return repo.commits[repo.branches.get(revision, revision)]

    # -- helpers ---------------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _repo(self, request: web.Request, repo_id: str, *, write: bool) -> Repo | web.Response:
        repo = self.repos.get(repo_id)
        if repo is None or (repo.private and not self._authorized(request)):  # the Hub hides private repos
            return _error(404, "RepoNotFound", f"Repository Not Found for url: {request.url}.")
        if write and not self._authorized(request):
            return _error(401, None, "Invalid credentials in Authorization header")
        return repo

    @staticmethod
    def _commit(repo: Repo, revision: str) -> str | None:
        revision = unquote(revision)
        if revision in repo.branches:
            return repo.branches[revision]
        return revision if revision in repo.commits else None

    # -- the API host ----------------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        path = "/" + path
        with self._lock:
            self.requests.append((request.method, path))
        body = await request.read()
        with self._lock:
            if path == "/api/repos/create" and request.method == "POST":
                return self._create(request, json.loads(body))
            if path == "/api/validate-yaml" and request.method == "POST":
                return self._validate_yaml(json.loads(body))
            match = _API_REPO.match(path)
            if match:
                return self._api_repo(request, match["repo"], match["rest"] or "", body)
            resolve = re.match(r"^/datasets/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$", path)
            if resolve and request.method in ("HEAD", "GET"):
                return self._resolve(request, resolve["repo"], resolve["rev"], unquote(resolve["file"]))
            batch = re.match(r"^/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/batch$", path)
            if batch and request.method == "POST":
                return self._lfs_batch(request, batch["repo"], json.loads(body))
            verify = re.match(r"^/datasets/(?P<repo>[^/]+/[^/]+)\.git/info/lfs/objects/verify$", path)
            if verify and request.method == "POST":
                obj = json.loads(body)
                if len(self.lfs.get(obj["oid"], b"")) != obj["size"] or obj["oid"] not in self.lfs:
                    return _error(404, None, f"LFS object {obj['oid']} not found")
                return web.json_response({"oid": obj["oid"], "size": obj["size"]})
        return _error(404, None, f"no route {request.method} {path}")

    def _create(self, request: web.Request, payload: dict[str, Any]) -> web.Response:
        if not self._authorized(request):
            return _error(401, None, "Invalid credentials in Authorization header")
        if payload.get("type") != "dataset":
            return _error(400, None, "this fake Hub serves datasets only")
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        url = f"{self.endpoint}/datasets/{repo_id}"
        if repo_id in self.repos:
            message = "You already created this dataset repo"
            return web.json_response({"error": message, "url": url}, status=409, headers={"X-Error-Message": message})
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = self.repos[repo_id] = Repo(private=private)
        repo.commit(
            {
                ".gitattributes": Blob(
                    b"*.7z filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n", False
                )
            },
            "initial commit",
            None,
        )
        return web.json_response({"url": url, "name": repo_id, "id": repo_id})

    @staticmethod
    def _validate_yaml(payload: dict[str, Any]) -> web.Response:
        """A README's YAML front matter, checked as the Hub does before a commit that adds one."""
        content = payload["content"]
        if not content.startswith("---\n"):
            return web.json_response({"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
        front = content[4:].split("\n---", 1)[0]
        try:
            metadata = yaml.safe_load(front)
        except yaml.YAMLError as exc:
            return web.json_response({"errors": [{"message": f"invalid YAML: {exc}"}]}, status=400)
        if not isinstance(metadata, dict):
            return web.json_response({"errors": [{"message": "metadata must be a mapping"}]}, status=400)
        return web.json_response({"errors": [], "warnings": []})

    def _api_repo(self, request: web.Request, repo_id: str, rest: str, body: bytes) -> web.Response:
        write = request.method == "POST"
        repo = self._repo(request, repo_id, write=write)
        if isinstance(repo, web.Response):
            return repo
        info = re.match(r"^(?:/revision/(?P<rev>[^/]+))?$", rest)
        if info and request.method == "GET":
            return self._info(repo_id, repo, info["rev"] or "main")
        preupload = re.match(r"^/preupload/(?P<rev>[^/]+)$", rest)
        if preupload and write:
            return self._preupload(repo, preupload["rev"], json.loads(body))
        commit = re.match(r"^/commit/(?P<rev>[^/]+)$", rest)
        if commit and write:
            return self._commit_ndjson(repo_id, repo, commit["rev"], body)
        tree = re.match(r"^/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?$", rest)
        if tree and request.method == "GET":
            return self._tree(request, repo, tree["rev"], unquote(tree["path"] or ""))
        return _error(404, None, f"no route {request.method} /api/datasets/{repo_id}{rest}")

    def _info(self, repo_id: str, repo: Repo, revision: str) -> web.Response:
        oid = self._commit(repo, revision)
        if oid is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return web.json_response(
            {
                "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "author": repo_id.split("/")[0],
                "sha": oid,
                "lastModified": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "cardData": {},
                "siblings": [{"rfilename": path} for path in sorted(repo.commits[oid])],
            }
        )

    def _preupload(self, repo: Repo, revision: str, payload: dict[str, Any]) -> web.Response:
        oid = self._commit(repo, revision)
        files = repo.commits[oid] if oid else {}
        answer = []
        for entry in payload["files"]:
            sample = base64.b64decode(entry["sample"])
            try:
                sample.decode("utf-8")
                binary = b"\0" in sample
            except UnicodeDecodeError:
                binary = True
            lfs = binary or entry["size"] > LFS_THRESHOLD_BYTES
            existing = files.get(entry["path"])
            answer.append(
                {
                    "path": entry["path"],
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": False,
                    "oid": existing.oid if existing else None,
                }
            )
        return web.json_response({"files": answer, "commitOid": oid})

    def _lfs_batch(self, request: web.Request, repo_id: str, payload: dict[str, Any]) -> web.Response:
        repo = self._repo(request, repo_id, write=True)
        if isinstance(repo, web.Response):
            return repo
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", []):
            return _error(422, None, "only basic uploads are served")
        objects = []
        for obj in payload["objects"]:
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if obj["oid"] not in self.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.storage}/upload/{obj['oid']}?size={obj['size']}", "header": {}},
                    "verify": {"href": f"{self.endpoint}/datasets/{repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(entry)
        return web.json_response(
            {"transfer": "basic", "objects": objects, "hash_algo": "sha256"},
            content_type="application/vnd.git-lfs+json",
        )

    def _commit_ndjson(self, repo_id: str, repo: Repo, revision: str, body: bytes) -> web.Response:
        parent = self._commit(repo, revision)
        if parent is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return _error(400, None, "the first line must be the header")
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, parent):
            return _error(412, None, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[parent])
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                files[value["path"]] = Blob(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                data = self.lfs.get(value["oid"])
                if data is None or len(data) != value["size"]:
                    return _error(422, None, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                files[value["path"]] = Blob(data, True)
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    return _error(404, "EntryNotFound", f"{value['path']} does not exist")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {path: blob for path, blob in files.items() if not path.startswith(prefix)}
            else:
                return _error(400, None, f"unknown commit operation {key!r}")
        oid = repo.commit(files, header.get("summary", ""), parent)
        url = f"{self.endpoint}/datasets/{repo_id}/commit/{oid}"
        return web.json_response({"success": True, "commitOid": oid, "commitUrl": url, "pullRequestUrl": None})

    def _tree(self, request: web.Request, repo: Repo, revision: str, base: str) -> web.Response:
        oid = self._commit(repo, revision)
        if oid is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        recursive = request.query.get("recursive", "false").lower() == "true"
        prefix = base.rstrip("/") + "/" if base else ""
        entries: dict[str, dict[str, Any]] = {}
        for path, blob in sorted(repo.commits[oid].items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        folder,
                        {
                            "type": "directory",
                            "oid": hashlib.sha1(folder.encode()).hexdigest(),
                            "size": 0,
                            "path": folder,
                        },
                    )
            if recursive or len(parts) == 1:
                entry: dict[str, Any] = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
                if blob.lfs:
                    entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": 134}
                entries[path] = entry
        if prefix and not entries:
            return _error(404, "EntryNotFound", f"{base} does not exist on {revision}")
        listed = sorted(entries.values(), key=lambda entry: entry["path"])
        start = int(request.query.get("cursor", "0"))
        page = listed[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(listed):
            query = "&".join(f"{key}={value}" for key, value in request.query.items() if key != "cursor")
            headers["Link"] = f'<{self.endpoint}{request.path}?{query}&cursor={start + self.page_size}>; rel="next"'
        return web.json_response(page, headers=headers)

    def _resolve(self, request: web.Request, repo_id: str, revision: str, path: str) -> web.StreamResponse:
        repo = self._repo(request, repo_id, write=False)
        if isinstance(repo, web.Response):
            return repo
        oid = self._commit(repo, revision)
        if oid is None:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        blob = repo.commits[oid].get(path)
        if blob is None:
            return _error(404, "EntryNotFound", f"{path} does not exist on {revision}", **{"X-Repo-Commit": oid})
        headers = {"X-Repo-Commit": oid, "ETag": f'"{blob.oid}"', "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update(
                {
                    "X-Linked-Etag": f'"{blob.sha256}"',
                    "X-Linked-Size": str(len(blob.data)),
                    "Location": f"{self.storage}/objects/{blob.sha256}",
                }
            )
            return web.Response(status=302, headers=headers)
        return web.Response(status=200, body=blob.data, headers=headers)  # aiohttp sends no body for HEAD

    # -- the storage host (S3/CDN on the Hub) ----------------------------------------------------------

    async def _handle_storage(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["path"]
        with self._lock:
            self.requests.append((request.method, f"storage:{path}"))
        upload = re.match(r"^/upload/(?P<oid>[0-9a-f]{64})$", path)
        if upload and request.method == "PUT":
            data = await request.read()
            if hashlib.sha256(data).hexdigest() != upload["oid"] or str(len(data)) != request.query.get("size"):
                return web.Response(status=400, text="content does not match its oid or size")
            with self._lock:
                self.lfs[upload["oid"]] = data
            return web.Response(status=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})
        obj = re.match(r"^/objects/(?P<oid>[0-9a-f]{64})$", path)
        if obj and request.method in ("GET", "HEAD"):
            data_or_none = self.lfs.get(obj["oid"])
            if data_or_none is None:
                return web.Response(status=404, text="NoSuchKey")
            data = data_or_none
            start = 0
            ranged = re.match(r"^bytes=(\d+)-$", request.headers.get("Range", ""))
            if ranged:
                start = int(ranged[1])
            headers = {"ETag": f'"{obj["oid"]}"'}
            return web.Response(status=206 if ranged else 200, body=data[start:], headers=headers)
        return web.Response(status=404, text="NoSuchKey")
