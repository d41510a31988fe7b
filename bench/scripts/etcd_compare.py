#!/usr/bin/env python3
"""The same workload against quorumkv and etcd, in interleaved rounds on loopback.

    bench/scripts/etcd_compare.py --node-bin target/release/quorumkv-node \\
        --bench-bin target/release/quorumkv-bench --rounds 3 \\
        --workload a --distribution zipfian --records 100000 --duration 30s

Starts a 3-member etcd cluster (`--etcd-bin`, default /usr/bin/etcd; each member in its own
temporary directory) and a 3-node quorumkv cluster (`quorumkv-node dev --nodes 3`), then
runs `quorumkv-bench run` with the arguments this script does not know itself (above:
`--workload a ...`) against each system in turn, alternating which goes first each round.
quorumkv is driven with `--raw` and etcd through its v3 JSON gateway, both over the same
lean hyper connections; `--quorumkv-arg` adds arguments for the quorumkv runs only (for
example `--quorumkv-arg=--dw=1`: etcd fsyncs every commit, quorumkv by default
acknowledges before the fsync). Each system's first run loads the records (the bench's
`--load auto`); later rounds find them there. Prints, per round, each system's ops/s and
p99 and the ratio quorumkv / etcd, then the median of the ratios.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import urllib.request

from loopback import free_base_port, status, wait


def etcd_healthy(addr):
    with urllib.request.urlopen(f"http://{addr}/health", timeout=2) as r:
        return json.load(r).get("health") == "true"


def start_etcd(etcd_bin, d, log):
    base = free_base_port(6)
    clients = [f"127.0.0.1:{base + 2 * i}" for i in range(3)]
    peers = [f"127.0.0.1:{base + 2 * i + 1}" for i in range(3)]
    cluster = ",".join(f"e{i + 1}=http://{p}" for i, p in enumerate(peers))
    procs = []
    for i in range(3):
        procs.append(subprocess.Popen([
            etcd_bin, "--name", f"e{i + 1}", "--data-dir", os.path.join(d, f"etcd-{i + 1}"),
            "--listen-client-urls", f"http://{clients[i]}", "--advertise-client-urls", f"http://{clients[i]}",
            "--listen-peer-urls", f"http://{peers[i]}", "--initial-advertise-peer-urls", f"http://{peers[i]}",
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", "quorumkv-bench",
        ], stdout=log, stderr=log))
    return procs, clients


def start_quorumkv(node_bin, d, log):
    base = free_base_port(6)
    nodes = [f"127.0.0.1:{base + 2 * i}" for i in range(3)]
    proc = subprocess.Popen([node_bin, "dev", "--nodes", "3", "--base-port", str(base),
                             "--data-dir", os.path.join(d, "quorumkv")], stdout=log, stderr=log)
    return proc, nodes


def bench(bench_bin, target, nodes, args):
    cmd = [bench_bin, "run", "--target", target, "--json"] + args
    for n in nodes:
        cmd += ["--node", n]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--node-bin", required=True, help="the quorumkv-node binary")
    ap.add_argument("--bench-bin", required=True, help="the quorumkv-bench binary")
    ap.add_argument("--etcd-bin", default="/usr/bin/etcd")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quorumkv-arg", action="append", default=[], help="a bench argument for quorumkv runs only")
    args, passthrough = ap.parse_known_args()
    if args.rounds < 1:
        sys.exit("--rounds must be at least 1")

    with tempfile.TemporaryDirectory(prefix="qkv-etcd-") as d:
        log = open(os.path.join(d, "servers.log"), "w")
        procs = []
        try:
            etcd_procs, etcd_nodes = start_etcd(args.etcd_bin, d, log)
            procs += etcd_procs
            qkv, qkv_nodes = start_quorumkv(args.node_bin, d, log)
            procs.append(qkv)
            for a in etcd_nodes:
                wait(f"etcd {a} healthy", lambda a=a: etcd_healthy(a), 30)
            for a in qkv_nodes:
                wait(f"quorumkv {a} sees 3 members up",
                     lambda a=a: sum(m["state"] == "up" for m in status(a)["members"]) == 3, 30)
            systems = {
                "quorumkv": (qkv_nodes, ["--raw"] + passthrough + args.quorumkv_arg),
                "etcd": (etcd_nodes, passthrough),
            }
            rounds = []
            for r in range(args.rounds):
                order = ["quorumkv", "etcd"] if r % 2 == 0 else ["etcd", "quorumkv"]
                results = {}
                for system in order:
                    nodes, bench_args = systems[system]
                    report = bench(args.bench_bin, system, nodes, bench_args)
                    results[system] = report
                    print(f"round {r + 1} {system}: {report['ops_per_sec']:.0f} ops/s, "
                          f"p99 {report['latency']['p99_us'] / 1000:.2f} ms, {report['errors']} errors",
                          file=sys.stderr)
                rounds.append(results)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()

    print(f"{'round':<7}{'system':<10}{'ops/s':>10}{'p99 ms':>10}{'errors':>8}")
    for i, results in enumerate(rounds):
        for system in ("quorumkv", "etcd"):
            rep = results[system]
            print(f"{i + 1:<7}{system:<10}{rep['ops_per_sec']:>10.0f}{rep['latency']['p99_us'] / 1000:>10.2f}"
                  f"{rep['errors']:>8}")
    print()
    print(f"{'round':<7}{'ops/s quorumkv/etcd':>22}{'p99 quorumkv/etcd':>20}")
    ops_ratios, p99_ratios = [], []
    for i, results in enumerate(rounds):
        q, e = results["quorumkv"], results["etcd"]
        ops = q["ops_per_sec"] / e["ops_per_sec"] if e["ops_per_sec"] else float("nan")
        p99 = q["latency"]["p99_us"] / e["latency"]["p99_us"] if e["latency"]["p99_us"] else float("nan")
        ops_ratios.append(ops)
        p99_ratios.append(p99)
        print(f"{i + 1:<7}{ops:>22.2f}{p99:>20.2f}")
    print(f"{'median':<7}{statistics.median(ops_ratios):>22.2f}{statistics.median(p99_ratios):>20.2f}")


if __name__ == "__main__":
    main()
