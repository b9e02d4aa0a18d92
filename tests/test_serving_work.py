"""Every request's work is bounded and cancellable (issue 25): a request past its deadline stops
computing at the next chunk, its heavy-request slot is held until the worker really stops, `:explain`
goes through the same limits, slots and timeout as `:predict`, and no JSON body is parsed on the
event loop (a status GET is answered while a large body is parsed). In-process app, no socket."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import json
import sys
import threading

import numpy as np
import pytest

from conftest import png_bytes

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

SENTENCES = 2000


def make_app(model_base, name, **config):
    from cnnapp.serving import ServerConfig, create_app, discover_models
    return create_app(ServerConfig(models=discover_models(model_base, name), poll_seconds=0, **config))


def client_for(serving):
    from starlette.testclient import TestClient
    return TestClient(serving.app, base_url="http://localhost")


def with_timeout(serving, ms: int) -> None:
    serving.config = dataclasses.replace(serving.config, request_timeout_ms=ms)


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A decompression bomb: a 6000x6000 PNG of zeros, ~36 MB of pixels in ~40 KB."""
    return png_bytes(np.zeros((6000, 6000, 1), np.uint8))


def test_a_timed_out_request_stops_computing_and_holds_its_slot_until_then(model_base):
    from cnnapp.serving.app import HEAVY_CONCURRENCY
    serving = make_app(model_base, "tiny_text", chunk_examples=1)      # one signature call per sentence
    client = client_for(serving)
    body = json.dumps({"instances": ["a good film"] * SENTENCES})
    before = serving.work.chunks
    with_timeout(serving, 200)
    r = client.post("/v1/models/tiny_text:predict", content=body)
    assert r.status_code == 504 and "rest_api_timeout_in_ms" in r.json()["error"], r.text
    # Read the free slots first: a slot is only freed after its worker stopped running.
    free, running = serving.slots.free(), serving.work.running
    assert not (free == HEAVY_CONCURRENCY and running), (free, running)
    assert serving.work.wait_idle(60), "the timed-out worker never stopped"
    assert serving.work.chunks - before < SENTENCES, "the timed-out request was computed to its end"
    assert serving.slots.free() == HEAVY_CONCURRENCY
    with_timeout(serving, 0)                        # no limit: the same request runs through
    before = serving.work.chunks
    r = client.post("/v1/models/tiny_text:predict", content=body)
    assert r.status_code == 200 and len(r.json()["predictions"]) == SENTENCES, r.text[:200]
    assert serving.work.chunks - before == SENTENCES
    assert serving.slots.free() == HEAVY_CONCURRENCY
    serving.close()


def test_a_request_of_bombs_is_cut_one_image_at_a_time_and_stops_between_them(model_base, bomb):
    from cnnapp.serving.work import chunk_bounds, example_costs, image_pixels
    assert image_pixels(bomb) == 6000 * 6000
    small = png_bytes(np.zeros((8, 8, 1), np.uint8))
    images = np.array([small] * 100 + [bomb] * 3 + [small] * 10, dtype=object)
    bounds = chunk_bounds(len(images), 256, example_costs({"image_bytes": images}))
    assert bounds == [(0, 100), (100, 101), (101, 102), (102, 103), (103, 113)]
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]

    serving = make_app(model_base, "tiny_image")
    client = client_for(serving)
    body = {"instances": [{"b64": base64.b64encode(bomb).decode()}] * 16}
    before = serving.work.chunks
    with_timeout(serving, 100)
    assert client.post("/v1/models/tiny_image:predict", json=body).status_code == 504
    assert serving.work.wait_idle(60)
    assert serving.work.chunks - before < 16
    serving.close()


def test_slots_are_shared_by_event_loops_and_passed_on_by_a_cancelled_waiter():
    from cnnapp.serving.work import Slots
    slots = Slots(1)

    async def hold_then_queue():
        await slots.acquire()
        waiter = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        assert not waiter.done()
        waiter.cancel()                         # gave up (its request timed out)
        with pytest.raises(asyncio.CancelledError):
            await waiter
        second = asyncio.ensure_future(slots.acquire())
        await asyncio.sleep(0)
        threading.Thread(target=slots.release).start()      # a worker thread frees the slot
        await asyncio.wait_for(second, 30)
        assert slots.free() == 0

    asyncio.run(hold_then_queue())
    slots.release()
    assert slots.free() == 1
    asyncio.run(slots.acquire())            # another loop takes it
    assert slots.free() == 0



