"""Index and API latency with many recordings indexed (synthetic rows, bulk-inserted).

Lookup: ``newest_by_call_recording_id`` on random existing ids, the daemon's and the CLI's path.
API list: ``GET /api/v1/recordings`` (first page, 50 per page, newest first) through the real
FastAPI application in-process (no socket), with a real read token.
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.index_data import populate
from bench.loadgen import percentile
from srs.storage.index import RecordingIndex
from srs.storage.layout import DataLayout


def run_postgresql(
    rows: int, lookups: int = 2000, api_requests: int = 300, directory: Path | None = None
) -> dict[str, Any]:
    """The same figures on PostgreSQL: a throw-away server of this machine's PostgreSQL binaries
    (loopback TCP, fsync off: it measures queries, not the disk), started and removed here."""
    from bench.pgcluster import throwaway_cluster

    # the server's directory goes to the system temp dir: the postgres user must be able to reach
    # it, and the caller's scratch directory is private to the caller
    with throwaway_cluster() as cluster:
        url = cluster.create_database("srs_bench")
        result = run(rows, lookups, api_requests, directory, index_url=url)
    return {"backend": "postgresql", **result}


def run(
    rows: int,
    lookups: int = 2000,
    api_requests: int = 300,
    directory: Path | None = None,
    *,
    index_url: str | None = None,
) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from srs.api.app import create_app
    from srs.service.context import API_PREFIX
    from srs.service.exports import ExportManager
    from srs.service.recordings import RecordingService
    from srs.service.tokens import TokenService

    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        layout = DataLayout(Path(scratch))
        layout.ensure()
        index = RecordingIndex(index_url or layout.index_path, layout=layout)
        began = time.perf_counter()
        populate(index, rows)
        populate_s = time.perf_counter() - began
        rng = random.Random(3)
        samples = []
        for _ in range(lookups):
            crid = f"crid-{rng.randrange(rows // 2)}"
            t = time.perf_counter()
            found = index.newest_by_call_recording_id(crid)
            samples.append(time.perf_counter() - t)
            assert found is not None
        service = RecordingService(index, layout, layout.secret())
        tokens = TokenService(index)
        token, _ = tokens.create("read", "bench")
        app = create_app(service, tokens, ExportManager(service))
        api = []
        api_lookup = []
        with TestClient(app) as client:
            headers = {"Authorization": f"Bearer {token}"}
            for i in range(api_requests + 20):
                t = time.perf_counter()
                response = client.get(f"{API_PREFIX}/recordings", params={"max": 50}, headers=headers)
                elapsed = time.perf_counter() - t
                if response.status_code != 200:
                    raise RuntimeError(f"API list answered {response.status_code}: {response.text[:200]}")
                if i >= 20:
                    api.append(elapsed)
                crid = f"crid-{rng.randrange(rows // 2)}"
                t = time.perf_counter()
                response = client.get(
                    f"{API_PREFIX}/recordings", params={"call_recording_id": crid}, headers=headers
                )
                if i >= 20:
                    api_lookup.append(time.perf_counter() - t)
        index.close()
    ms = 1000.0
    return {
        "rows": rows,
        "populate_s": round(populate_s, 1),
        "lookup_by_call_recording_id_ms_p50": round((percentile(samples, 50) or 0) * ms, 3),
        "lookup_by_call_recording_id_ms_p99": round((percentile(samples, 99) or 0) * ms, 3),
        "api_list_ms_p50": round((percentile(api, 50) or 0) * ms, 2),
        "api_list_ms_p99": round((percentile(api, 99) or 0) * ms, 2),
        "api_lookup_by_call_recording_id_ms_p99": round((percentile(api_lookup, 99) or 0) * ms, 2),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import os

    parser = argparse.ArgumentParser(prog="python -m bench.index", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--api-requests", type=int, default=300)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args(argv)
    began = os.getloadavg()
    if args.backend == "postgresql":
        result = run_postgresql(args.rows, args.lookups, args.api_requests)
    else:
        result = {"backend": "sqlite", **run(args.rows, args.lookups, args.api_requests)}
    result["load_average_at_start"] = [round(x, 2) for x in began]
    result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
