#!/usr/bin/env python3
"""The cluster throughput and tail-latency targets of docs/benchmarks.md, in one run.

    bench/scripts/targets.py --node-bin DIR/quorumkv-node --bench-bin DIR/quorumkv-bench \
        [--before-node-bin OLD/quorumkv-node] [--rounds 3] [--html docs/bench-report.html]

Every run starts `quorumkv-node dev` (3 nodes in one process, N=3) on free loopback
ports with a fresh data directory, loads 100,000 records of 1 KiB, and drives it with
`quorumkv-bench run --raw` (64 clients, r=w=2, YCSB's scrambled zipfian keys):

1. Throughput, closed loop, 15 s after 2 s of warm-up: workload A (`dw=0`), C, and A with
   `dw=1`, in that order, on one cluster per round.
2. Tail: workload A in open loop at half the round's A throughput for 60 s (memtable
   flushes fall inside the window), each round on a fresh cluster; with
   --before-node-bin the same run against that binary too, interleaved.

Rounds are interleaved (round 1 of everything, then round 2, ...). Prints one JSON line
per run and a summary with medians; --html keeps the report of the middle round's tail run.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

from loopback import free_base_port, status, wait

RECORDS = 100_000


class Cluster:
    def __init__(self, node_bin, workdir):
        self.base = free_base_port(6)
        self.nodes = [f"127.0.0.1:{self.base + 2 * i}" for i in range(3)]
        self.log = open(os.path.join(workdir, "node.log"), "a")
        data = tempfile.mkdtemp(prefix="data-", dir=workdir)
        self.proc = subprocess.Popen([node_bin, "dev", "--base-port", str(self.base), "--data-dir", data],
                                     stdout=self.log, stderr=self.log)
        for a in self.nodes:
            wait(f"{a} sees 3 members up",
                 lambda a=a: sum(m["state"] == "up" for m in status(a)["members"]) == 3, 30)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def bench(args, cluster, extra, html=None):
    cmd = [args.bench_bin, "run", "--raw", "--records", str(RECORDS), "--distribution", "zipfian",
           "--r", "2", "--w", "2", "--json"]
    for a in cluster.nodes:
        cmd += ["--node", a]
    cmd += extra
    if html:
        cmd += ["--html", html]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def op_p99_ms(report, name):
    for op_name, op in report["operations"].items():
        if op_name == name:
            return op["latency"]["p99_us"] / 1000
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node-bin", required=True)
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--before-node-bin", help="also run the tail against this build")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--html", help="where to keep the middle round's tail report")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()

    results = []
    with tempfile.TemporaryDirectory(prefix="qkv-targets-", dir=os.environ.get("TMPDIR")) as work:
        for rnd in range(1, args.rounds + 1):
            a_max = None
            if not args.skip_throughput:
                c = Cluster(args.node_bin, work)
                try:
                    bench(args, c, ["--workload", "c", "--load", "always", "--duration", "0s", "--warmup", "0s"])
                    for label, extra in [("A", ["--workload", "a", "--dw", "0"]),
                                         ("C", ["--workload", "c"]),
                                         ("A dw=1", ["--workload", "a", "--dw", "1"])]:
                        r = bench(args, c, extra + ["--load", "never", "--duration", "15s", "--warmup", "2s"])
                        row = {"round": rnd, "run": label, "ops_per_sec": round(r["ops_per_sec"]),
                               "errors": r["errors"]}
                        if label == "A":
                            a_max = r["ops_per_sec"]
                        print(json.dumps(row), flush=True)
                        results.append(row)
                finally:
                    c.stop()
            rate = round((a_max or 20_000) / 2)
            builds = [("after", args.node_bin)]
            if args.before_node_bin:
                builds.append(("before", args.before_node_bin))
            for build, node_bin in builds:
                c = Cluster(node_bin, work)
                try:
                    bench(args, c, ["--workload", "c", "--load", "always", "--duration", "0s", "--warmup", "0s"])
                    html = args.html if (build == "after" and rnd == (args.rounds + 1) // 2) else None
                    r = bench(args, c, ["--workload", "a", "--load", "never", "--rate", str(rate),
                                        "--duration", "60s", "--warmup", "2s"], html)
                finally:
                    c.stop()
                row = {"round": rnd, "run": f"tail A {build}", "rate": rate, "errors": r["errors"],
                       "read_p99_ms": op_p99_ms(r, "read"), "update_p99_ms": op_p99_ms(r, "update"),
                       "all_p99_ms": r["latency"]["p99_us"] / 1000, "max_ms": r["latency"]["max_us"] / 1000}
                print(json.dumps(row), flush=True)
                results.append(row)

    print("\nsummary (median over rounds)")
    for run in dict.fromkeys(r["run"] for r in results):
        rows = [r for r in results if r["run"] == run]
        if "ops_per_sec" in rows[0]:
            vals = [r["ops_per_sec"] for r in rows]
            print(f"{run:16} ops/s {vals} median {statistics.median(vals):,.0f}")
        else:
            for k in ["read_p99_ms", "update_p99_ms", "all_p99_ms", "max_ms"]:
                vals = [r[k] for r in rows if r[k] is not None]
                if vals:
                    print(f"{run:16} {k:14} {vals} median {statistics.median(vals):.2f}")
    a = {r["round"]: r["ops_per_sec"] for r in results if r["run"] == "A"}
    d = {r["round"]: r["ops_per_sec"] for r in results if r["run"] == "A dw=1"}
    ratios = [d[k] / a[k] for k in a if k in d]
    if ratios:
        print(f"A dw=1 / dw=0 per round {[round(x, 3) for x in ratios]} median {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