def test_unparsed_bodies_are_parsed_by_the_batch_thread_and_answered_one_wake_up_per_batch(monkeypatch):
    """A batching server's small bodies are queued unparsed: the batch thread parses them before it
    forms its next batch, so bodies that arrive while a batch runs become one batch, answered in one
    call_soon_threadsafe; each request gets its own outputs or its own error; one too large for a
    batch comes back UNBATCHED; and a body whose request is already gone is not parsed."""
    from types import SimpleNamespace
    from cnnapp.serving import batching
    from cnnapp.serving.batching import UNBATCHED, Batcher
    wake_ups = []
    real_settle = batching.settle
    monkeypatch.setattr(batching, "settle", lambda items: (wake_ups.append(len(items)), real_settle(items)))
    started, gate, batches, parsed = threading.Event(), threading.Event(), [], []

    def call(signature, inputs):
        x = inputs["x"]
        batches.append(len(x))
        if len(batches) == 1:
            started.set()
            gate.wait(30)           # the first batch runs while the others queue up, unparsed
        return {"y": x * 10}

    params = SimpleNamespace(max_batch_size=64, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=100)
    batcher = Batcher(call, params)

    def body(i, n=1):
        def prepare():
            parsed.append(i)
            if i % 7 == 3:
                raise ValueError(f"bad body {i}")
            return None if n > 64 else ("serving_default", {"x": np.full(n, i, np.float32)})
        return prepare

    async def main():
        loop = asyncio.get_running_loop()
        first = batcher.submit("serving_default", {"x": np.zeros(1, np.float32)}, loop=loop)
        assert await loop.run_in_executor(None, started.wait, 30)    # the batch thread runs the first batch
        futures = {i: batcher.submit_unparsed(body(i), loop) for i in range(1, 21)}
        large = batcher.submit_unparsed(body(30, n=100), loop)
        gone = batcher.submit_unparsed(body(99), loop)
        gone.cancel()               # its request timed out before the thread got to it
        gate.set()
        assert (await first)["y"].tolist() == [0.0]
        for i, f in futures.items():
            if i % 7 == 3:
                with pytest.raises(ValueError, match=f"bad body {i}"):
                    await f
            else:
                assert (await f)["y"].tolist() == [i * 10.0]
        assert await large is UNBATCHED

    asyncio.run(asyncio.wait_for(main(), 60))
    batcher.close()
    assert 99 not in parsed and sorted(parsed) == [*range(1, 21), 30]
    assert batches == [1, 17], batches      # the 17 good bodies that came in meanwhile: one batch
    # the first batch; the 3 bad bodies and the large one; the second batch
    assert sorted(wake_ups) == [1, 4, 17], wake_ups


def test_explain_goes_through_the_same_limits_slots_and_timeout(model_base, bomb):
    from cnnapp.serving.app import HEAVY_CONCURRENCY
    from cnnapp.serving.explain import MAX_INSTANCES
    serving = make_app(model_base, "tiny_image", max_body_bytes=2_000_000)
    client = client_for(serving)
    one = {"b64": base64.b64encode(bomb).decode()}
    r = client.post("/v1/models/tiny_image:explain", json={"instances": [one] * (MAX_INSTANCES + 1)})
    assert r.status_code == 400 and "at most 16 instances" in r.json()["error"], r.text
    r = client.post("/v1/models/tiny_image:explain", json={"instances": [one] * 60})
    assert r.status_code == 413 and "--max_body" in r.json()["error"], r.text
    before = serving.work.chunks
    with_timeout(serving, 100)
    r = client.post("/v1/models/tiny_image:explain", json={"instances": [one] * MAX_INSTANCES})
    assert r.status_code == 504 and "rest_api_timeout_in_ms" in r.json()["error"], r.text
    assert serving.work.wait_idle(60)
    assert serving.work.chunks - before < MAX_INSTANCES
    assert serving.slots.free() == HEAVY_CONCURRENCY
    with_timeout(serving, 0)
    small = {"b64": base64.b64encode(png_bytes(np.zeros((8, 8, 1), np.uint8))).decode()}
    r = client.post("/v1/models/tiny_image:explain", json={"instances": [small] * 2})
    assert r.status_code == 200 and len(r.json()["explanations"]) == 2, r.text[:300]
    serving.close()


