#!/usr/bin/env python3
"""Time to move data to a joining node, and client throughput while it moves.

    bench/scripts/join_transfer.py --bin-dir target/release --keys 1048576

Starts `quorumkv-node dev` (three nodes, N=3) in a temporary directory, loads `--keys`
values of 1 KiB with `quorumkv-bench run --raw --preload`, starts a fourth node seeded
with the cluster, and runs a 50% read / 50% blind-write load (64 clients, uniform keys)
with `--progress` throughout. After a baseline window it joins the fourth node
(`quorumkv admin layout join`, `commit`) and polls every node's /v1/status until the
new node has synced everything it gained and every node has retired the previous
layout. Prints one JSON object: keys, seconds to move, what the new node holds, and the
load's ops/s before and during the move (medians of the per-second counts).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time

from loopback import free_base_port, status, wait


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--keys", type=int, default=1 << 20)
    ap.add_argument("--baseline-s", type=int, default=20)
    ap.add_argument("--load-s", type=int, default=600, help="upper bound on the load run")
    args = ap.parse_args()
    node_bin, bench, cli = (os.path.join(args.bin_dir, b) for b in ("quorumkv-node", "quorumkv-bench", "quorumkv"))

    with tempfile.TemporaryDirectory(prefix="qkv-join-") as d:
        base = free_base_port(8)
        nodes = [f"127.0.0.1:{base + 2 * i}" for i in range(3)]
        log = open(os.path.join(d, "nodes.log"), "w")
        dev = subprocess.Popen([node_bin, "dev", "--base-port", str(base), "--data-dir", os.path.join(d, "dev")],
                               stdout=log, stderr=log)
        procs = [dev]
        try:
            for a in nodes:
                wait(f"{a} healthy", lambda a=a: status(a)["layout"]["version"] == 1, 30)
            common = ["run", "--raw", "--value-size", "1024", "--concurrency", "64", "--keys", str(args.keys)]
            for a in nodes:
                common += ["--node", a]
            t = time.time()
            subprocess.run([bench] + common + ["--workload", "put", "--preload", "--duration", "0s", "--warmup", "0s"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            load_s = time.time() - t
            new_api, new_peer = f"127.0.0.1:{base + 6}", f"127.0.0.1:{base + 7}"
            n4 = subprocess.Popen([node_bin, "--node-id", "node-4", "--listen", new_api, "--peer-listen", new_peer,
                                   "--data-dir", os.path.join(d, "node-4"), "--seed", f"127.0.0.1:{base + 1}"],
                                  stdout=log, stderr=log)
            procs.append(n4)
            wait("node-4 healthy", lambda: status(new_api)["layout"]["version"] == 1, 30)
            load = subprocess.Popen([bench] + common + ["--workload", "mixed", "--read-ratio", "0.5", "--duration",
                                                        f"{args.load_s}s", "--warmup", "0s", "--progress"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            started = time.time()
            time.sleep(args.baseline_s)
            env = dict(os.environ, QUORUMKV_NODE=nodes[0])
            subprocess.run([cli, "admin", "layout", "join", "node-4"], check=True, env=env, stdout=subprocess.DEVNULL)
            t0 = time.time()
            subprocess.run([cli, "admin", "layout", "commit"], check=True, env=env, stdout=subprocess.DEVNULL)
            all_nodes = nodes + [new_api]

            def moved():
                for a in all_nodes:
                    lay = status(a)["layout"]
                    if lay["version"] != 2 or lay["syncing"] or lay["previous_version"] is not None:
                        return False
                return True

            wait("the move to finish", moved, args.load_s - args.baseline_s - 5)
            t1 = time.time()
            load.terminate()
            _, err = load.communicate(timeout=30)
            s4 = status(new_api)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
        per_second = [(int(m.group(1)), int(m.group(2))) for m in re.finditer(r"t=\s*(\d+)s ops=(\d+)", err)]
        join_at, done_at = t0 - started, t1 - started
        before = [ops for t, ops in per_second if 2 <= t <= join_at]
        during = [ops for t, ops in per_second if join_at < t <= done_at]
        print(json.dumps({
            "keys": args.keys,
            "load_seconds": round(load_s, 1),
            "move_seconds": round(t1 - t0, 1),
            "new_node_objects": s4["storage"]["approximate_objects"],
            "new_node_disk_bytes": s4["storage"]["disk_bytes"],
            "ops_per_s_before_median": statistics.median(before) if before else None,
            "ops_per_s_during_median": statistics.median(during) if during else None,
        }))


if __name__ == "__main__":
    main()
