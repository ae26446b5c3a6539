"""``toprec serve``: the same answers as offline, fold-in over HTTP, limits and errors, hot swap under load."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest
from contract_params import contract_params

from toprec import ToprecError, models
from toprec.app import serving

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from toprec.serve import ServeConfig, create_app  # noqa: E402

KEY = "s3cret-key"
H = {"X-API-Key": KEY}
ALL = sorted(models.list())


def _ordered(ds, users):
    ptr, item = np.asarray(ds.user_ptr), np.asarray(ds.item)
    return [item[ptr[u] : ptr[u + 1]] for u in users]


@pytest.fixture(scope="module")
def data():
    from conftest import clustered_events

    from toprec import Dataset

    e = clustered_events()
    return Dataset.from_events(e["user"].to_numpy(), e["item"].to_numpy(), e["time"].to_numpy())


@pytest.fixture(scope="module")
def ease_dir(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("serve") / "ease"
    serving.save_model(models.get("ease", l2=50.0).fit(data), data, path)
    return path


@pytest.fixture
def client(ease_dir):
    with TestClient(create_app(ServeConfig(model_dir=str(ease_dir), api_key=KEY, watch_s=0, max_history=50))) as c:
        yield c


@pytest.mark.parametrize("name", ALL)
def test_same_answers_as_offline_for_every_model(name, data, tmp_path):
    """Known users: the server's lists are ``recommend()``'s; new users: the model's fold-in of the ordered history."""
    model = models.get(name, **contract_params(name)).fit(data)
    s = serving.load(serving.save_model(model, data, tmp_path / name))
    users = np.arange(0, data.n_users, 9)
    ids = data.item_ids
    offline = model.recommend(users, k=10)
    answers = s.answer([serving.Query(user=str(data.user_ids[u])) for u in users], k=10)
    for u, row, a in zip(users, offline.items, answers):
        assert a.items == ids[row].tolist(), f"{name}: user {u}"
        assert not a.cold_start
    one = s.answer_for_user(str(data.user_ids[users[1]]), k=10)  # alone = in a batch
    assert one.items == answers[1].items
    hist = _ordered(data, users[:4])
    folded = model.recommend(np.full(4, -1), k=10, history=model.histories(hist))
    got = s.answer([serving.Query(history=ids[h].tolist()) for h in hist], k=10)
    assert [a.items for a in got] == [ids[r].tolist() for r in folded.items]
    if model.fold_in in ("history", "sequence"):  # the new user with a known user's history: the known user's list
        assert [a.items for a in got] == [a.items for a in answers[:4]]


def test_ensemble_pipeline_serves_the_fused_lists(data, tmp_path):
    from toprec.ensemble import Ensemble

    ens = Ensemble("ease:l2=50,itemknn:k=20,ials:factors=8:iterations=4:num_threads=1", method="rank",
                   weights=[0.5, 0.2, 0.3], candidates=30).prepare_final(data)  # fmt: skip
    users = np.arange(0, data.n_users, 7)
    offline = ens.recommend(users, k=10)
    path = serving.save_pipeline(ens, data, tmp_path / "pipe")
    assert (path / "pipeline.json").exists() and (path / "members" / "2" / "model.json").exists()
    s = serving.load(path)
    got = s.answer([serving.Query(user=str(data.user_ids[u])) for u in users], k=10)
    assert [a.items for a in got] == [data.item_ids[r].tolist() for r in offline.items]
    info = s.info()
    assert info["kind"] == "ensemble" and [m["name"] for m in info["members"]] == ["ease", "itemknn", "ials"]
    new = s.answer_for_history(data.item_ids[_ordered(data, [0])[0]].tolist(), k=10)
    assert len(new.items) == 10 and not new.cold_start


def test_file_members_cannot_be_saved_for_serving(data, tmp_path):
    from toprec.ensemble import Ensemble

    sub = tmp_path / "s.csv"
    models.get("popularity").fit(data).recommend(k=20).write_csv(sub, data)
    ens = Ensemble(f"ease,{sub}", method="rank")
    with pytest.raises(ToprecError, match="file of lists"):
        serving.check_pipeline(ens)


