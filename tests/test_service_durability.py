"""kill -9 of `mrl serve` mid-load: every acknowledged write is served after a restart, and no
unacknowledged batch is served in part; a torn record after them is dropped with a warning.

kill -9 cannot tear a record itself (the kernel finishes a write() the process started; only
a power loss can cut one short), so the test appends a torn record before the restart.
"""

import concurrent.futures
import struct
import threading
import time

import httpx
from service_helpers import ServerProcess, collection_body, vectors

CLIENTS, BATCH = 8, 5


def _writer(url: str, client_no: int, stop: threading.Event, acked: list, sent: list) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        for b in range(10_000):
            if stop.is_set():
                return
            ids = [client_no * 1_000_000 + b * BATCH + i for i in range(BATCH)]
            sent.append(ids)
            body = {"ids": ids, "vectors": vectors(BATCH, seed=ids[0]).tolist()}
            try:
                r = client.post("/v1/collections/load/items", json=body)
            except httpx.HTTPError:  # the server died under us: this batch is unacknowledged
                return
            if r.status_code == 201:
                acked.append(ids)


def _present(client: httpx.Client, item_id: int) -> bool:
    r = client.get(f"/v1/collections/load/items/{item_id}")
    assert r.status_code in (200, 404), r.text
    return r.status_code == 200


def test_acknowledged_writes_survive_kill_9_and_a_torn_tail_is_dropped(tmp_path):
    data = tmp_path / "data"
    server = ServerProcess(data, log_path=tmp_path / "server.log")
    httpx.post(server.url + "/v1/collections", json=collection_body("load")).raise_for_status()
    stop, acked, sent = threading.Event(), [], []
    with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
        for c in range(CLIENTS):
            pool.submit(_writer, server.url, c, stop, acked, sent)
        deadline = time.monotonic() + 20
        while len(acked) < 40 and time.monotonic() < deadline:  # well into the load
            time.sleep(0.05)
        server.kill()
        stop.set()
    assert len(acked) >= 40, server.log()
    with open(data / "wal.log", "ab") as f:  # a record cut short: 5000 bytes announced
        f.write(struct.pack("<II", 5000, 0) + b'{"op": "add", "lsn"')

    server = ServerProcess(data, log_path=tmp_path / "server.log")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        acked_set = {tuple(b) for b in acked}
        for batch in acked:
            assert all(_present(client, i) for i in batch), f"acknowledged {batch} lost"
        served = len(acked) * BATCH
        for batch in sent:
            if tuple(batch) not in acked_set:
                flags = [_present(client, i) for i in batch]
                assert all(flags) or not any(flags), f"batch {batch} is served in part"
                served += BATCH * all(flags)
        assert client.get("/v1/collections/load").json()["count"] == served
    server.stop()
    assert "dropping a torn record" in server.log()
