"""Hostile inputs and hard stops, measured on whole `rnncodec` processes, as a user meets them.

    .venv/bin/python bench/hostile.py corpus              # each tests/hostile file: exit, CPU s, peak RSS
    PYTHONPATH=OLD/src .venv/bin/python bench/hostile.py corpus empty-segments.rnc   # the same, another checkout
    .venv/bin/python bench/hostile.py signals --runs 20   # each stop signal at random moments of a folder run
    .venv/bin/python bench/hostile.py writers --writers 20 --rounds 3   # concurrent writers to one new path

corpus: `decompress` of each crafted file in a fresh process at the default caps; its CPU time
(user + system, the process's start included) and peak RSS from the child's rusage.
signals: a folder of 8 photo-like 256×256 images compressed with `-j 2 -i 2` in a new session;
SIGINT and SIGHUP go to the whole process group (as a terminal sends them), SIGTERM to the
parent only (as `timeout` and `kill` do), each at a moment drawn uniformly from the start to the
end of an uninterrupted run (timed first). Counted per signal: exit codes, seconds from the
signal to the exit, `.part` files left, tracebacks printed, processes of the group still alive
after the exit (zombies awaiting their reaper aside), stderr lines that are not the CLI's own
(any other is kept in the record), and whether the files named as finished exist.
writers: N processes compress one image to the same new path at once, without --force, each
given its input only once all of them wait for it (past the up-front check, so that they race to
publish); exactly one may succeed (exit 0) and every other must exit 6 with "exists", the file
whole, no temporary file left.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from PIL import Image

from rnncodec import container
from rnncodec.testing import smooth_image

HOSTILE = Path(__file__).resolve().parents[1] / "tests" / "hostile"
CLI = [sys.executable, "-m", "rnncodec.cli"]


def corpus(names: list[str] | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(HOSTILE.glob("*.rnc")) if not names else [HOSTILE / name for name in names]:
            p = subprocess.Popen([*CLI, "decompress", str(path), "-o", f"{tmp}/out.png"], stderr=subprocess.PIPE,
                                 text=True)
            _, status, usage = os.wait4(p.pid, 0)
            err = p.stderr.read().strip()
            p.returncode = os.waitstatus_to_exitcode(status)
            print(json.dumps({"file": path.name, "bytes": path.stat().st_size, "exit": p.returncode,
                              "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                              "peak_rss_mib": round(usage.ru_maxrss / 1024), "error": err}), flush=True)


def _folder(root: Path) -> Path:
    src = root / "in"
    src.mkdir()
    for i in range(8):
        Image.fromarray(smooth_image(256, 256, seed=i)).save(src / f"{i}.png")
    return src


def _alive(pgid: int) -> int:
    n = 0
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        n += int(fields[2]) == pgid and fields[0] != "Z"
    return n


def _default_signals() -> None:
    """The child as a terminal starts it, even where this script runs under nohup (SIGHUP ignored)."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def _run(src: Path, signum: int | None, delay: float) -> dict:
    out = src.with_name("in.rnc")
    subprocess.run(["rm", "-rf", str(out)], check=True)
    start = time.monotonic()
    p = subprocess.Popen([*CLI, "compress", str(src), "-o", str(out), "-j", "2", "-i", "2"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=_default_signals)
    sent = None
    if signum is not None:
        try:
            p.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            sent = time.monotonic()
            if signum == signal.SIGTERM:
                p.send_signal(signum)
            else:
                os.killpg(p.pid, signum)
    err = p.communicate(timeout=600)[1]
    end = time.monotonic()
    time.sleep(2)  # the workers' own exits
    finished = [line.strip() for line in err.splitlines() if line.startswith("  ") and line.strip().endswith(".rnc")]
    missing = [f for f in finished if not Path(f).exists()]
    others = [line for line in err.splitlines() if not line.startswith(("rnncodec: ", "  /"))]  # not the CLI's own
    return {"stderr": err if others or missing else None, "other_lines": len(others),
            "signal": signal.Signals(signum).name if signum else None, "delay_s": round(delay, 2),
            "sent": sent is not None, "exit": p.returncode, "seconds": round(end - start, 2),
            "stop_s": round(end - sent, 2) if sent else None,
            "partial": sum(f.name.endswith(".part") for f in out.rglob("*")) if out.exists() else 0,
            "traceback": "Traceback" in err, "left": _alive(p.pid),
            "finished_listed": len(finished), "finished_missing": len(missing),
            "outputs": len(list(out.glob("*.rnc"))) if out.exists() else 0}


def signals(runs: int, seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        src = _folder(Path(tmp))
        whole = _run(src, None, 0)
        print(json.dumps({"uninterrupted": whole}), flush=True)
        for i in range(runs):
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                record = _run(src, signum, rng.uniform(0, whole["seconds"]))
                print(json.dumps({"run": i, **record}), flush=True)


def _reading_stdin(pid: int) -> bool:
    """Whether a process is blocked in read(0, …): past every check it makes before its input."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[:2] == ["0", "0x0"]
    except OSError:
        return False


def writers(n: int, rounds: int) -> None:
    """Each writer reads the image from standard input, which is given to all at once only when
    every one of them waits for it: all have passed the up-front "exists" check, and they race
    to publish."""
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "in.png"
        Image.fromarray(smooth_image(128, 128)).save(png)
        for r in range(rounds):
            out = Path(tmp) / f"out{r}.rnc"
            procs = [subprocess.Popen([*CLI, "compress", "-", "-o", str(out), "-i", "2"], stdin=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=False) for _ in range(n)]
            while not all(_reading_stdin(p.pid) for p in procs):
                time.sleep(0.2)
            for p in procs:
                p.stdin.write(png.read_bytes())
                p.stdin.close()
            results = [(p.wait(), p.stderr.read().decode()) for p in procs]
            codes = Counter(code for code, _ in results)
            whole = container.read(out.read_bytes())[0].width == 128 if out.exists() else False
            print(json.dumps({"round": r, "writers": n, "exit_codes": dict(codes),
                              "refused_as_exists": sum("exists" in e for c, e in results if c == 6),
                              "file_whole": whole,
                              "left_over": sorted(f.name for f in Path(tmp).iterdir() if f.name.endswith(".part"))}),
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("files", nargs="*", help="names in tests/hostile (default: all)")
    s = sub.add_parser("signals")
    s.add_argument("--runs", type=int, default=20, help="runs per signal")
    s.add_argument("--seed", type=int, default=0)
    w = sub.add_parser("writers")
    w.add_argument("--writers", type=int, default=20)
    w.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if args.what == "corpus":
        corpus(args.files)
    elif args.what == "signals":
        signals(args.runs, args.seed)
    else:
        writers(args.writers, args.rounds)


if __name__ == "__main__":
    main()
