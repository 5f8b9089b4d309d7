"""The benchmark suite keeps working: every scenario, every driver, tiny sizes.

No timing is asserted; speed is what the benchmark reports, not what it tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from temporalio.converter import StorageDriverStoreContext

from benchmarks._cli import SCENARIOS, main
from benchmarks._drivers import DRIVERS
from benchmarks._workloads import SMALL_VALUE_MIX, small_payload_workload, to_payload
from benchmarks.doc_local import DocLocalDiskDriver


@pytest.mark.integration  # the S3 drivers run on moto
def test_quick_run_covers_every_scenario_and_driver(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenarios = ",".join(SCENARIOS)
    assert main(["--quick", "--repeat", "1", "--scenarios", scenarios, "--out", str(tmp_path)]) == 0
    report = capsys.readouterr()
    document = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")

    ran = {(r["scenario"], r["driver"]): r for r in document["results"]}
    for scenario in SCENARIOS:
        if scenario == "profile":
            continue
        for driver in DRIVERS:
            result = ran[(scenario, driver)]
            assert result["error"] is None, (scenario, driver, result["error"])
            median = result["median"]
            assert median["wall_s"] > 0
            if driver != "floor":  # the floor driver does no I/O by design
                assert median["total_requests"] > 0
                assert median["objects_at_rest"] > 0
            if scenario != "e2e":
                assert median["reference_bytes_per_payload"] > 0
            assert f"| {driver} |" in report.out
    assert document["meta"]["machine"]["cores"] >= 1
    assert document["meta"]["versions"]["temporalio"]
    steps = document["profile"]["rows"][0]["steps_us"]
    assert steps["store total"] > 0
    assert steps["floor (blake3+zstd)"] > 0
    assert "Goals" in report.out
    assert "/" in report.err  # progress lines go to stderr


@pytest.mark.integration  # the S3 drivers run on moto
def test_simulated_s3_latency_is_recorded_and_announced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(
        _run_json(
            tmp_path, "--scenarios", "large-json", "--drivers", "sdk-s3", "--s3-latency-ms", "5"
        )
    )
    assert data["meta"]["s3_latency_ms"] == 5
    assert data["results"][0]["error"] is None
    assert "5 ms of simulated round-trip time" in capsys.readouterr().out


def test_fanout_dedups_for_casstore_but_not_for_the_doc_style_driver(tmp_path: Path) -> None:
    data = json.loads(
        _run_json(tmp_path, "--scenarios", "fanout", "--drivers", "casstore-local,doc-local")
    )
    by_driver = {r["driver"]: r["median"] for r in data["results"]}
    assert by_driver["casstore-local"]["objects_at_rest"] == 1
    assert by_driver["doc-local"]["objects_at_rest"] == by_driver["doc-local"]["payloads"]


def test_cold_reader_reads_each_distinct_object_from_storage(tmp_path: Path) -> None:
    data = json.loads(
        _run_json(
            tmp_path, "--scenarios", "threshold0,threshold0-cold", "--drivers", "casstore-local"
        )
    )
    warm, cold = (r["median"] for r in data["results"])
    assert warm["requests"].get("get", 0) == 0  # the writer's own cache serves its reads
    assert cold["requests"]["get"] > 0
    assert cold["requests"]["get"] <= cold["objects_at_rest"]


def _run_json(tmp_path: Path, *args: str) -> str:
    assert main(["--quick", "--repeat", "1", "--out", str(tmp_path), *args]) == 0
    return (tmp_path / "results.json").read_text()


def test_small_workload_repeats_values_within_a_workflow() -> None:
    workflows = small_payload_workload(500, per_workflow=50)
    assert sum(len(w.payloads) for w in workflows) == 500
    assert len(workflows) == 10
    distinct = {p.SerializeToString() for p in workflows[0].payloads}
    # About half the mix is repeats (null, statuses, ids, the reference record).
    assert len(distinct) < 0.7 * len(workflows[0].payloads)
    assert abs(sum(SMALL_VALUE_MIX.values()) - 1) < 1e-9


async def test_doc_style_driver_writes_one_file_per_store_and_reads_it_back(
    tmp_path: Path,
) -> None:
    driver = DocLocalDiskDriver(tmp_path)
    payload = to_payload({"order": 42})
    claims = await driver.store(StorageDriverStoreContext(), [payload, payload])
    assert claims[0].claim_data["path"] != claims[1].claim_data["path"]
    assert len(list(tmp_path.iterdir())) == 2
    assert await driver.retrieve(None, claims) == [payload, payload]  # type: ignore[arg-type]
    assert driver.traffic.requests == {"write": 2, "read": 2}


def test_unknown_scenario_is_rejected_naming_the_choices(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--scenarios", "fanout,nope"])
    assert "nope" in capsys.readouterr().err


def test_module_entry_point_shows_the_options() -> None:
    root = Path(__file__).resolve().parent.parent
    shown = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    for option in ("--scenarios", "--drivers", "--repeat", "--quick", "--s3-endpoint"):
        assert option in shown.stdout


def _run_module(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module argv`` from the checkout; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr
    return result


@pytest.mark.integration  # a Temporal dev server
def test_gc_scale_runs_and_checks_what_gc_would_collect() -> None:
    result = _run_module("benchmarks.gc_scale", "--workflows", "20", "--payloads", "3", "--json")
    report = json.loads(result.stdout)
    assert report["mark"]["executions"] == 18  # two of the 20 deleted from Temporal
    assert report["mark"]["objects"] == 18 * 3
    assert report["gc"]["json"]["kept"]["referenced"]["objects"] == 18 * 3
    assert report["verify"]["json"]["ok"] is True
    assert report["verify"]["json"]["good"] == 20 * 3


def _procs(*argv: str, tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "procs.json"
    options = ["--latency-ms", "0", "--json", str(out), "--logs", str(tmp_path / "logs")]
    result = _run_module("benchmarks.procs", *argv, *options)
    assert "| procs | latency | driver |" in result.stdout
    runs: list[dict[str, Any]] = json.loads(out.read_text())
    return runs


@pytest.mark.integration  # a Temporal dev server, rclone serve s3 and worker processes
def test_procs_fans_out_across_worker_processes_and_reads_once_per_process(
    tmp_path: Path,
) -> None:
    runs = _procs(
        *("--scenario", "fanout", "--procs", "2", "--drivers", "sdk-s3,casstore"),
        *("--activities", "20", "--size", "400000"),
        tmp_path=tmp_path,
    )
    by_driver = {r["driver"]: r for r in runs}
    assert set(by_driver) == {"sdk-s3", "casstore"}
    for run in runs:
        workers = run["workers"]
        assert len(workers) == 2
        assert all(w["cpu_s"] > 0 and w["peak_rss_bytes"] > 0 for w in workers)
    sdk_gets = sum(w["requests"].get("GetObject", 0) for w in by_driver["sdk-s3"]["workers"])
    assert sdk_gets >= 20  # one read per activity
    # Each worker process reads the input at most once, whatever it runs.
    cas_gets = [w["requests"].get("get", 0) for w in by_driver["casstore"]["workers"]]
    assert all(gets <= 1 for gets in cas_gets), cas_gets


@pytest.mark.integration  # a Temporal dev server, rclone serve s3 and a worker process
def test_procs_threshold0_checks_every_workflow_on_the_aioboto3_client(tmp_path: Path) -> None:
    [run] = _procs(
        *("--scenario", "threshold0", "--procs", "1", "--drivers", "casstore-aioboto3"),
        *("--workflows", "4"),
        tmp_path=tmp_path,
    )
    [worker] = run["workers"]
    # 4 workflows x 9 activities: each result and argument is stored by a worker.
    assert sum(worker["requests"].values()) >= 4 * 9, worker["requests"]