def test_endpoints(client, data):
    u = str(data.user_ids[3])
    r = client.get(f"/v1/users/{u}/recommendations", params={"k": 5}, headers=H)
    assert r.status_code == 200 and r.json()["user"] == u and len(r.json()["items"]) == 5
    first = r.json()["items"][0]
    r2 = client.get(f"/v1/users/{u}/recommendations", params={"k": 5, "exclude": f"{first},nope"}, headers=H)
    assert first not in r2.json()["items"] and r2.json()["items"][:4] == r.json()["items"][1:]
    cold = client.get("/v1/users/nobody/recommendations", headers=H).json()
    assert cold["cold_start"] is True and len(cold["items"]) == 10
    hist = [int(x) for x in data.item_ids[_ordered(data, [3])[0]]]
    r = client.post("/v1/recommendations", json={"history": hist + ["zzz", 999999], "k": 5}, headers=H)
    body = r.json()
    assert r.status_code == 200 and body["unknown_items"] == ["zzz", 999999] and not set(body["items"]) & set(hist)
    assert body["items"] == client.get(f"/v1/users/{u}/recommendations?k=5", headers=H).json()["items"]  # EASE folds exactly
    r = client.post("/v1/recommendations/batch", json={"requests": [{"user": u}, {"history": hist[:3]}], "k": 3},
                    headers=H)  # fmt: skip
    assert r.status_code == 200 and [len(x["items"]) for x in r.json()["results"]] == [3, 3]
    r = client.get(f"/v1/items/{data.item_ids[0]}/similar", params={"k": 4}, headers=H)
    assert r.status_code == 200 and len(r.json()["items"]) == 4 and int(data.item_ids[0]) not in r.json()["items"]
    info = client.get("/v1/model", headers=H).json()
    assert info["name"] == "ease" and info["data"]["fingerprint"] and info["trained_at"] and info["toprec_version"]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready", headers=H).json()["status"] == "ready"
    text = client.get("/metrics", headers=H).text
    assert 'toprec_requests_total{endpoint="/v1/users/{user}/recommendations",status="200"}' in text
    assert 'toprec_request_seconds_bucket{endpoint="/v1/recommendations",le="+Inf"} 1' in text
    assert "toprec_errors_total" in text


@pytest.mark.parametrize("method,path,kwargs,status", [
    ("get", "/v1/model", {}, 401),  # no key
    ("get", "/v1/users/u1/recommendations?k=0", {"headers": H}, 422),
    ("get", "/v1/users/u1/recommendations?k=abc", {"headers": H}, 422),
    ("get", "/v1/users/u1/recommendations?k=101", {"headers": H}, 422),  # over max_k
    ("get", "/v1/users/u1/recommendations?k=99999999999999999999999", {"headers": H}, 422),
    ("get", "/v1/items/nope/similar", {"headers": H}, 404),
    ("post", "/v1/recommendations", {"headers": {**H, "content-type": "application/json"}, "content": b"{bad"}, 400),
    ("post", "/v1/recommendations", {"headers": {**H, "content-type": "application/json"},
                                     "content": b'{"history": ["\xff\xfe"]}'}, 400),  # not UTF-8
    ("post", "/v1/recommendations", {"headers": H, "json": {"history": "1,2"}}, 422),
    ("post", "/v1/recommendations", {"headers": H, "json": {"history": [1.5]}}, 422),
    ("post", "/v1/recommendations", {"headers": H, "json": {"history": [[1]]}}, 422),
    ("post", "/v1/recommendations", {"headers": H, "json": {"history": [1], "k": True}}, 422),
    ("post", "/v1/recommendations", {"headers": H, "json": {"history": [1], "extra": 1}}, 422),
    ("post", "/v1/recommendations", {"headers": H, "json": {"history": list(range(51))}}, 422),  # over max_history
    ("post", "/v1/recommendations", {"headers": H, "json": {"history": list(range(5000))}}, 422),
    ("post", "/v1/recommendations", {"headers": H, "json": {"history": ["x" * 300]}}, 422),
    ("post", "/v1/recommendations", {"headers": H, "content": b"x" * (2 << 20)}, 413),
    ("post", "/v1/recommendations/batch", {"headers": H, "json": {"requests": []}}, 422),
    ("post", "/v1/recommendations/batch", {"headers": H, "json": {"requests": [{"user": "a", "history": [1]}]}}, 422),
    ("post", "/v1/recommendations/batch", {"headers": H, "json": {"requests": [{"user": "a"}] * 65}}, 422),
    ("get", "/v1/users/u1/recommendations", {"headers": {"X-API-Key": "wrong"}}, 401),
    ("post", "/admin/reload", {}, 401),
    ("delete", "/v1/model", {"headers": H}, 405),
    ("get", "/nothing", {"headers": H}, 404),
])  # fmt: skip
def test_bad_requests_get_one_line_json_4xx(client, method, path, kwargs, status):
    r = getattr(client, method)(path, **kwargs) if method != "post" or "content" not in kwargs else \
        client.request("POST", path, **kwargs)  # fmt: skip
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} or set(body) == {"detail"}, body
    msg = body.get("error", body.get("detail"))
    assert isinstance(msg, str) and "\n" not in msg and "Traceback" not in msg and len(msg) < 600


