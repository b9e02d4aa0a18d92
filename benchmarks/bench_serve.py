"""Load benchmark for `cnnapp serve`: requests/s and p50/p99 latency over loopback, REST and gRPC.

Drives real servers (separate processes) with concurrent clients (default 1 and 32), each sending
one example per request (a PNG for the image model, a sentence for the text model), over REST
(keep-alive HTTP/1.1) and over gRPC (tensorflow-serving-api's PredictRequest on one channel):
  - cnnapp serve, batching off (one signature call per request)
  - cnnapp serve, batching on (TF Serving's parameters, below)
  - with --naive: a naive server, the same Keras model, `model.predict` per request (what not to do)
  - with --ceiling: cnnapp serve with batching on whose model answers instantly (the batcher
    replaced by one that returns a stored answer on the event loop): what HTTP, JSON and gRPC alone
    allow a predict request, the ceiling batching could approach if the model cost nothing
plus the HTTP ceiling: GET status with 32 clients (no model call), what the HTTP layer alone allows.
The 1-minute load average is read before and after every point and written beside the numbers:
on a shared machine, a number taken at load 16 says little about a quiet one.

The models are the defaults cnnapp trains (keras-io MNIST-size image CNN on 28x28x1, Kim's text
CNN), untrained: speed does not depend on the weights. The client is a minimal asyncio HTTP/1.1
client so it costs the shared 2 cores as little as possible.

    make bench-serve            # or: .venv/bin/python benchmarks/bench_serve.py [--seconds 3]
    git worktree add /tmp/old <commit> && .venv/bin/python benchmarks/bench_serve.py --against /tmp/old
                                # an A/B: the other checkout's servers in the same interleaved rounds
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
CLIENTS = (1, 32)
# TF Serving's batching guide for CPU-only serving: no batch timeout (a batch is whatever queued while the
# model was busy), then tune. One batch thread: on 2 cores the other is the event loop's (HTTP, JSON). A quiet
# probe at 32 REST clients (2026-12-03): timeout 1000 us / 2 threads 4,100 images and 4,819 sentences req/s;
# 0 / 1 thread 4,544 and 5,054; 0 / 2 threads 3,641 and 4,670 (docs/bench/serve.md).
BATCHING = {"max_batch_size": 64, "batch_timeout_micros": 0, "num_batch_threads": 1, "max_enqueued_batches": 1000}
SENTENCES = ["a moving and beautifully acted film", "dull , lifeless and far too long", "a good film",
             "the story is great but the acting is bad", "so so"]


# ---------------------------------------------------------------------------- models (deterministic)

def build_models():
    """(image model, decoder, text model, vectorizer): rebuilt identically in any process."""
    import keras
    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.models.text_cnn import build_text_cnn
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.preprocessing.text import make_vectorizer
    keras.utils.set_random_seed(0)
    image = build_image_cnn(input_shape=(28, 28, 1), num_classes=10)
    decoder = ImageDecoder(height=28, width=28, channels=1, name="image_decoder")
    vectorizer = make_vectorizer(SENTENCES * 10, max_tokens=20000, sequence_length=50)
    text = build_text_cnn(sequence_length=50, vocab_size=vectorizer.vocabulary_size(), num_classes=2)
    return image, decoder, text, vectorizer


def export(base: Path) -> None:
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask, image_prepared
    from cnnapp.tasks.sentences import SentenceTask, text_prepared
    image, decoder, text, vectorizer = build_models()
    export_model(ImageTask(), image, image_prepared(decoder, num_classes=10), class_names=[str(i) for i in range(10)],
                 export_base=base, name="image", version=1)
    export_model(SentenceTask(), text, text_prepared(vectorizer, num_classes=2), class_names=["negative", "positive"],
                 export_base=base, name="text", version=1)


def naive_server(port: int) -> None:
    """The anti-pattern, for comparison: Keras `model.predict` on every request."""
    import numpy as np
    import tensorflow as tf
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    image, decoder, text, vectorizer = build_models()

    def predict(name, doc):
        if name == "image":
            pixels = decoder(tf.constant([base64.b64decode(i["b64"]) for i in doc["instances"]]))
            scores = image.predict(pixels, verbose=0)
        else:
            scores = text.predict(vectorizer(tf.constant(doc["instances"])), verbose=0)
        return {"predictions": [{"scores": np.asarray(s).tolist()} for s in scores]}

    async def handler(request):
        name = request.path_params["rest"].split(":")[0]
        if request.method == "GET":
            return JSONResponse({"model_version_status": [{"version": "1", "state": "AVAILABLE"}]})
        from starlette.concurrency import run_in_threadpool
        return JSONResponse(await run_in_threadpool(predict, name, json.loads(await request.body())))

    app = Starlette(routes=[Route("/v1/models/{rest:path}", handler, methods=["GET", "POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def instant_server(rest_port: int, grpc_port: int, base: str) -> None:
    """`cnnapp serve --enable_batching` over the same models, except that each batcher answers at
    once, on the event loop, with the answer the real signature gave one example (repeated to the
    request's size): every cost of a batched predict request except the model's and the batch
    thread's. The measured requests/s is the ceiling of the protocol path, not of the server."""
    import numpy as np
    from cnnapp.serving.config import BatchingParameters
    from cnnapp.serving.server import build_config, serve
    from cnnapp.serving.app import create_app
    app = create_app(build_config(model_base_path=base, enable_batching=True,
                                  batching_overrides={k: v for k, v in BATCHING.items()
                                                      if k in BatchingParameters.__dataclass_fields__}))

    class InstantBatcher:
        def __init__(self, servable):
            self.servable, self.answers = servable, {}

        def submit(self, signature, inputs, loop=None):
            if signature not in self.answers:
                one = {n: a[:1] for n, a in inputs.items()}
                self.answers[signature] = self.servable.call(signature, one)
            n = next(iter(inputs.values())).shape[0]
            out = {k: np.repeat(v, n, axis=0) for k, v in self.answers[signature].items()}
            future = loop.create_future()
            future.set_result(out)
            return future

        def close(self):
            pass

    for name in app.manager.model_names():
        servable = app.manager.resolve(name, None, None)
        servable.batcher.close()
        servable.batcher = InstantBatcher(servable)
    serve(app, port=grpc_port, rest_api_port=rest_port, log_level="warning")


# ---------------------------------------------------------------------------- load generator

def run_client(coro):
    """The REST load generator runs on uvloop when there is one (uvicorn[standard] brings it): the
    client shares the 2 cores with the server, and the cheaper it is, the less it caps the server."""
    try:
        import uvloop
        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def http_request(method: str, path: str, body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def one_client(port: int, request: bytes, deadline: float, latencies: list, errors: list):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head[:40] + body[:200])
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


def point(clients: int, latencies: list, errors: list, elapsed: float) -> dict:
    """One measured point: requests/s, p50 and p99 latency, the first error."""
    latencies = sorted(latencies)

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")
    return {"clients": clients, "requests": len(latencies), "errors": len(errors), "rps": len(latencies) / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "first_error": errors[0].decode("latin1") if errors else ""}


async def drive(port: int, request: bytes, clients: int, seconds: float) -> dict:
    # A short warm-up (connections, thread pools, batch shapes) is not measured.
    await asyncio.gather(*[one_client(port, request, time.perf_counter() + 0.3, [], []) for _ in range(clients)])
    latencies, errors = [], []
    t0 = time.perf_counter()
    await asyncio.gather(*[one_client(port, request, t0 + seconds, latencies, errors) for _ in range(clients)])
    elapsed = time.perf_counter() - t0
    return point(clients, latencies, errors, elapsed)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], port: int, log: Path, cwd: Path = ROOT) -> subprocess.Popen:
    """A server process (cwd: the checkout whose `cnnapp` package `python -m cnnapp` runs), once it answers."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(log, "wb"), cwd=cwd)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {' '.join(cmd)}\n{log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(http_request("GET", "/v1/models/text"))
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"server did not start in 300 s: {log.read_text()[-2000:]}")


async def grpc_client(stub, request, deadline: float, latencies: list, errors: list):
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        try:
            await stub.Predict(request, timeout=30)
        except Exception as e:  # noqa: BLE001 - counted, shown in the table
            errors.append(str(e)[:200].encode())
        latencies.append(time.perf_counter() - t0)


async def drive_grpc(port: int, request, clients: int, seconds: float) -> dict:
    """`clients` concurrent Predict loops on one grpc.aio channel (as one client process would)."""
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        await asyncio.gather(*[grpc_client(stub, request, time.perf_counter() + 0.3, [], []) for _ in range(clients)])
        latencies, errors = [], []
        t0 = time.perf_counter()
        await asyncio.gather(*[grpc_client(stub, request, t0 + seconds, latencies, errors) for _ in range(clients)])
        elapsed = time.perf_counter() - t0
    return point(clients, latencies, errors, elapsed)


def load1() -> float:
    return round(os.getloadavg()[0], 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per point (median reported)")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)), help="concurrent clients per point")
    parser.add_argument("--protocols", default="rest,grpc", help="rest, grpc or both")
    parser.add_argument("--naive", action="store_true", help="also the naive model.predict server (REST)")
    parser.add_argument("--naive-server", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", action="store_true",
                        help="also a batching-on server whose model answers instantly (the protocol path's ceiling)")
    parser.add_argument("--instant-server", nargs=3, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile", action="store_true",
                        help="instead: profile the batching-on server's event-loop thread under 32 text clients")
    parser.add_argument("--costs", action="store_true",
                        help="instead: in-process cost of each step of one request (decode, signature call at "
                             "batch 1 and 32, encode), no HTTP")
    parser.add_argument("--batching", choices=["off", "on", "both"], default="both",
                        help="which cnnapp servers to run: batching off, on, or both (default)")
    parser.add_argument("--against", default=None, metavar="DIR",
                        help="also run the batching off/on servers from another checkout of cnnapp (say a `git "
                             "worktree` of an older commit), their rounds interleaved with this one's: an A/B under "
                             "the same load")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve-latest.json"))
    args = parser.parse_args()
    if args.naive_server is not None:
        return naive_server(args.naive_server)
    if args.instant_server is not None:
        rest_port, grpc_port, base = args.instant_server
        return instant_server(int(rest_port), int(grpc_port), base)
    if args.costs:
        return costs()
    clients_list = [int(c) for c in args.clients.split(",")]
    protocols = args.protocols.split(",")

    import numpy as np
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    export(work / "models")
    import tensorflow as tf
    png = tf.io.encode_png(np.random.default_rng(0).integers(0, 255, (28, 28, 1)).astype("uint8")).numpy()
    sentence = "a moving and beautifully acted film"
    requests = {
        ("rest", "image"): http_request("POST", "/v1/models/image:predict",
                                        json.dumps({"instances": [{"b64": base64.b64encode(png).decode()}]}).encode()),
        ("rest", "text"): http_request("POST", "/v1/models/text:predict",
                                       json.dumps({"instances": [sentence]}).encode()),
    }
    if "grpc" in protocols:
        from tensorflow_serving.apis import predict_pb2
        for model, name, value in (("image", "image_bytes", png), ("text", "sentences", sentence.encode())):
            req = predict_pb2.PredictRequest()
            req.model_spec.name = model
            req.inputs[name].CopyFrom(tf.make_tensor_proto([value]))
            requests[("grpc", model)] = req
    serve = [sys.executable, "-m", "cnnapp", "serve", "--model_base_path", str(work / "models"),
             "--file_system_poll_wait_seconds", "0"]
    batching = [a for k, v in BATCHING.items() for a in (f"--{k}", str(v))]
    if args.profile:
        return profile(serve + ["--enable_batching", *batching], requests[("rest", "text")], work, args.seconds)
    servers = {"batching off": serve, "batching on": serve + ["--enable_batching", *batching]}
    if args.batching != "both":
        servers = {f"batching {args.batching}": servers[f"batching {args.batching}"]}
    cwds = {}
    if args.against:
        against = Path(args.against).resolve()
        for label in list(servers):
            servers[f"{label} ({against.name})"] = servers[label]
            cwds[f"{label} ({against.name})"] = against
    if args.naive:
        servers["naive keras predict"] = [sys.executable, __file__, "--naive-server"]
    if args.ceiling:
        servers["model answered instantly"] = [sys.executable, __file__, "--instant-server"]
    # All servers run at once and the measurements alternate between them, several rounds per point,
    # reporting the median round: on a shared machine, load from other processes then hits every
    # server alike instead of whichever happened to be measured during a busy minute.
    procs, ports, grpc_ports = {}, {}, {}
    results = []
    started_load = os.getloadavg()
    try:
        for label, cmd in servers.items():
            ports[label] = free_port()
            if label.startswith("naive"):
                cmd = cmd + [str(ports[label])]
            else:
                grpc_ports[label] = free_port() if "grpc" in protocols else 0
                cmd = cmd + ([str(ports[label]), str(grpc_ports[label]), str(work / "models")]
                             if label == "model answered instantly"
                             else ["--rest_api_port", str(ports[label]), "--port", str(grpc_ports[label])])
            procs[label] = start(cmd, ports[label], work / f"{label.replace(' ', '_').replace('/', '_')}.log",
                                 cwds.get(label, ROOT))
        for protocol in protocols:
            for model in ("image", "text"):
                for clients in clients_list:
                    rounds: dict[str, list] = {label: [] for label in servers
                                               if protocol == "rest" or not label.startswith("naive")}
                    load_before = load1()
                    for _ in range(args.rounds):
                        for label in rounds:
                            if label.startswith("naive") and rounds[label]:
                                continue    # ~10 requests/s: one longer window is enough
                            seconds = args.seconds * (2 if label.startswith("naive") else 1)
                            if protocol == "rest":
                                r = run_client(drive(ports[label], requests[(protocol, model)], clients, seconds))
                            else:
                                r = asyncio.run(drive_grpc(grpc_ports[label], requests[(protocol, model)], clients,
                                                           seconds))
                            rounds[label].append(r)
                    load_after = load1()
                    for label, rs in rounds.items():
                        r = sorted(rs, key=lambda x: x["rps"])[len(rs) // 2]
                        results.append({"server": label, "protocol": protocol, "model": model, **r,
                                        "rounds_rps": [round(x["rps"], 1) for x in rs],
                                        "load1_before": load_before, "load1_after": load_after})
                        print(f"{protocol:4s} {label:20s} {model:5s} {clients:3d} clients: {r['rps']:8.1f} req/s  "
                              f"p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  errors {r['errors']}  "
                              f"rounds {[round(x['rps']) for x in rs]}  load {load_before}->{load_after}"
                              + (f"  ({r['first_error'][:100]!r})" if r["errors"] else ""), flush=True)
        load_before = load1()
        r = run_client(drive(ports[next(iter(servers))], http_request("GET", "/v1/models/text"), 32, args.seconds))
        results.append({"server": "HTTP ceiling (GET status)", "protocol": "rest", "model": "-", **r,
                        "load1_before": load_before, "load1_after": load1()})
        print(f"HTTP ceiling: GET status, 32 clients: {r['rps']:.1f} req/s p50 {r['p50_ms']:.1f} ms", flush=True)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "batching": BATCHING, "results": results,
                                          "loadavg_start": started_load, "loadavg_end": os.getloadavg(),
                                          "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    print(f"load average (1, 5, 15 min) at start {started_load}, at end {os.getloadavg()}")
    print(markdown(results))


def costs() -> None:
    """Where a request's time goes without HTTP: JSON+decode, the signature at batch 1 and 32, encode."""
    import timeit
    import numpy as np
    import tensorflow as tf
    from cnnapp.serving import ServerConfig, create_app, discover_models
    from cnnapp.serving.app import decode_request, encode_reply
    from cnnapp.serving.codec import parse_json
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    export(work / "models")
    app = create_app(ServerConfig(models=discover_models(work / "models")))
    png = tf.io.encode_png(np.random.default_rng(0).integers(0, 255, (28, 28, 1)).astype("uint8")).numpy()
    print(f"load average {os.getloadavg()}")
    for model, body in (("image", json.dumps({"instances": [{"b64": base64.b64encode(png).decode()}]}).encode()),
                        ("text", json.dumps({"instances": [SENTENCES[0]]}).encode())):
        s = app.manager.resolve(model, None, None)
        sig, inputs, form = decode_request("predict", s, parse_json(body), 10_000)
        outputs = s.call(sig, inputs)
        big = {k: np.concatenate([v] * 32) for k, v in inputs.items()}
        t_decode = timeit.timeit(lambda: decode_request("predict", s, parse_json(body), 10_000), number=2000) / 2000
        t_encode = timeit.timeit(lambda: encode_reply(outputs, form), number=2000) / 2000
        t_call1 = timeit.timeit(lambda: s.call(sig, inputs), number=200) / 200
        t_call32 = timeit.timeit(lambda: s.call(sig, big), number=100) / 100
        print(f"{model}: JSON+decode {t_decode * 1e6:.0f} us, encode {t_encode * 1e6:.0f} us, signature call "
              f"batch 1 {t_call1 * 1e6:.0f} us, batch 32 {t_call32 * 1e6:.0f} us ({t_call32 / 32 * 1e6:.0f} us/example)")
    app.close()


