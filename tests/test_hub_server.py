"""End-to-end tests of the real Hub clients against the loopback server in ``tests/hub_server.py``.

The client code runs in subprocesses with ``HF_ENDPOINT`` etc. set before ``huggingface_hub`` is imported (the endpoint
and cache paths are module-level constants read at import time), so nothing leaks into the pytest process.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import sys
from urllib.parse import urlencode, urlsplit


sys.path.insert(0, os.path.dirname(__file__))
from hub_server import git_blob_sha1, run_client



class _Resp:
    def __init__(self, status, headers, content):
        self.status_code, self.headers, self.content = status, headers, content

    def json(self):
        return json.loads(self.content)


class _Client:
    """Minimal stdlib HTTP client for the raw protocol test (the Hub client itself uses ``httpx2``)."""

    def __init__(self, base_url):
        self.netloc = urlsplit(base_url).netloc

    def request(self, method, path, *, json=None, data=None, content=None, params=None, headers=None):
        headers = dict(headers or {})
        if path.startswith("http"):
            path = path.split(self.netloc, 1)[1]
        if params:
            path += "?" + urlencode(params)
        body = content
        if json is not None:
            body, headers["Content-Type"] = _json_dumps(json).encode(), "application/json"
        elif data is not None:
            body = urlencode(data, doseq=True).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection(self.netloc, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return _Resp(r.status, r.headers, r.read())
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)


_json_dumps = json.dumps


# --- raw protocol checks (fast, in-process) -----------------------------------------------------------------------

def test_protocol_basics(hub):
    auth = {"Authorization": "Bearer test"}
    c = _Client(hub.url)
    r = c.post("/api/repos/create", json={"name": "proto", "organization": "user", "type": "model"})
    assert r.status_code == 401 and "Authentication required" in r.headers["X-Error-Message"]
    r = c.post("/api/repos/create", json={"name": "proto", "organization": "user", "type": "model"},
               headers=auth)
    assert r.status_code == 200 and r.json()["url"] == f"{hub.url}/user/proto"
    assert c.post("/api/repos/create", json={"name": "proto", "organization": "user"}, headers=auth
                  ).status_code == 409

    r = c.post("/api/models/user/proto/preupload/main", headers=auth, json={"files": [
        {"path": "w.safetensors", "sample": base64.b64encode(b"abc").decode(), "size": 3},
        {"path": "config.json", "sample": base64.b64encode(b"{}").decode(), "size": 2}]})
    modes = {f["path"]: f["uploadMode"] for f in r.json()["files"]}
    assert modes == {"w.safetensors": "lfs", "config.json": "regular"}

    blob = b"\0binary weights"
    oid = hashlib.sha256(blob).hexdigest()
    r = c.post("/user/proto.git/info/lfs/objects/batch", headers=auth,
               json={"operation": "upload", "objects": [{"oid": oid, "size": len(blob)}]})
    href = r.json()["objects"][0]["actions"]["upload"]["href"]
    assert c.put(href, content=b"tampered").status_code == 400  # sha256 verified
    assert c.put(href, content=blob).status_code == 200

    ndjson = b"".join(json.dumps(x).encode() + b"\n" for x in [
        {"key": "header", "value": {"summary": "add"}},
        {"key": "file", "value": {"path": "a/b.txt", "content": base64.b64encode(b"hi").decode(),
                                  "encoding": "base64"}},
        {"key": "lfsFile", "value": {"path": "w.safetensors", "algo": "sha256", "oid": oid, "size": len(blob)}}])
    assert c.post("/api/models/user/proto/commit/main", content=ndjson).status_code == 401
    r = c.post("/api/models/user/proto/commit/main", content=ndjson,
               headers={**auth, "Content-Type": "application/x-ndjson"})
    sha = r.json()["commitOid"]
    assert len(sha) == 40 and r.json()["commitUrl"].endswith(sha)

    r = c.head("/user/proto/resolve/main/w.safetensors")
    assert r.headers["X-Repo-Commit"] == sha and r.headers["X-Linked-Etag"] == f'"{oid}"'
    assert r.headers["X-Linked-Size"] == str(len(blob)) and r.headers["Content-Length"] == str(len(blob))
    r = c.get("/user/proto/resolve/main/a/b.txt")
    assert r.content == b"hi" and r.headers["ETag"] == f'"{git_blob_sha1(b"hi")}"'
    assert c.get("/user/proto/resolve/main/w.safetensors", headers={"Range": "bytes=1-"}).content == blob[1:]
    r = c.head("/user/proto/resolve/main/missing.txt")
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "EntryNotFound"
    assert r.headers["X-Repo-Commit"] == sha
    r = c.get("/api/models/user/nope")
    assert r.status_code == 404 and r.headers["X-Error-Code"] == "RepoNotFound"
    assert c.get("/api/models/user/proto/revision/" + "0" * 40).headers["X-Error-Code"] == "RevisionNotFound"

    info = c.get(f"/api/models/user/proto/revision/{sha}").json()
    assert info["sha"] == sha
    assert {s["rfilename"] for s in info["siblings"]} == {".gitattributes", "a/b.txt", "w.safetensors"}
    top = {e["path"]: e["type"] for e in c.get("/api/models/user/proto/tree/main").json()}
    assert top == {"a": "directory", ".gitattributes": "file", "w.safetensors": "file"}
    deep = {e["path"] for e in c.get("/api/models/user/proto/tree/main", params={"recursive": "true"}).json()}
    assert "a/b.txt" in deep and "a" in deep
    r = c.post("/api/models/user/proto/paths-info/main", data={"paths": ["a", "w.safetensors", "zz"]})
    assert {e["path"]: e["type"] for e in r.json()} == {"a": "directory", "w.safetensors": "file"}
    assert c.post("/api/validate-yaml", json={"content": "---\n---\n", "repoType": "model"}).json()["errors"] == []


# --- end to end with the real clients -----------------------------------------------------------------------------

PUSH_AND_LOAD_MODEL = """
import os, torch
from pc_transformers import PCTokenizer, PCConfig, PCForProcedureCloning
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.manual_seed(0)
tok = PCTokenizer.for_maze()
cfg = PCConfig.from_tokenizer(tok, grid_size=5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64)
model = PCForProcedureCloning(cfg).eval()
model.push_to_hub("user/tiny", token="test")
tok.push_to_hub("user/tiny", token="test")
torch.save(model.state_dict(), "reference_state.pt")
with open("reference_vocab.txt", "w") as f:
    f.write(repr(sorted(tok.get_vocab().items())))

