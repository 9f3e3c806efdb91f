"""A stand-in Hugging Face Hub on 127.0.0.1, speaking the HTTP protocol huggingface_hub's upload path uses.

It serves what `HfApi.create_repo`, `HfApi.model_info` and `HfApi.create_commit` call: repo creation, model
info, README metadata validation, the preupload check (small files "regular", inline as base64 in the
commit; `.safetensors` and large files "lfs"), the git LFS batch API with a basic PUT upload and a verify
call, and the NDJSON commit. Every request is recorded (method, path, query, headers, body) and every
committed file kept, so tests can check what arrived and where the token went.

LFS files reach this server only when huggingface_hub's Xet upload is off (`HF_HUB_DISABLE_XET`), since Xet
talks to a separate content store that is not imitated here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".gguf")
LFS_MIN_BYTES = 10 * 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Repo:
    repo_id: str
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    commits: list[str] = field(default_factory=list)


@dataclass
class Failure:
    """Answer requests whose path contains `path_part` with `status` and `body` instead of serving them."""

    path_part: str
    status: int
    body: dict[str, Any]
    echo_authorization: bool = False


class FakeHub:
    """Start with `with FakeHub(token) as hub:`; `hub.url` is the endpoint to give HfApi."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[Request] = []
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.failures: list[Failure] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def fail(self, path_part: str, status: int, message: str, echo_authorization: bool = False) -> None:
        self.failures.append(Failure(path_part, status, {"error": message}, echo_authorization))

    def add_repo(self, repo_id: str, private: bool) -> Repo:
        repo = self.repos[repo_id] = Repo(repo_id, private)
        return repo

    # --- the endpoints ------------------------------------------------------------------------------------

    def handle(self, request: Request) -> tuple[int, dict[str, Any] | None]:
        with self._lock:
            self.requests.append(request)
        for failure in self.failures:
            if failure.path_part in request.path:
                body = dict(failure.body)
                if failure.echo_authorization:
                    # Some servers and proxies quote the credentials they refused; the client must not repeat them.
                    body["error"] = f"{body['error']} (got {request.headers.get('authorization')})"
                return failure.status, body
        path = request.path
        if path.startswith("/lfs-upload/"):
            return self._lfs_put(path.removeprefix("/lfs-upload/"), request.body)
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return 401, {"error": "Invalid credentials in Authorization header"}
        if ".git/info/lfs/objects/" in path:
            repo_id, _, action = path.strip("/").partition(".git/info/lfs/objects/")
            return self._lfs_batch(repo_id, request) if action == "batch" else self._lfs_verify(request)
        if path == "/api/repos/create" and request.method == "POST":
            return self._create_repo(json.loads(request.body))
        if path == "/api/validate-yaml":
            return 200, {"errors": [], "warnings": []}
        parts = path.removeprefix("/api/models/").split("/")
        repo_id = "/".join(parts[:2])
        if not path.startswith("/api/models/") or repo_id not in self.repos:
            return 404, {"error": f"Repository {repo_id} not found"}
        repo = self.repos[repo_id]
        action = parts[2] if len(parts) > 2 else ""
        if action == "" and request.method == "GET":
            siblings = [{"rfilename": name} for name in sorted(repo.files)]
            return 200, {"id": repo_id, "private": repo.private, "sha": _last(repo), "siblings": siblings}
        if action == "preupload":
            return 200, {"files": [self._upload_mode(entry) for entry in json.loads(request.body)["files"]]}
        if action == "commit":
            return self._commit(repo, request.body)
        return 404, {"error": f"{request.method} {path} is not served here"}

    def _create_repo(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        repo_id = f"{payload['organization']}/{payload['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo_id}"}
        self.add_repo(repo_id, private=payload.get("visibility") == "private")
        return 200, {"url": f"{self.url}/{repo_id}", "name": repo_id}

    @staticmethod
    def _upload_mode(entry: dict[str, Any]) -> dict[str, Any]:
        large = entry["path"].endswith(LFS_SUFFIXES) or entry["size"] >= LFS_MIN_BYTES
        return {"path": entry["path"], "uploadMode": "lfs" if large else "regular", "shouldIgnore": False}

    def _lfs_batch(self, repo_id: str, request: Request) -> tuple[int, dict[str, Any]]:
        if repo_id not in self.repos:
            return 404, {"error": f"Repository {repo_id} not found"}
        objects = []
        for item in json.loads(request.body)["objects"]:
            oid, size = item["oid"], item["size"]
            actions = {
                "upload": {"href": f"{self.url}/lfs-upload/{oid}"},
                "verify": {"href": f"{self.url}/{repo_id}.git/info/lfs/objects/verify"},
            }
            objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        return 200, {"transfer": "basic", "objects": objects}

    def _lfs_put(self, oid: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        if hashlib.sha256(body).hexdigest() != oid:
            return 400, {"error": "content does not match its sha256"}
        with self._lock:
            self.lfs_objects[oid] = body
        return 200, None

    def _lfs_verify(self, request: Request) -> tuple[int, dict[str, Any]]:
        item = json.loads(request.body)
        stored = self.lfs_objects.get(item["oid"])
        if stored is None or len(stored) != item["size"]:
            return 404, {"error": f"object {item['oid']} was not uploaded"}
        return 200, {}

    def _commit(self, repo: Repo, body: bytes) -> tuple[int, dict[str, Any]]:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0]["key"] != "header":
            return 400, {"error": "the commit must start with a header line"}
        files: dict[str, bytes] = {}
        for line in lines[1:]:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "lfsFile":
                if value["oid"] not in self.lfs_objects:
                    return 400, {"error": f"LFS object {value['oid']} for {value['path']} was never uploaded"}
                files[value["path"]] = self.lfs_objects[value["oid"]]
            else:
                return 400, {"error": f"operation {line['key']} is not served here"}
        with self._lock:
            oid = hashlib.sha1(b"%d\n" % len(repo.commits) + body, usedforsecurity=False).hexdigest()
            repo.files.update(files)
            repo.commits.append(oid)
        return 200, {"commitUrl": f"{self.url}/{repo.repo_id}/commit/{oid}", "commitOid": oid, "pullRequestUrl": None}


def _last(repo: Repo) -> str:
    return repo.commits[-1] if repo.commits else "0" * 40


def _handler_for(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            request = Request(
                method=self.command,
                path=unquote(parts.path),
                query=parts.query,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=self._read_body(),
            )
            status, payload = hub.handle(request)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 404:
                self.send_header("X-Error-Code", "RepoNotFound")
            self.end_headers()
            self.wfile.write(data)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        do_GET = do_POST = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the requests are recorded instead."""

    return Handler
