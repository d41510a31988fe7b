"""Helpers the measurement scripts share: free loopback ports, a node's status, waiting."""

import json
import socket
import sys
import time
import urllib.request


def free_base_port(count):
    """A port p with p .. p+count-1 free on loopback."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + count >= 65535:
            continue
        ok = True
        for p in range(base, base + count):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    sys.exit("no free ports")


def status(addr):
    with urllib.request.urlopen(f"http://{addr}/v1/status", timeout=5) as r:
        return json.load(r)


def wait(what, check, deadline):
    end = time.time() + deadline
    while time.time() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"timed out: {what}")
