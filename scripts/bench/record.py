"""Writes one benchmark run as docs/bench/<name>.json (scripts/bench.sh): the benchmark, the
command, the commit (and whether the checkout had uncommitted changes), the date, the machine,
the thread count and the implementations' raw result lines, in the order they ran.
Development-only.

usage: record.py NAME COMMAND SETTINGS_JSON OUT_JSON ROWS_JSONL...
A ROWS_JSONL given as CHECK=PATH tags its rows with "check": CHECK (which measurement they
belong to). Missing files are skipped."""
import datetime
import json
import os
import subprocess
import sys


def git(*args):
    r = subprocess.run(["git", *args], capture_output=True, text=True)
    return r.stdout.strip()


def machine():
    cpu = "unknown CPU"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1)}


def main():
    name, command, settings, out = sys.argv[1:5]
    rows = []
    for arg in sys.argv[5:]:
        tag, path = arg.split("=", 1) if "=" in arg and not os.path.exists(arg) else (None, arg)
        if os.path.exists(path):
            for line in open(path):
                if line.strip():
                    row = json.loads(line)
                    if tag is not None:
                        row.setdefault("check", tag)
                    rows.append(row)
    threads = sorted({r["threads"] for r in rows if "threads" in r})
    doc = {
        "benchmark": name,
        "command": command,
        # RLVR_BENCH_COMMIT: the commit the binaries were built from, where they run outside a
        # checkout (scripts/gpu-check.sh on a device machine, which gets no .git).
        "commit": os.environ.get("RLVR_BENCH_COMMIT") or git("rev-parse", "--short=12", "HEAD"),
        # Benchmark outputs themselves do not count as changes.
        "dirty": os.environ.get("RLVR_BENCH_DIRTY") == "1" if os.environ.get("RLVR_BENCH_COMMIT") else
        bool(git("status", "--porcelain", "--", ".", ":!docs/bench", ":!docs/performance.md", ":!README.md")),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "threads": threads[0] if len(threads) == 1 else threads,
        # MKL's vendor check: answered by rlvr's binaries (linked) and by the Python baselines'
        # python-mkl (preloaded) alike, or MKL's own answer in both (scripts/bench/mkl-vendor.sh).
        "mkl_vendor_check": "keep" if os.environ.get("RLVR_MKL_VENDOR_CHECK") == "keep" else "answered",
        "settings": json.loads(settings),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    print(f"record: {out} ({len(rows)} rows)", file=sys.stderr)


if __name__ == "__main__":
    main()
