#!/usr/bin/env python3
"""Server CPU per request: the node processes' user+system CPU time over a load run,
divided by the operations the run completed.

    bench/scripts/cpu_per_request.py --node-bin target/release/quorumkv-node \
        --bench-bin target/release/quorumkv-bench --mode single --workload get

`--mode single` starts one node (N=1); `--mode cluster` starts `quorumkv-node dev` (three
nodes in one process, N=3, r=w=quorum), so one process's CPU is the whole cluster's. The
load is `quorumkv-bench run --raw` on loopback (1 KiB values, 64 clients, 10,000 keys
preloaded). The CPU is read from /proc/PID/stat just before and just after the measured
run; the generator's own CPU is not counted. Prints one JSON line per run.
"""

import argparse
import json
import os
import subprocess
import tempfile

from loopback import free_base_port, status, wait

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
    return (int(fields[11]) + int(fields[12])) / TICK


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node-bin", required=True)
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--mode", choices=["single", "cluster"], required=True)
    ap.add_argument("--workload", choices=["get", "put"], required=True)
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--keys", type=int, default=10000)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="qkv-cpu-") as d:
        log = open(os.path.join(d, "node.log"), "w")
        if args.mode == "single":
            base = free_base_port(2)
            nodes = [f"127.0.0.1:{base}"]
            cmd = [args.node_bin, "--listen", nodes[0], "--peer-listen", f"127.0.0.1:{base + 1}",
                   "--data-dir", os.path.join(d, "data")]
        else:
            base = free_base_port(6)
            nodes = [f"127.0.0.1:{base + 2 * i}" for i in range(3)]
            cmd = [args.node_bin, "dev", "--base-port", str(base), "--data-dir", os.path.join(d, "data")]
        node = subprocess.Popen(cmd, stdout=log, stderr=log)
        try:
            for a in nodes:
                wait(f"{a} healthy", lambda a=a: status(a)["layout"]["version"] is not None, 30)
            if args.mode == "cluster":
                for a in nodes:
                    wait(f"{a} sees 3 members up",
                         lambda a=a: sum(m["state"] == "up" for m in status(a)["members"]) == 3, 30)
            common = ["run", "--raw", "--value-size", "1024", "--concurrency", "64", "--keys", str(args.keys)]
            for a in nodes:
                common += ["--node", a]
            # Load the keys (GETs then find every key).
            subprocess.run([args.bench_bin] + common + ["--workload", "put", "--preload", "--duration", "0s",
                                                        "--warmup", "0s", "--json"],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before = cpu_seconds(node.pid)
            out = subprocess.run([args.bench_bin] + common + ["--workload", args.workload, "--duration",
                                                              args.duration, "--warmup", "0s", "--json"],
                                 check=True, capture_output=True, text=True).stdout
            after = cpu_seconds(node.pid)
        finally:
            node.terminate()
            node.wait(timeout=30)
        report = json.loads(out)
        ops = report["ops"]
        print(json.dumps({
            "mode": args.mode,
            "workload": args.workload,
            "ops": ops,
            "ops_per_sec": round(report["ops_per_sec"]),
            "errors": report["errors"],
            "server_cpu_s": round(after - before, 2),
            "cpu_us_per_op": round((after - before) / max(ops, 1) * 1e6, 1),
        }))


if __name__ == "__main__":
    main()
