#!/usr/bin/env python3
"""Request tails while a bucket of a million keys is listed (docs/benchmarks.md).

    bench/scripts/listing_p99.py --bin-dir DIR [--records 1000000] [--rate 4000] \
        [--duration 30] [--rounds 3] [--list-rates 100000,25000]

Starts `quorumkv-node dev` (3 nodes in one process, N=3) on free loopback ports with a
fresh data directory, loads `--records` records of `--value-size` bytes into bucket
`bench` (blind writes, w=2) and lets compactions settle; then, for each round, restarts
the cluster on that data and drives YCSB workload A at a fixed `--rate` (open loop,
r=w=2, zipfian keys over the records) for `--duration` seconds:

1. alone;
2. for each of `--list-rates`, with the nodes' `list_keys_per_second` set to it, while
   `quorumkv list bench --page-size 1000` lists the whole bucket again and again through
   the first node (its output counted, not kept).

Prints one JSON line per run (read/update p99, max, errors, and for the listing runs the
keys listed, the listings finished and their keys per second) and the medians.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time

from loopback import free_base_port, status, wait


def bench(args, nodes, extra):
    cmd = [os.path.join(args.bin_dir, "quorumkv-bench"), "run", "--raw", "--records", str(args.records),
           "--value-size", str(args.value_size), "--r", "2", "--w", "2", "--json"]
    for a in nodes:
        cmd += ["--node", a]
    out = subprocess.run(cmd + extra, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def op_p99_ms(report, name):
    op = report["operations"].get(name)
    return op["latency"]["p99_us"] / 1000 if op else None


class Lister(threading.Thread):
    """Lists the bucket through one node, over and over, until stopped."""

    def __init__(self, cli, node, expected):
        super().__init__(daemon=True)
        self.cli, self.node, self.expected = cli, node, expected
        self.stop = threading.Event()
        self.keys = 0
        self.full = []  # seconds each complete listing took
        self.errors = []

    def run(self):
        while not self.stop.is_set():
            started = time.time()
            proc = subprocess.Popen([self.cli, "--node", self.node, "--timeout", "30000", "list", "bench",
                                     "--page-size", "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            n = 0
            for _ in proc.stdout:
                n += 1
                if self.stop.is_set():
                    proc.terminate()
                    break
            proc.wait()
            self.keys += n
            if proc.returncode == 0 and n == self.expected:
                self.full.append(time.time() - started)
            elif not self.stop.is_set():
                self.errors.append(f"exit {proc.returncode} after {n} keys: {proc.stderr.read()[:300]!r}")


class Cluster:
    """`quorumkv-node dev` on `base`, data under `data`; `list_rate` sets list_keys_per_second."""

    def __init__(self, args, base, data, log, list_rate=None):
        env = dict(os.environ)
        if list_rate:
            env["QUORUMKV_LIST_KEYS_PER_SECOND"] = str(list_rate)
        self.nodes = [f"127.0.0.1:{base + 2 * i}" for i in range(3)]
        self.proc = subprocess.Popen([os.path.join(args.bin_dir, "quorumkv-node"), "dev", "--base-port", str(base),
                                      "--data-dir", data], stdout=log, stderr=log, env=env)
        for a in self.nodes:
            wait(f"{a} sees 3 members up",
                 lambda a=a: sum(m["state"] == "up" for m in status(a)["members"]) == 3, 60)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--rate", type=int, default=4000)
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settle", type=int, default=60, help="seconds to wait after loading (compactions)")
    ap.add_argument("--list-rates", default="100000",
                    help="comma-separated list_keys_per_second values to list at (0: the node's default)")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="listing-p99-")
    base = free_base_port(6)
    data = os.path.join(work, "data")
    log = open(os.path.join(work, "node.log"), "a")
    c = Cluster(args, base, data, log)
    try:
        started = time.time()
        bench(args, c.nodes, ["--workload", "put", "--load", "always", "--duration", "0s", "--warmup", "0s"])
        print(json.dumps({"loaded": args.records, "seconds": round(time.time() - started, 1)}), flush=True)
        time.sleep(args.settle)
    finally:
        c.stop()
    kinds = [("alone", None)] + [(f"listing at {r}/s per node", int(r) or None) for r in args.list_rates.split(",")]
    runs = {kind: [] for kind, _ in kinds}
    for rnd in range(args.rounds):
        for kind, rate in kinds:
            c = Cluster(args, base, data, log, rate)
            try:
                time.sleep(5)
                lister = None
                if kind != "alone":
                    lister = Lister(os.path.join(args.bin_dir, "quorumkv"), c.nodes[0], args.records)
                    lister.start()
                    time.sleep(2)
                r = bench(args, c.nodes, ["--workload", "a", "--load", "never", "--rate", str(args.rate),
                                          "--duration", f"{args.duration}s", "--warmup", "2s"])
                row = {"round": rnd + 1, "kind": kind, "ops_per_s": round(r["ops_per_sec"]),
                       "read_p99_ms": op_p99_ms(r, "read"), "update_p99_ms": op_p99_ms(r, "update"),
                       "max_ms": r["latency"]["max_us"] / 1000, "errors": r["errors"]}
                if lister:
                    elapsed = args.duration + 4
                    lister.stop.set()
                    lister.join(timeout=60)
                    row.update({"keys_listed": lister.keys, "keys_per_s": round(lister.keys / elapsed),
                                "full_listings": len(lister.full),
                                "full_listing_s": [round(s, 1) for s in lister.full], "list_errors": lister.errors})
                runs[kind].append(row)
                print(json.dumps(row), flush=True)
            finally:
                c.stop()
    for kind, rows in runs.items():
        med = {k: statistics.median(r[k] for r in rows) for k in ["read_p99_ms", "update_p99_ms", "max_ms"]}
        if kind != "alone":
            med["keys_per_s"] = statistics.median(r["keys_per_s"] for r in rows)
        print(json.dumps({"median": kind, **med}), flush=True)


if __name__ == "__main__":
    main()
