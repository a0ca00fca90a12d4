"""Hostile inputs, stops and outputs, through the command line in subprocesses: the crafted files
of tests/hostile (made by tests/hostile/make.py) each end in their one-line error within generous
CPU and memory limits; signals leave no partial file, traceback or process; outputs never
clobber a file that appeared meanwhile, a FIFO, or a file's mode."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from rnncodec.errors import OutputError
from rnncodec.fileio import atomic_write
from rnncodec.testing import smooth_image

HOSTILE = Path(__file__).parent / "hostile"
LIMIT_AS = 3 << 30  # address space: torch alone reserves about a gigabyte of it
LIMIT_CPU_S = 120  # a hang or runaway work ends here, far above what these files cost

# every crafted file: the exit code and the words of its one-line error
EXPECTED = {
    "huge-tile.rnc": (3, "exceed 4096 px"),
    "empty-segments.rnc": (3, "ends before its bits"),
    "short-segments.rnc": (3, "ends before its bits"),
    "large-claim.rnc": (3, "ends before its bits"),
    "display-bomb.rnc": (3, "over the cap"),
    "display-8x.rnc": (3, "ends before its bits"),
    "section-length.rnc": (3, "icc_profile section claims"),
    "chunk-length.rnc": (3, "more than its tiles' bits can take"),
    "iterations.rnc": (3, "invalid header fields"),
    "alpha-bomb.rnc": (3, "corrupt alpha plane"),
    "blocks-bomb.rnc": (3, "blocks section claims"),
    "magic-only.rnc": (3, "unsupported .rnc format version"),
}

# decodes each file with the CLI's main() in one limited process (one torch import, not twelve)
_DRIVER = """
import contextlib, io, json, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, ({limit_as}, {limit_as}))
resource.setrlimit(resource.RLIMIT_CPU, ({limit_cpu}, {limit_cpu}))
from rnncodec.cli import main
out = {{}}
for path in sys.argv[1:]:
    err, cpu = io.StringIO(), time.process_time()
    with contextlib.redirect_stderr(err):
        rc = main(["decompress", path, "-o", sys.argv[1] + ".png", "-f"])
    out[path] = [rc, time.process_time() - cpu, err.getvalue()]
out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def _cli(*args: str | Path, **kwargs) -> list[str]:
    return [sys.executable, "-m", "rnncodec.cli", *map(str, args)]


def _limits() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))
    resource.setrlimit(resource.RLIMIT_CPU, (LIMIT_CPU_S, LIMIT_CPU_S))


