"""Lineage benchmark: append latency (local lake and SeaweedFS S3 with Object Lock) and verification
time of chains up to 10,000 manifests, against the previous implementation (the JSON-lines log of
``trialsynth/lineage.py`` before the audit-lineage issue, read from git history) timed in the same run.

Appends are timed at the start of a chain and at the end of an ``--n`` long one (O(1): the same). To
build the long chains quickly, ``os.fsync`` is skipped while they are built (only then; every timed
append fsyncs), and the S3 chain is built locally and uploaded with Object Lock by 16 threads.
Verification is the full check (links, hashes, signatures, checkpoint, retention on S3, outputs).

Rerun: .venv/bin/python benchmarks/bench_lineage.py [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from unittest import mock

from trialsynth.hashing import sha256_file
from trialsynth.lineage import (
    FileSigner,
    KeyRing,
    LocalLineageStore,
    S3LineageStore,
    checkpoint_verified,
    file_dataset,
    put_locked_object,
    verify_store,
)
from trialsynth.lineage.store import s3_client
from trialsynth.settings import PROJECT_ROOT

OUT = Path(__file__).parent / "results" / "lineage.md"
TIMED_APPENDS = 100


def reference_module(work: Path):
    """The pre-issue trialsynth/lineage.py (JSON lines, whole-log re-read per append), from git."""
    commit = subprocess.run(["git", "rev-list", "-n", "1", "HEAD", "--", "trialsynth/lineage.py"], cwd=PROJECT_ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    for rev in (commit, f"{commit}^"):
        shown = subprocess.run(["git", "show", f"{rev}:trialsynth/lineage.py"], cwd=PROJECT_ROOT, capture_output=True)
        if shown.returncode == 0:
            path = work / "lineage_reference.py"
            path.write_bytes(shown.stdout)
            spec = importlib.util.spec_from_file_location("lineage_reference", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules["lineage_reference"] = module  # dataclasses look their module up there
            spec.loader.exec_module(module)
            return module, rev[:12]
    raise RuntimeError("the previous trialsynth/lineage.py is not in this checkout's git history")


def record(i: int, output: dict) -> dict:
    return {"asset_key": f"bronze/d{i % 10}", "input_sha256s": {"dm.csv": f"{i:064x}"}, "outputs": [output],
            "code_version": "bench", "parameters": {"i": i, "rows_passed": 1000 + i}, "seed": i}


@contextmanager
def no_fsync():
    with mock.patch.object(os, "fsync", lambda fd: None):
        yield


def timed_appends(store, tenant: str, study: str, start: int, output: dict, n: int = TIMED_APPENDS) -> list[float]:
    times = []
    for i in range(start, start + n):
        t = time.perf_counter()
        store.append(tenant, study, record(i, output))
        times.append(time.perf_counter() - t)
    return times


def ms(times: list[float]) -> str:
    return f"{1000 * statistics.median(times):.1f} ms (p95 {1000 * sorted(times)[int(0.95 * len(times))]:.1f})"


def reference_append_ms(ref, work: Path, length: int) -> float:
    """Median ms of the old append once its log holds ``length`` records."""
    store = ref.LocalLineageStore(work / f"ref-{length}")
    path = store.path("t", "s")
    path.parent.mkdir(parents=True, exist_ok=True)
    prev, lines = None, []
    for i in range(length):
        prev = ref.chain_record(prev, {"asset_key": f"a{i}", "output_sha256": "ab" * 32, "parameters": {"i": i}, "seed": i})
        lines.append(ref.json.dumps(prev, sort_keys=True))
    path.write_text("".join(line + "\n" for line in lines))
    times = []
    for i in range(20):
        t = time.perf_counter()
        store.append("t", "s", {"asset_key": "x", "output_sha256": "ab" * 32, "parameters": {"i": i}})
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def verify_seconds(store, ring: KeyRing) -> tuple[float, object]:
    t = time.perf_counter()
    report = verify_store(store, ring)
    return time.perf_counter() - t, report


def upload_locked(local: LocalLineageStore, s3: S3LineageStore, study: str) -> float:
    keys = sorted(local.backend.scan(f"lineage/bench/{study}/"))  # its key is already published on S3
    t = time.perf_counter()

    def put(key: str) -> None:
        data = local.backend.path(key).read_bytes()
        if key.endswith("HEAD.json"):
            s3.backend.put_mutable(key, data)
        else:
            put_locked_object(s3.backend.client, s3.backend.bucket, key, data, s3.backend.retention_days)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, keys))
    return time.perf_counter() - t


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="chains of 2,000 (local) / 1,000 (S3) manifests")
    ap.add_argument("--no-s3", action="store_true", help="skip SeaweedFS")
    args = ap.parse_args()
    sizes = [500, 1000, 2000] if args.quick else [1000, 2500, 5000, 10000]
    s3_sizes = [250, 1000] if args.quick else [2500, 10000]
    load_start = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="ts-bench-lineage-"))
    ref, ref_rev = reference_module(work)
    signer = FileSigner(work / "keys" / "lineage.pem")
    ring = KeyRing({signer.key_id})
    out_file = work / "bronze.parquet"
    out_file.write_bytes(os.urandom(1 << 20))
    output = file_dataset(out_file, sha256_file(out_file))
    rows = []

    # -- local appends: at the start of a chain and at the end of a long one --------------------------
    local = LocalLineageStore(work / "lake", signer)
    first = timed_appends(local, "bench", "LOCAL", 0, output)
    verify_rows, built = [], TIMED_APPENDS
    for size in sizes:
        with no_fsync():
            for i in range(built, size):
                local.append("bench", "LOCAL", record(i, output))
        built = size
        seconds, report = verify_seconds(local, ring)
        assert report.ok, report.describe()
        ref_records = local.read("bench", "LOCAL")  # reference verify: the old hash-only walk, same count
        ref_chain, prev = [], None
        for r in ref_records:
            prev = ref.chain_record(prev, {k: r[k] for k in ("asset_key", "input_sha256s", "output_sha256", "code_version",
                                                             "parameters", "seed", "time")})
            ref_chain.append(prev)
        t = time.perf_counter()
        assert ref.verify_chain(ref_chain).ok
        ref_s = time.perf_counter() - t
        verify_rows.append((size, seconds, ref_s))
        print(f"local verify {size}: {seconds:.2f} s (reference {ref_s:.3f} s)", file=sys.stderr)
    last = timed_appends(local, "bench", "LOCAL", built, output)
    checkpoint_verified(local, verify_store(local, ring))
    with_cp, report = verify_seconds(local, ring)
    assert report.ok and report.partitions[0].checkpoints == 1
    ref_first, ref_last = reference_append_ms(ref, work, 0), reference_append_ms(ref, work, sizes[-1])
    rows.append(("append, local, chain of 0", ms(first), f"{ref_first:.2f} ms", f"{ref_first / (1000 * statistics.median(first)):.2f}"))
    rows.append((f"append, local, chain of {built:,}", ms(last), f"{ref_last:.2f} ms", f"{ref_last / (1000 * statistics.median(last)):.2f}"))
    for size, seconds, ref_s in verify_rows:
        rows.append((f"verify, local, {size:,} manifests", f"{seconds:.2f} s ({1e6 * seconds / size:.0f} µs/manifest)",
                     f"{ref_s:.3f} s", f"{ref_s / seconds:.3f}"))
    rows.append((f"verify, local, {built + TIMED_APPENDS:,} manifests + checkpoint", f"{with_cp:.2f} s", "", ""))

    # -- S3 (SeaweedFS, Object Lock COMPLIANCE) ---------------------------------------------------
    if not args.no_s3:
        sys.path.insert(0, str(PROJECT_ROOT))
        from infra.stack.seaweedfs import start_seaweedfs, stop_seaweedfs

        seaweed = start_seaweedfs(work / "seaweedfs")
        try:
            seaweed.make_bucket("lineage-bench", object_lock=True)
            # the product's client (connection pool sized for the verifier's threads), credentials from env
            os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = seaweed.access_key, seaweed.secret_key
            s3 = S3LineageStore(s3_client(seaweed.endpoint), "lineage-bench", 1, signer)
            s3_first = timed_appends(s3, "bench", "S3", 0, output)
            staging = LocalLineageStore(work / "staging", signer)
            s3_verify = []
            for n in s3_sizes:
                with no_fsync():
                    for i in range(n):
                        staging.append("bench", f"S3N{n}", record(i, output))
                upload_s = upload_locked(staging, s3, f"S3N{n}")
                print(f"S3: uploaded {n} manifests with Object Lock in {upload_s:.0f} s", file=sys.stderr)
                t, cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds(seaweed.pid)
                report = verify_store(s3, ring, partitions=[("bench", f"S3N{n}")])
                s3_verify.append((n, time.perf_counter() - t, time.process_time() - cpu, cpu_seconds(seaweed.pid) - server_cpu))
                assert report.ok and report.partitions[0].manifests == n, report.describe()
                print(f"S3 verify {n}: {s3_verify[-1][1]:.1f} s", file=sys.stderr)
            s3_n = s3_sizes[-1]
            s3_last = timed_appends(s3, "bench", f"S3N{s3_n}", s3_n, output)
            rows.append(("append, S3, chain of 0", ms(s3_first), "", ""))
            rows.append((f"append, S3, chain of {s3_n:,}", ms(s3_last), "", ""))
            for n, seconds, cpu, server_cpu in s3_verify:
                rows.append((f"verify, S3, {n:,} manifests", f"{seconds:.1f} s ({1e6 * seconds / n:.0f} µs/manifest; CPU: "
                                                             f"client {cpu:.1f} s, SeaweedFS {server_cpu:.1f} s)", "", ""))
        finally:
            stop_seaweedfs(work / "seaweedfs")

    per = [1e6 * s / n for n, s, _ in verify_rows]
    load_end = os.getloadavg()
    loads = f"load average {load_start[0]:.1f} at the start, {load_end[0]:.1f} at the end (1 min; {os.cpu_count()} cores)"
    table = "\n".join(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(f"""## Lineage: signed manifests, append and verification