@pytest.mark.parametrize("verb", ["predict", "classify", "regress", "explain"])
def test_status_gets_are_answered_while_a_large_body_is_parsed(model_base, verb):
    """No JSON is parsed on the event loop, and the worker that parses lets the loop run: status
    GETs sent while a large body is being parsed keep being answered before that parse ends.
    json.loads held the GIL for the whole document, wherever it ran: only the GET or two that slip
    in between its end and the counter's update (one switch interval) were answered in time."""
    serving = make_app(model_base, "tiny_text")
    # ~3 MB: 100,000 short objects, the shape that held the GIL for seconds in json.loads.
    body = json.dumps({"instances": ["a good film"], "padding": [{"k": "v\\u00e9", "n": [1]}] * 100_000})

    async def scenario():
        loop = asyncio.get_running_loop()
        transport = httpx.ASGITransport(app=serving.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=120) as client:
            post = asyncio.ensure_future(client.post(f"/v1/models/tiny_text:{verb}", content=body))
            assert await loop.run_in_executor(None, serving.work.wait, lambda w: w.parsing > 0, 60)
            answered_while_parsing = 0
            for _ in range(5000):
                status = await client.get("/v1/models/tiny_text")
                assert status.status_code == 200 and status.json()["model_version_status"][0]["state"] == "AVAILABLE"
                # Read in this order: the collector is paused before the parse and resumed after it.
                collector_on, parsing = gc.isenabled(), serving.work.parsing
                assert not (collector_on and parsing), "the cyclic collector ran during a heavy parse"
                if parsing == 0:                  # read the moment the GET is answered
                    break
                answered_while_parsing += 1
            return answered_while_parsing, await post

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)       # the GIL changes hands at most every 0.5 ms
    try:
        answered_while_parsing, answer = asyncio.run(scenario())
    finally:
        sys.setswitchinterval(interval)
    assert answered_while_parsing >= 20, f"only {answered_while_parsing} status GETs answered during the parse"
    assert answer.status_code == (200 if verb == "predict" else 400), answer.text[:300]
    assert serving.work.parsing == 0 and gc.isenabled()
    serving.close()


@pytest.mark.parametrize("window", [8, 300, 16 * 1024])
def test_the_gil_sharing_parser_reads_what_json_loads_reads(monkeypatch, window):
    """Random documents (strings holding commas and brackets, nested lists and objects, numbers),
    whole and with one character changed: the same value, or the same error at the same place."""
    import random
    from cnnapp.serving import json_parse
    monkeypatch.setattr(json_parse, "WINDOW", window)
    rng = random.Random(window)

    def value(depth):
        r = rng.random()
        if depth > 4 or r < 0.4:
            return rng.choice([1, -2.5, 1e10, "a", "b,c", "x],y", "q},", "é\n\"", True, None, 0, "", "[1,2]"])
        if r < 0.7:
            return [value(depth + 1) for _ in range(rng.randint(0, 12))]
        return {rng.choice(["k", "a,b", "x}", "z"]) + str(rng.randint(0, 5)): value(depth + 1)
                for _ in range(rng.randint(0, 8))}

    for _ in range(300):
        doc = value(0)
        for text in (json.dumps(doc), json.dumps(doc, indent=1), json.dumps(doc, separators=(",", ":"))):
            assert json_parse.loads(text) == json.loads(text)
            k = rng.randrange(len(text))
            bad = text[:k] + rng.choice([",", "]", "}", '"', "x", ""]) + text[k + 1:]
            try:
                expected = json.loads(bad)
            except ValueError as e:
                with pytest.raises(ValueError) as got:
                    json_parse.loads(bad)
                assert str(got.value) == str(e), bad
            else:
                assert json_parse.loads(bad) == expected
    with pytest.raises(json_parse.NestingTooDeep):
        json_parse.loads("[" * 100_000)