def test_corpus_is_small_and_reproducible():
    spec = importlib.util.spec_from_file_location("make_hostile", HOSTILE / "make.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    corpus = make.corpus()
    assert set(corpus) == set(EXPECTED)
    for name, data in corpus.items():
        assert (HOSTILE / name).read_bytes() == data, f"{name}: rerun tests/hostile/make.py"
    assert sum(map(len, corpus.values())) < 8192


def test_each_crafted_file_ends_in_its_error_within_bounds(tmp_path):
    files = [tmp_path / name for name in EXPECTED]
    for f in files:
        f.write_bytes((HOSTILE / f.name).read_bytes())
    driver = _DRIVER.format(limit_as=LIMIT_AS, limit_cpu=LIMIT_CPU_S)
    r = subprocess.run([sys.executable, "-c", driver, *map(str, files)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    results = json.loads(r.stdout)
    assert results.pop("peak_rss_mib") < 1024
    for f in files:
        rc, cpu, err = results[str(f)]
        code, words = EXPECTED[f.name]
        assert (rc, err.count("\n")) == (code, 1) and err.startswith("rnncodec: error: ") and words in err, (f.name, err)
        assert cpu < 30, f.name  # decoding work bounded by the bytes: seconds, not minutes
        assert not Path(str(f) + ".png").exists()


@pytest.mark.parametrize("prefix", [b"", (HOSTILE / "magic-only.rnc").read_bytes()[:4], b"junk"])
def test_endless_standard_input_is_not_read_whole(prefix):
    """`info -` on an endless stream: refused after the bytes that show it, not read into memory."""
    head = (HOSTILE / "chunk-length.rnc").read_bytes()[:-24] if prefix == b"" else prefix
    p = subprocess.Popen(_cli("info", "-"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=_limits)
    try:
        p.stdin.write(head)
        while p.poll() is None:
            p.stdin.write(bytes(1 << 16))
    except BrokenPipeError:
        pass
    assert p.wait(timeout=300) == 3
    assert p.stderr.read().decode().startswith("rnncodec: error: ")


@pytest.fixture
def rnc(tmp_path) -> Path:
    png, path = tmp_path / "in.png", tmp_path / "in.rnc"
    Image.fromarray(smooth_image(40, 56)).save(png)
    assert subprocess.run(_cli("compress", png, "-o", path, "-i", "2"), capture_output=True, timeout=300).returncode == 0
    return path


def test_publishing_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    path = tmp_path / "out.rnc"

    def write(f):
        f.write(b"mine")
        path.write_bytes(b"theirs")  # another writer got there first

    with pytest.raises(OutputError, match="exists"):
        atomic_write(path, write)
    assert path.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["out.rnc"]  # no temporary file left


def test_a_fifo_is_written_through_never_replaced(tmp_path, rnc):
    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    r = subprocess.run(_cli("decompress", rnc, "-o", fifo), capture_output=True, text=True, timeout=300)
    assert r.returncode == 6 and "exists" in r.stderr
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    r = subprocess.run(_cli("decompress", rnc, "-o", fifo, "-f"), capture_output=True, text=True, timeout=300)
    reader.join(60)
    assert r.returncode == 0, r.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode) and got[0].startswith(b"\x89PNG")


def test_modes_follow_the_umask_and_force_keeps_the_old_one(tmp_path, rnc):
    out = tmp_path / "out.png"
    r = subprocess.run(_cli("decompress", rnc, "-o", out), preexec_fn=lambda: os.umask(0o077), timeout=300)
    assert r.returncode == 0 and stat.S_IMODE(out.stat().st_mode) == 0o600
    out.chmod(0o640)
    r = subprocess.run(_cli("decompress", rnc, "-o", out, "-f"), preexec_fn=lambda: os.umask(0o022), timeout=300)
    assert r.returncode == 0 and stat.S_IMODE(out.stat().st_mode) == 0o640


@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_a_missing_output_folder_is_refused_first(tmp_path, rnc, command):
    src = rnc.with_name("in.png") if command == "compress" else rnc
    out = tmp_path / "no" / ("out.rnc" if command == "compress" else "out.png")
    r = subprocess.run(_cli(command, src, "-o", out), capture_output=True, text=True, timeout=300)
    assert r.returncode == 6 and "no such directory" in r.stderr


@pytest.mark.parametrize("args", [("--bpp", "nan"), ("--bpp", "inf"), ("--quality", "nan"), ("--tile", "65536"),
                                  ("--tile", "4096")])
def test_impossible_numbers_are_refused_up_front(tmp_path, args):
    r = subprocess.run(_cli("compress", tmp_path / "missing.png", *args), capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and r.stderr.startswith("rnncodec: error: ") and r.stderr.count("\n") == 1, r.stderr


def test_max_pixels_reaches_the_workers(tmp_path):
    """A 14000² image: above twice Pillow's default cap, so a worker left at Pillow's default would
    refuse it by Pillow's number; it must refuse it by the --max-pixels given."""
    folder = tmp_path / "in"
    folder.mkdir()
    Image.new("1", (14000, 14000)).save(folder / "big.png")
    r = subprocess.run(_cli("compress", folder, "--max-pixels", "150000000", "-i", "1"), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 7 and "pixel cap of 150000000" in r.stderr, r.stderr


def _gone(pgid: int, seconds: float = 20) -> bool:
    """Whether every process of the group has ended (zombies awaiting their reaper aside)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _group(p) == pgid]
        if not alive:
            return True
        time.sleep(0.2)
    return False


def _group(proc: Path) -> int | None:
    try:
        fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[2]) if fields[0] != "Z" else None


def _default_signals() -> None:
    """As a terminal starts a command, even where the tests run under nohup."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_stops_a_folder_run_cleanly(tmp_path, signum):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):
        Image.fromarray(smooth_image(64, 64, seed=i)).save(folder / f"{i}.png")
    out = tmp_path / "in.rnc"
    p = subprocess.Popen(_cli("compress", folder, "-j", "2", "-i", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True, preexec_fn=_default_signals)
    time.sleep(4)  # workers starting or coding, whatever the machine's load
    os.killpg(p.pid, signum) if signum != signal.SIGTERM else p.send_signal(signum)
    _, err = p.communicate(timeout=120)
    assert _gone(p.pid)
    assert all(line.startswith(("rnncodec: ", "  /")) for line in err.splitlines()), err  # the CLI's lines only
    assert not [f for f in out.rglob("*") if f.name.endswith(".part")] if out.exists() else True
    if p.returncode == 0:  # it finished before the signal
        assert len(list(out.glob("*.rnc"))) == 6
    else:
        assert p.returncode == 128 + signum, err
        assert f"interrupted ({signal.Signals(signum).name})" in err


@pytest.mark.parametrize("name", ["section-length.rnc", "chunk-length.rnc", "magic-only.rnc"])
def test_the_api_and_pillow_read_streams_no_further_than_announced(name):
    import rnncodec  # registers the Pillow plugin
    from rnncodec.codec import decode
    from rnncodec.errors import FormatError

    endless = _Endless((HOSTILE / name).read_bytes())
    with pytest.raises(FormatError):
        decode(endless)
    assert endless.given < (1 << 22)  # pieces of a length it announced, not the whole of it
    with pytest.raises((FormatError, rnncodec.FormatError)):
        Image.open(_Endless((HOSTILE / name).read_bytes()))


class _Endless:
    """A binary stream of a prefix and then zeros without end, counting what it gave out."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix, self.pos, self.given = prefix, 0, 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise AssertionError("read whole")
        out = self.prefix[self.pos : self.pos + n]
        out += bytes(n - len(out))
        self.pos += n
        self.given += n
        return out

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos if whence == 0 else self.pos + pos
        return self.pos

    def tell(self) -> int:
        return self.pos