Machine: {os.cpu_count()} CPU cores shared ({platform.processor() or platform.machine()}), {date.today().isoformat()}, {loads}.
Rerun: `.venv/bin/python benchmarks/bench_lineage.py{' --quick' if args.quick else ''}`.
Reference: the JSON-lines log before the audit-lineage issue (`trialsynth/lineage.py` at {ref_rev}): unsigned,
re-reads the whole log on every append, verifies hashes and links only. Ratio = reference time / ours
(> 1: ours is faster). Ours does more: OpenLineage RunEvent, Ed25519 signature, two fsynced write-once
objects per append (manifest + sequence claim); verification also checks signatures, claims, checkpoints,
outputs against the lake and, on S3, Object Lock retention and object versions. S3 = SeaweedFS 4.48
(`weed mini`) on this machine, COMPLIANCE retention on every object.

| operation | trialsynth | reference | ratio |
|---|---|---|---|
{table}

Verification is linear in the chain length: {', '.join(f'{p:.0f}' for p in per)} µs per manifest at
{', '.join(f'{n:,}' for n, _, _ in verify_rows)} manifests (local store).
An append makes the same requests whatever the chain length (S3: 7 requests, no listing;
tests/test_lineage_chain.py counts them); differences between the two append rows are the shared
machine's load. S3 verification of a partition = one paged ListObjectVersions (manifests, sequence claims,
checkpoints: versions and delete markers) + one GET per manifest, which returns its bytes and its Object
Lock mode and retain-until together (16 threads; a claim is read only where its sequence has no or
several manifests). SeaweedFS and the client share the same cores: at 2 cores the time is bound by
per-request CPU, so wall time moves with the machine's load; the CPU seconds of the client (this process)
and of SeaweedFS are the load-independent cost (on an idle machine wall ≈ their sum / cores).
""")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
