"""What SSE-C costs the S3 lake: the lake store writing and reading the objects of a partition with the
tenant's SSE-C key on every request (``lake.s3_sse_c: true``, boto3) against the same store without it
(``false``: pyarrow's S3 filesystem, the implementation before SSE-C), on one SeaweedFS started here.

Both sides write and read the same objects (``--objects`` Parquet-sized blobs of ``--kib`` KiB, random
bytes, keys ``acme/S1/bronze/part<i>.parquet``), one after another as a publish does, and the SSE-C side
also pays its first-use key unwrap once per store. Rounds alternate the two sides; medians are reported.

Rerun: .venv/bin/python benchmarks/bench_lake_sse_c.py [--objects 200] [--kib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from the repository root

from infra.stack.seaweedfs import start_seaweedfs, stop_seaweedfs  # noqa: E402
from trialsynth.settings import Settings  # noqa: E402
from trialsynth.storage import open_lake_store  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "lake_sse_c.md"


def _timed(settings: Settings, blobs: list[bytes]) -> tuple[float, float, float]:
    """Seconds to write then to read every blob through a fresh store of ``settings``, and of the read
    side, the seconds its first request took (client, and with SSE-C the tenant key's GET and unwrap)."""
    store = open_lake_store(settings)
    start = time.perf_counter()
    for i, blob in enumerate(blobs):
        store.write_bytes(f"acme/S1/bronze/part{i}.parquet", blob)
    written = time.perf_counter()
    store = open_lake_store(settings)  # a fresh store: the key is unwrapped again, as in a new run
    for i, blob in enumerate(blobs):
        assert store.read_bytes(f"acme/S1/bronze/part{i}.parquet") == blob
        if i == 0:
            first = time.perf_counter() - written
    return written - start, time.perf_counter() - written, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=200)
    parser.add_argument("--kib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    blobs = [os.urandom(args.kib * 1024) for _ in range(args.objects)]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-sse-c-") as tmp:
        weed = start_seaweedfs(Path(tmp) / "weed", buckets=())
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = weed.access_key, weed.secret_key
        try:
            times: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
            for round_ in range(args.rounds):
                for sse_c in (False, True):
                    bucket = f"bench-{uuid.uuid4().hex[:10]}"
                    weed.make_bucket(bucket)
                    settings = Settings(data_dir=Path(tmp) / f"data-{round_}-{sse_c}", warehouse={"target": "clickhouse"},
                                        lake={"store": "s3", "s3_bucket": bucket, "s3_endpoint_url": weed.endpoint,
                                              "s3_sse_c": sse_c})
                    times[sse_c].append(_timed(settings, blobs))
                    print(f"round {round_ + 1} sse_c={sse_c}: write {times[sse_c][-1][0]:.2f} s, "
                          f"read {times[sse_c][-1][1]:.2f} s", flush=True)
        finally:
            stop_seaweedfs(Path(tmp) / "weed")
    load_after = os.getloadavg()[0]
    med = {k: tuple(statistics.median(t[i] for t in v) for i in range(3)) for k, v in times.items()}
    mib = args.objects * args.kib / 1024
    rows = [f"| {name} | {med[k][0]:.2f} | {med[k][1]:.2f} | {med[k][2]:.3f} | {mib / med[k][0]:.1f} | "
            f"{mib / med[k][1]:.1f} | {1000 * (med[k][1] - med[k][2]) / (args.objects - 1):.1f} |"
            for name, k in (("plain (pyarrow S3, `s3_sse_c: false`)", False),
                            ("SSE-C, tenant key (boto3, `s3_sse_c: true`)", True))]
    text = "\n".join([
        "# S3 lake: SSE-C with the tenant's key vs plain objects",
        "",
        "Rerun: `.venv/bin/python benchmarks/bench_lake_sse_c.py "
        f"--objects {args.objects} --kib {args.kib} --rounds {args.rounds}`  ",
        f"Date: {date.today()}; machine: {os.cpu_count()} CPU cores ({platform.machine()}), shared; 1-minute load "
        f"average {load_before:.1f} before and {load_after:.1f} after. SeaweedFS 4.48 (`weed mini`) on 127.0.0.1.",
        "",
        f"{args.objects} objects of {args.kib} KiB ({mib:.0f} MiB) written one after another, then read back by a "
        f"fresh store (the SSE-C side unwraps the tenant's key once per store); median of {args.rounds} rounds, "
        "sides alternating.",
        "",
        "| store | write (s) | read (s) | of which first read (s) | write MiB/s | read MiB/s | each later read (ms) |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"**SSE-C / plain: write {med[True][0] / med[False][0]:.2f}x, read {med[True][1] / med[False][1]:.2f}x.**",
        "",
    ])
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
