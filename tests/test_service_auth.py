"""API keys (401 without or with a wrong key, 403 for a read key on a write route), key files,
and the refusal to bind a non-loopback address without keys."""

import httpx
import pytest
from service_helpers import collection_body, threaded_server

from mrl.errors import ConfigError, MissingPathError
from mrl.service.app import create_app
from mrl.service.auth import ENV_VAR, hash_key, load_keys, new_key, parse_keys
from mrl.service.memory import MemoryBackend
from mrl.service.settings import is_loopback


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    read_key, read_line = new_key("read")
    write_key, write_line = new_key("write")
    keys_file = tmp_path_factory.mktemp("keys") / "keys"
    keys_file.write_text(f"# service keys\n{read_line}\n{write_line}  # the writer\n")
    app = create_app(MemoryBackend(tmp_path_factory.mktemp("data")), keys=load_keys(keys_file))
    with threaded_server(app) as url:
        yield url, {"Authorization": f"Bearer {read_key}"}, {"Authorization": f"Bearer {write_key}"}


def test_keys_are_stored_hashed():
    key, line = new_key("write")
    assert key not in line and line == f"write {hash_key(key)}"
    keys = parse_keys(line, "test")
    assert keys.role_of(key) == "write" and keys.role_of(key + "x") is None


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("GET", "/v1/collections", None),
        ("POST", "/v1/collections", collection_body("c")),
        ("POST", "/v1/collections/c/search", {"vector": [0.1] * 16}),
        ("GET", "/metrics", None),
    ],
)
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}]
)
def test_no_or_a_wrong_key_is_a_401(keyed, method, path, body, headers):
    url, _, _ = keyed
    r = httpx.request(method, url + path, json=body, headers=headers)
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    assert "API key" in r.json()["error"]["message"]


def test_a_read_key_reads_but_cannot_write(keyed):
    url, read, write = keyed
    assert httpx.post(url + "/v1/collections", json=collection_body("k"), headers=write).is_success
    assert httpx.get(url + "/v1/collections/k", headers=read).status_code == 200
    for method, path, body in [
        ("POST", "/v1/collections", collection_body("k2")),
        ("DELETE", "/v1/collections/k", None),
        ("POST", "/v1/collections/k/items", {"ids": [1], "vectors": [[0.1] * 16]}),
        ("DELETE", "/v1/collections/k/items", {"ids": [1]}),
    ]:
        r = httpx.request(method, url + path, json=body, headers=read)
        assert r.status_code == 403, (method, path, r.text)
        assert "read-only" in r.json()["error"]["message"]
    assert httpx.get(url + "/v1/collections/k", headers=read).json()["count"] == 0


def test_probes_and_docs_need_no_key(keyed):
    url, _, _ = keyed
    for path in ("/health", "/ready", "/openapi.json", "/docs"):
        assert httpx.get(url + path).status_code == 200, path


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("admin " + "0" * 64, "entry 1"),
        ("write 1234", "entry 1"),
        ("read " + "0" * 64 + "\nwrite " + "Z" * 64, "entry 2"),
    ],
)
def test_bad_key_entries_are_named(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        parse_keys(text, "keys")


def test_keys_from_the_environment_or_a_missing_file(monkeypatch, tmp_path):
    key, line = new_key("read")
    monkeypatch.setenv(ENV_VAR, f"{line},{new_key('write')[1]}")
    assert load_keys(None).role_of(key) == "read"
    with pytest.raises(MissingPathError, match="no keys file"):
        load_keys(tmp_path / "absent")


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("127.0.0.5", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("example.org", False),
    ],
)
def test_loopback_hosts(host, loopback):
    assert is_loopback(host) is loopback


def test_serve_refuses_a_public_bind_without_keys(cli, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    r = cli("serve", "--data-dir", tmp_path / "d", "--host", "0.0.0.0")
    r.assert_named_error("refusing to serve on 0.0.0.0 without API keys", "--keys-file")
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_serve_cli_errors_are_one_line(cli, tmp_path):
    cli("serve").assert_named_error("--data-dir is required")
    cli("serve", "--data-dir", tmp_path, "--keys-file", tmp_path / "nope").assert_named_error(
        "no keys file"
    )
    cli("serve", "--data-dir", tmp_path, "--port", "70000").assert_named_error("port")
    cli("serve", "--data-dir", tmp_path, "--max-k", "0").assert_named_error("max_k")


def test_new_key_prints_a_key_and_its_line(cli):
    r = cli("serve", "--new-key", "read")
    assert r.code == 0
    key = r.out.split("nowhere else): ")[1].split()[0]
    assert f"read {hash_key(key)}" in r.out


def test_serve_refuses_fused_rerank_on_postgres(cli, tmp_path):
    r = cli("serve", "--data-dir", tmp_path / "d", "--backend", "postgres", "--fused-rerank")
    r.assert_named_error("--fused-rerank applies to the memory backend", "--backend memory")
    assert not (tmp_path / "d").exists()
