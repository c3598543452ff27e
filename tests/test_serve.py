"""``graphprof serve``: profiles over HTTP under API keys with scopes, an audit trail with pseudonymised ids,
bad requests as JSON 4xx, events journaled durably and applied by ``update``, artifacts picked up when they
change."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the serving extra (fastapi, uvicorn, httpx) is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from graphprof import workdir  # noqa: E402
from graphprof.communities.stage import detect_communities  # noqa: E402
from graphprof.embeddings.export import export_embeddings  # noqa: E402
from graphprof.graph.build import build  # noqa: E402
from graphprof.ingest import generate  # noqa: E402
from graphprof.serving import keys  # noqa: E402
from graphprof.serving.server import build as build_app  # noqa: E402
from graphprof.training.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
KEY = "k" * 32


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    generate.write_tables(generate.generate(n_users=300, seed=11), tmp / "data")
    work = tmp / "trained"
    build(work, data=tmp / "data")
    train(work, targets=["gender"], models=["lr"], seeds=1)
    detect_communities(work)
    export_embeddings(work, model="lightgcn")
    return tmp


@pytest.fixture()
def api(served, tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHPROF_PSEUDONYM_KEY", KEY)
    work = tmp_path / "work"
    shutil.copytree(served / "trained", work)
    tokens = {name: keys.create(work, name, scopes) for name, scopes in (
        ("crm", ["profiles:read"]), ("reco", ["embeddings:read"]), ("shop", ["events:write"]),
        ("ops", ["admin"]))}
    app, journal = build_app(work, interval=0.2)
    client = TestClient(app)
    yield work, client, tokens, journal
    if journal is not None:
        journal.stop()


def auth(token):
    return {"Authorization": f"Bearer {token}"}


def users_of(work):
    return pd.read_parquet(workdir.model_file(work, "gender", "lr", workdir.MODEL_PREDICTIONS))


def test_profiles_need_a_key_with_the_scope(api):
    work, client, tokens, _ = api
    uid = users_of(work)["user_id"].iloc[0]
    assert client.get(f"/v1/users/{uid}").status_code == 401
    assert client.get(f"/v1/users/{uid}", headers=auth("gpk_00000000_" + "a" * 43)).status_code == 401
    r = client.get(f"/v1/users/{uid}", headers=auth(tokens["reco"]))
    assert r.status_code == 403 and "profiles:read" in r.json()["error"]["message"]
    r = client.get(f"/v1/users/{uid}", headers={"X-API-Key": tokens["crm"]})
    assert r.status_code == 200
    doc = r.json()
    pred = users_of(work).set_index("user_id").loc[uid]
    assert doc["targets"]["gender"]["class"] == pred["predicted"]
    assert doc["targets"]["gender"]["version"]["model"] == "lr"
    assert abs(sum(doc["targets"]["gender"]["probabilities"].values()) - 1) < 1e-9
    assert "community" in doc
    assert client.get(f"/v1/users/{uid}", headers=auth(tokens["ops"])).status_code == 200  # admin: every scope
    keys.revoke(work, "crm")
    assert client.get(f"/v1/users/{uid}", headers=auth(tokens["crm"])).status_code == 401


def test_keys_are_stored_only_as_salted_hashes(api):
    work, _, tokens, _ = api
    text = (work / keys.KEYS_FILE).read_text()
    for token in tokens.values():
        assert token.split("_", 2)[2] not in text  # the secret is all after the 2nd "_" and may hold "_"
    assert (work / keys.KEYS_FILE).stat().st_mode & 0o077 == 0
    assert {k["name"] for k in keys.listing(work)} == set(tokens)


def test_batch_similar_recommendations_and_the_audit_trail(api):
    work, client, tokens, _ = api
    ids = list(users_of(work)["user_id"].iloc[:5])
    r = client.post("/v1/users:batch", json={"ids": [*ids, "nobody"]}, headers=auth(tokens["crm"]))
    assert r.status_code == 200
    assert [p["user_id"] for p in r.json()["profiles"]] == ids and r.json()["missing"] == ["nobody"]
    r = client.get(f"/v1/users/{ids[0]}/similar?k=3", headers=auth(tokens["reco"]))
    assert r.status_code == 200 and len(r.json()["similar"]) == 3
    r = client.get(f"/v1/users/{ids[0]}/recommendations?k=4", headers=auth(tokens["reco"]))
    assert r.status_code == 200 and len(r.json()["recommendations"]) == 4
    assert client.get("/v1/users/nobody", headers=auth(tokens["crm"])).status_code == 404
    lines = [json.loads(x) for x in (work / "serving" / "audit.jsonl").read_text().splitlines()]
    text = (work / "serving" / "audit.jsonl").read_text()
    assert all(i not in text for i in ids)  # never in clear
    batch = [e for e in lines if e["route"] == "/v1/users:batch"][0]
    assert batch["key"] == "crm" and batch["users"] == 6 and batch["status"] == 200
    assert len(batch["user_ids"]) == 6 and batch["user_ids"][0] != ids[0]
    from graphprof.serving.audit import summarize

    summary = summarize(work)
    assert summary["keys"]["crm"]["users"] >= 6 and summary["keys"]["reco"]["requests"] == 2


@pytest.mark.parametrize(("method", "path", "body", "status", "said"), [
    ("post", "/v1/users:batch", {"ids": []}, 422, "ids"),
    ("post", "/v1/users:batch", {"idz": ["a"]}, 422, "ids"),
    ("post", "/v1/users:batch", "not json", 422, "body"),
    ("get", "/v1/users/x/similar?k=0", None, 404, "user id"),
    ("post", "/v1/predict", {"purchases": [{"user_id": "n1", "item_id": "i", "quantity": 0}]}, 422, "quantity"),
    ("post", "/v1/events", {"purchases": [{"user_id": "", "item_id": "i"}]}, 422, "user_id"),
    ("post", "/v1/events", {}, 422, "at least one"),
    ("post", "/v1/events", {"users": [{"user_id": "a", "__row__": "1"}]}, 422, "plain columns"),
    ("get", "/v1/nothing-here", None, 404, None),
], ids=["empty-batch", "unknown-field", "not-json", "unknown-user", "bad-quantity", "empty-id", "no-rows",
        "bad-column", "no-route"])
def test_bad_requests_get_a_json_4xx(api, method, path, body, status, said):
    work, client, tokens, _ = api
    kw = {"headers": auth(tokens["ops"])}
    if body is not None:
        kw["json" if not isinstance(body, str) else "content"] = body
    r = getattr(client, method)(path, **kw)
    assert r.status_code == status, r.text
    if said:
        assert said in r.json()["error"]["message"]
    assert not any(p.name.startswith(".") and p.name != ".lock" for p in work.iterdir())


def test_a_body_over_the_limit_is_refused_before_it_is_read(api):
    from graphprof.serving.app import MAX_BODY

    work, client, tokens, _ = api
    r = client.post("/v1/users:batch", content=b"x" * 10, headers={**auth(tokens["crm"]),
                                                                     "Content-Length": str(MAX_BODY + 1)})
    assert r.status_code == 413 and "at most 64 MiB" in r.json()["error"]["message"]


def test_predict_profiles_a_new_customer_and_writes_nothing(api):
    work, client, tokens, _ = api
    item = pd.read_parquet(workdir.table_path(work, "items"))["item_id"].iloc[0]
    before = sorted(p for p in work.rglob("*") if "serving" not in p.parts)
    r = client.post("/v1/predict", json={"purchases": [{"user_id": "brand-new", "item_id": item,
                                                        "timestamp": 1.7e9, "quantity": 2, "price": 3.5}]},
                    headers=auth(tokens["crm"]))
    assert r.status_code == 200, r.text
    assert r.json()["profiles"][0]["user_id"] == "brand-new"
    assert set(r.json()["profiles"][0]["targets"]["gender"]["probabilities"]) == {"f", "m"}
    assert sorted(p for p in work.rglob("*") if "serving" not in p.parts) == before


def test_events_are_journaled_then_applied_and_served(api):
    work, client, tokens, journal = api
    item = pd.read_parquet(workdir.table_path(work, "items"))["item_id"].iloc[0]
    known = users_of(work)["user_id"].iloc[0]
    body = {"purchases": [{"user_id": "evt-new", "item_id": item, "timestamp": 1.9e9, "quantity": 1, "price": 2.0},
                          {"user_id": known, "item_id": item, "timestamp": 1.9e9, "quantity": 3, "price": 2.0}],
            "friendships": [{"user_id": "evt-new", "friend_id": known}],
            "users": [{"user_id": "evt-new", "gender": "f"}]}
    assert client.post("/v1/events", json=body, headers=auth(tokens["crm"])).status_code == 403
    r = client.post("/v1/events", json=body, headers=auth(tokens["shop"]))
    assert r.status_code == 202 and r.json()["accepted"] == 4
    assert (work / "serving" / "events" / "pending.jsonl").exists()  # on disk before the reply
    journal.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = client.get("/v1/users/evt-new", headers=auth(tokens["crm"]))
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert json.loads((work / workdir.MANIFEST).read_text())["updates"][0]["counts"]["new_users"] == 1
    assert "graphprof_events_pending 0" in client.get("/metrics").text
    assert client.get("/healthz").json()["users"] == len(users_of(work))


def test_a_batch_update_cannot_read_is_set_aside_and_the_next_one_applies(api, monkeypatch):
    from graphprof.errors import InputError
    from graphprof.serving import events as events_module

    work, client, tokens, journal = api
    item = pd.read_parquet(workdir.table_path(work, "items"))["item_id"].iloc[0]
    row = {"user_id": "poison", "item_id": item, "timestamp": 1.9e9, "quantity": 1, "price": 1.0}
    journal.append({"purchases": [row]})
    journal.seal()
    real = events_module._write_batch

    def unreadable(sealed, out):
        real(sealed, out)
        raise InputError(f"{out}/purchases.csv: an unreadable file")

    monkeypatch.setattr(events_module, "_write_batch", unreadable)
    assert journal.apply_sealed() == 0
    failed = work / "serving" / "events" / "failed"
    assert (failed / "batch-1.jsonl").exists() and "unreadable" in (failed / "batch-1.error.txt").read_text()
    monkeypatch.setattr(events_module, "_write_batch", real)
    journal.append({"purchases": [{**row, "user_id": "after"}]})
    assert journal.apply_now() == 1 and journal.pending() == 0
    assert "graphprof_events_batches_failed_total 1" in client.get("/metrics").text


def test_erased_users_are_gone_from_every_answer(api):
    from graphprof.privacy.forget import forget

    work, client, tokens, _ = api
    uid = users_of(work)["user_id"].iloc[3]
    assert client.get(f"/v1/users/{uid}", headers=auth(tokens["crm"])).status_code == 200
    forget(work, [uid])
    time.sleep(1.1)  # the store checks the work directory at most once a second
    assert client.get(f"/v1/users/{uid}", headers=auth(tokens["crm"])).status_code == 404
    r = client.post("/v1/users:batch", json={"ids": [uid]}, headers=auth(tokens["crm"]))
    assert r.json()["missing"] == [uid]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_cli_refuses_a_port_in_use_and_a_missing_key(served, tmp_path, monkeypatch):
    work = tmp_path / "work"
    shutil.copytree(served / "trained", work)
    env = {k: v for k, v in __import__("os").environ.items() if k != "GRAPHPROF_PSEUDONYM_KEY"}
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "serve", "--workdir", str(work), "--port", "0"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 2 and "key" in out.stderr and "Traceback" not in out.stderr
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "serve", "--workdir", str(work), "--port",
                              str(port)], capture_output=True, text=True, env={**env, "GRAPHPROF_PSEUDONYM_KEY": KEY},
                             timeout=60)
    assert out.returncode == 2 and "in use" in out.stderr and "Traceback" not in out.stderr


def test_a_real_server_process_scopes_profiles_events_crash_and_audit(served, tmp_path):
    """A real ``graphprof serve`` process on loopback, over HTTP: 401 / 403 / 200 by scope, the profile equal to
    predictions.parquet's row, events reflected after the micro-batch; then SIGKILL right after it accepted an
    event, and the restarted server applies it (nothing accepted is lost, nothing applied twice); the audit
    trail names no user in clear."""
    import httpx

    work = tmp_path / "work"
    shutil.copytree(served / "trained", work)
    env = {**__import__("os").environ, "GRAPHPROF_PSEUDONYM_KEY": KEY}
    shop = keys.create(work, "shop", ["events:write"])
    crm = keys.create(work, "crm", ["profiles:read"])
    item = pd.read_parquet(workdir.table_path(work, "items"))["item_id"].iloc[0]
    pred = users_of(work)
    uid = pred["user_id"].iloc[7]

    def start(interval: str):
        port = _free_port()
        proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", "--workdir", str(work), "--port",
                                 str(port), "--apply-every", interval], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return proc, f"http://127.0.0.1:{port}"
            except httpx.HTTPError:
                time.sleep(0.1)
        proc.kill()
        pytest.fail(proc.stderr.read())

    def wait_for(url: str, who: str):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            r = httpx.get(f"{url}/v1/users/{who}", headers=auth(crm))
            if r.status_code == 200:
                return r
            time.sleep(0.2)
        pytest.fail(f"{who} never appeared")

    proc, url = start("0.5")
    try:
        assert httpx.get(f"{url}/v1/users/{uid}").status_code == 401
        assert httpx.get(f"{url}/v1/users/{uid}", headers=auth(shop)).status_code == 403
        r = httpx.get(f"{url}/v1/users/{uid}", headers=auth(crm))
        assert r.status_code == 200
        row = pred.set_index("user_id").loc[uid]
        got = r.json()["targets"]["gender"]
        assert got["class"] == row["predicted"]
        assert got["probabilities"] == {c: row[f"proba_{c}"] for c in got["probabilities"]}  # exactly
        r = httpx.post(f"{url}/v1/events", headers=auth(shop), json={"purchases": [
            {"user_id": "live-new", "item_id": item, "timestamp": 1.9e9, "quantity": 1, "price": 1.0}]})
        assert r.status_code == 202
        wait_for(url, "live-new")  # applied by update within the micro-batch interval
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)

    proc, url = start("3600")  # the applier never runs before the kill
    r = httpx.post(f"{url}/v1/events", headers=auth(shop), json={"purchases": [
        {"user_id": "crash-new", "item_id": item, "timestamp": 1.9e9, "quantity": 1, "price": 1.0}]})
    assert r.status_code == 202
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc, url = start("0.5")
    try:
        wait_for(url, "crash-new")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    updates = json.loads((work / workdir.MANIFEST).read_text())["updates"]
    assert [u["counts"]["new_users"] for u in updates] == [1, 1]  # each batch applied once
    trail = (work / "serving" / "audit.jsonl").read_text()
    assert trail.count('"key":"crm"') >= 3
    for who in (uid, "live-new", "crash-new"):
        assert who not in trail


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A real redis-server on a free loopback port, stopped after the module."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed (.ci/run installs Debian's package)")
    folder = tmp_path_factory.mktemp("redis")
    port = _free_port()
    proc = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=30)


def test_publish_to_redis_and_serve_from_it(served, tmp_path, monkeypatch, redis_url):
    import redis

    from graphprof.privacy.forget import forget
    from graphprof.serving.redis_store import publish

    monkeypatch.setenv("GRAPHPROF_PSEUDONYM_KEY", KEY)
    work = tmp_path / "work"
    shutil.copytree(served / "trained", work)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.hset("graphprof:user:left-over", mapping={"gender": "{}"})  # a user of an older publish
    doc = publish(work, redis_url)
    ids = list(users_of(work)["user_id"])
    assert doc["users"] == len(ids) and doc["removed"] == 1
    assert not client.exists("graphprof:user:left-over")
    assert client.hget("graphprof:version", "graph_id") == json.loads((work / workdir.MANIFEST).read_text())["graph_id"]
    token = keys.create(work, "crm", ["profiles:read"])
    app, journal = build_app(work, store=redis_url, events=False)
    api = TestClient(app)
    from_dir = TestClient(build_app(work, events=False)[0])
    r1 = api.get(f"/v1/users/{ids[0]}", headers=auth(token))
    r2 = from_dir.get(f"/v1/users/{ids[0]}", headers=auth(token))
    assert r1.status_code == 200 and r1.json() == r2.json()  # the same answer from Redis and the work directory
    assert api.get(f"/v1/users/{ids[0]}/similar", headers=auth(keys.create(work, "r", ["admin"]))).status_code == 409
    forget(work, [ids[0]])
    assert publish(work, redis_url)["removed"] == 1  # erased users are deleted from the store
    assert api.get(f"/v1/users/{ids[0]}", headers=auth(token)).status_code == 404
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "publish", "--workdir", str(work), "--redis",
                          "redis://127.0.0.1:1/0"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "reachable" in out.stderr and "Traceback" not in out.stderr


def test_the_json_fast_path_gives_the_same_documents(served):
    from graphprof.serving.store import WorkdirStore

    store = WorkdirStore(served / "trained")
    ids = [*map(str, store.ids[::7]), "nobody", str(store.ids[0])]
    for doc, text in zip(store.profiles(ids), store.profiles_json(ids)):
        assert (doc is None and text is None) or json.loads(text) == doc