fresh = os.path.abspath("fresh_cache")
loaded = AutoModelForCausalLM.from_pretrained("user/tiny", cache_dir=fresh)
loaded_tok = AutoTokenizer.from_pretrained("user/tiny", cache_dir=fresh)
assert type(loaded).__name__ == "PCForProcedureCloning", type(loaded)
ref, got = model.state_dict(), loaded.state_dict()
assert ref.keys() == got.keys(), set(ref) ^ set(got)
assert all(torch.equal(ref[k], got[k]) for k in ref)
assert loaded_tok.get_vocab() == tok.get_vocab()
assert os.listdir(fresh), "nothing downloaded into the fresh cache"
print("MODEL_OK")
"""

REMOTE_CODE_LOAD = """
import sys
sys.modules["pc_transformers"] = None  # the package is not importable: only the Hub's remote code can be used
import os, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
fresh = os.path.abspath("remote_cache")
model = AutoModelForCausalLM.from_pretrained("user/tiny", trust_remote_code=True, cache_dir=fresh)
tok = AutoTokenizer.from_pretrained("user/tiny", trust_remote_code=True, cache_dir=fresh)
assert not type(model).__module__.startswith("pc_transformers"), type(model).__module__
ref = torch.load("reference_state.pt")
got = model.state_dict()
assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
assert repr(sorted(tok.get_vocab().items())) == open("reference_vocab.txt").read()
print("REMOTE_OK", type(model).__module__)
"""


def test_model_and_tokenizer_push_then_from_pretrained(hub_env, tmp_path):
    out = run_client(hub_env, PUSH_AND_LOAD_MODEL, tmp_path)
    assert "MODEL_OK" in out
    out = run_client(hub_env, REMOTE_CODE_LOAD, tmp_path)
    assert "REMOTE_OK" in out


DATASET_ROUNDTRIP = """
import os, datasets
ds = datasets.Dataset.from_dict({"x": [1, 2, 3], "text": ["a", "bb", "ccc"], "v": [[0.5, 1.0], [], [2.5]]})
ds.push_to_hub("user/data", token="test")
loaded = datasets.load_dataset("user/data", split="train", cache_dir=os.path.abspath("fresh_ds_cache"))
assert loaded.features == ds.features, (loaded.features, ds.features)
assert loaded.to_list() == ds.to_list(), loaded.to_list()
print("DATASET_OK")
"""


def test_dataset_push_then_load_dataset(hub_env, tmp_path):
    assert "DATASET_OK" in run_client(hub_env, DATASET_ROUNDTRIP, tmp_path)


CLIENT_ERRORS = """
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError
from transformers import AutoModelForCausalLM
from pc_transformers import PCTokenizer, PCConfig, PCForProcedureCloning

tok = PCTokenizer.for_maze()
cfg = PCConfig.from_tokenizer(tok, grid_size=5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64)
try:
    PCForProcedureCloning(cfg).push_to_hub("user/no-token")
except HfHubHTTPError as err:
    assert err.response.status_code == 401, err.response.status_code
    assert "401" in str(err) and "Authentication required" in str(err), str(err)
else:
    raise AssertionError("push without a token succeeded")

try:
    HfApi().model_info("user/does-not-exist")
except RepositoryNotFoundError:
    pass
else:
    raise AssertionError("model_info on a missing repo succeeded")

try:
    AutoModelForCausalLM.from_pretrained("user/does-not-exist")
except OSError as err:
    assert isinstance(err.__cause__, RepositoryNotFoundError) or "not a valid model identifier" in str(err), err
else:
    raise AssertionError("from_pretrained on a missing repo succeeded")
print("ERRORS_OK")
"""


def test_client_errors(hub_env, tmp_path):
    assert "ERRORS_OK" in run_client(hub_env, CLIENT_ERRORS, tmp_path)