def test_ids_with_slashes_commas_and_spaces(data, tmp_path):
    """Ids as written reach every route: a '/' in a path id (sent as %2F; it was a 404), and an item id with a
    comma or edge spaces left out whole by `exclude_id` (`exclude` splits on commas and strips)."""
    from urllib.parse import quote

    from toprec import Dataset

    ds = Dataset.from_events(np.array([f"AC/DC {u}" for u in data.user_ids[data.user]], dtype=object),
                             np.array([f" Tiger, Dragon ({i}) " for i in data.item_ids[data.item]], dtype=object),
                             np.asarray(data.time))  # fmt: skip
    path = tmp_path / "m"
    serving.save_model(models.get("ease", l2=50.0).fit(ds), ds, path)
    with TestClient(create_app(ServeConfig(model_dir=str(path), watch_s=0))) as c:
        u = str(ds.user_ids[3])
        r = c.get(f"/v1/users/{quote(u, safe='')}/recommendations", params={"k": 5})
        assert r.status_code == 200 and r.json()["user"] == u and not r.json()["cold_start"], r.text
        first, second = r.json()["items"][:2]
        assert "," in first and first != first.strip()
        r2 = c.get(f"/v1/users/{quote(u, safe='')}/recommendations",
                   params=[("k", 5), ("exclude_id", first), ("exclude_id", second)])  # fmt: skip
        assert r2.json()["items"][:3] == r.json()["items"][2:], r2.text
        r3 = c.get(f"/v1/items/{quote(first, safe='')}/similar", params={"k": 3})
        assert r3.status_code == 200 and r3.json()["item"] == first and first not in r3.json()["items"], r3.text


def test_health_needs_no_key_and_cors_is_off(client):
    r = client.get("/health", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
    r = client.options("/v1/model", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET",
                                             **H})  # fmt: skip
    assert "access-control-allow-origin" not in r.headers


def test_unknown_users_404_by_option(ease_dir):
    cfg = ServeConfig(model_dir=str(ease_dir), unknown_users="404", watch_s=0)
    with TestClient(create_app(cfg)) as c:
        r = c.get("/v1/users/nobody/recommendations")
        assert r.status_code == 404 and "unknown user" in r.json()["error"]
        assert c.post("/admin/reload").status_code == 403  # reload always needs a key


def test_not_a_model_folder_is_one_line_error(tmp_path):
    with pytest.raises(ToprecError, match="not a saved model"):
        create_app(ServeConfig(model_dir=str(tmp_path), watch_s=0))


def _toprec(*args):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "toprec", *map(str, args)], capture_output=True, text=True)


def test_cli_serve_bad_folder_and_key_are_one_line_errors(tmp_path):
    for args, needle in (((tmp_path / "missing",), "not a saved model"),
                         ((tmp_path, "--api-key-file", tmp_path / "nokey"), "cannot read")):  # fmt: skip
        proc = _toprec("serve", *args)
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_submit_save_model_is_servable(cli, competition_dir, tmp_path):
    out = tmp_path / "m"
    cli("submit", "--data", competition_dir, "--model", "ease", "--output", tmp_path / "s.csv", "--save-model", out)
    s = serving.load(out)
    assert s.info()["data"]["events"] == 2400 and (out / "ids.json").exists()
    assert len(s.answer_for_user(next(iter(s.user_index))).items) == 10


# ------------------------------------------------------------------ a real server: swap under load
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_hot_swap_under_load_loses_no_request(data, tmp_path):
    import http.client

    import uvicorn

    path = tmp_path / "live"
    serving.save_model(models.get("ease", l2=50.0).fit(data), data, path)
    new_model = models.get("itemknn", k=10).fit(data)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(ServeConfig(model_dir=str(path), api_key=KEY, watch_s=0)),
                                           host="127.0.0.1", port=port, log_level="error"))  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    users = [str(u) for u in data.user_ids[:20]]
    results: list = []
    stop = threading.Event()

    def hammer(seed: int):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = seed
        while not stop.is_set():
            u = users[i % len(users)]
            try:
                conn.request("GET", f"/v1/users/{u}/recommendations?k=10", headers=H)
                resp = conn.getresponse()
                results.append((time.perf_counter(), u, resp.status, json.loads(resp.read())))
            except Exception as exc:  # noqa: BLE001 - a failed request is what the test counts
                results.append((time.perf_counter(), u, -1, repr(exc)))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            i += 1

    try:
        threads = [threading.Thread(target=hammer, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        serving.save_model(new_model, data, path)  # replace the folder (atomically), then ask for the swap
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", "/admin/reload", headers=H)
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        swapped = time.perf_counter()
        assert json.loads(resp.read())["generation"] == 2
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
    finally:
        stop.set()
        server.should_exit = True
        thread.join(timeout=10)
    assert results and all(r[2] == 200 for r in results), [r for r in results if r[2] != 200][:3]
    expect = {str(data.user_ids[u]): data.item_ids[row].tolist()
              for u, row in zip(range(20), new_model.recommend(np.arange(20), k=10).items)}  # fmt: skip
    after = [r for r in results if r[0] > swapped + 0.05]
    assert after and all(r[3]["items"] == expect[r[1]] for r in after)
    assert sum(r[0] <= swapped for r in results) > 0