def profile(serve_cmd, request, work: Path, seconds: float) -> None:
    """cProfile the server's main thread (uvicorn's event loop: HTTP, routing, JSON, numpy) under load."""
    import pstats
    import signal
    port, prof = free_port(), work / "serve.prof"
    cmd = [sys.executable, "-m", "cProfile", "-o", str(prof)] + serve_cmd[1:] + ["--port", "0",
                                                                                "--rest_api_port", str(port)]
    proc = start(cmd, port, work / "profile.log")
    try:
        r = run_client(drive(port, request, 32, seconds))
        print(f"profiled: batching on, text, 32 clients: {r['rps']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, "
              f"{r['requests']} requests")
    finally:
        proc.send_signal(signal.SIGINT)     # uvicorn shuts down cleanly, then cProfile writes its file
        proc.wait(timeout=60)
    stats = pstats.Stats(str(prof))
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(30)


def markdown(results) -> str:
    lines = ["| protocol | server | model | clients | req/s | p50 ms | p99 ms | errors | load 1-min before/after |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {r['protocol']} | {r['server']} | {r['model']} | {r['clients']} | {r['rps']:.0f} | "
                     f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['errors']} | {r['load1_before']} / {r['load1_after']} |")
    by = {(r["protocol"], r["model"], r["clients"], r["server"]): r["rps"] for r in results}
    ceiling = any(server == "model answered instantly" for *_, server in by)
    ratios = ["", "| protocol | model | clients | batching on / off |" + (" model answered instantly / off |" if ceiling else ""),
              "|---|---|---:|---:|" + ("---:|" if ceiling else "")]
    for (protocol, model, clients, server), rps in by.items():
        off = by.get((protocol, model, clients, "batching off"))
        if server == "batching on" and off:
            instant = by.get((protocol, model, clients, "model answered instantly"))
            ratios.append(f"| {protocol} | {model} | {clients} | {rps / off:.2f}x |"
                          + (f" {instant / off:.2f}x |" if ceiling and instant else (" - |" if ceiling else "")))
    against = [(key, rps) for key, rps in by.items() if key[3].startswith("batching") and key[3].endswith(")")]
    if against:
        ratios += ["", "| protocol | server | model | clients | this checkout | against | this / against |",
                   "|---|---|---|---:|---:|---:|---:|"]
        for (protocol, model, clients, server), rps in against:
            label = server.rsplit(" (", 1)[0]
            this = by.get((protocol, model, clients, label))
            if this:
                ratios.append(f"| {protocol} | {label} | {model} | {clients} | {this:.0f} | {rps:.0f} | "
                              f"{this / rps:.2f}x |")
    return "\n".join(lines + ratios)


if __name__ == "__main__":
    main()
