"""The long fuzz run of decode + preprocess, supervised for crashes and hangs.

    python tools/fuzz_decode.py --minutes 60             # mutation fuzzing, stats at the end
    python tools/fuzz_decode.py --minutes 60 --atheris   # coverage-guided (pip install atheris)

The mutator is tests/fuzzing.py's (flips, cuts, splices, and extreme values written into
the width/height/tile/strip/depth fields of each format). A worker process decodes the
inputs; this process watches it: a worker killed by a signal is a crash, one that spends
more than ``--hang-seconds`` on one input is a hang, and an exception other than the
runtime's ``InputError`` is a bug. The offending input is saved in ``--out`` (default
fuzz-out/) for triage; once understood and fixed, copy it into tests/corpus/decode/ as
``refused-<what>.<ext>`` or ``ok-<what>.<ext>`` so it stays fixed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))


def _save(out: Path, kind: str, data: bytes, note: str = "") -> Path:
    path = out / f"{kind}-{hashlib.sha256(data).hexdigest()[:16]}.bin"
    path.write_bytes(data)
    if note:
        path.with_suffix(".txt").write_text(note)
    return path


def worker(seed: int, out: Path, hang_seconds: float, report_every: float) -> None:
    import fuzzing

    seeds = fuzzing.seeds()
    names, pool = sorted(seeds), list(seeds.values())
    rng = random.Random(seed)
    current = out / f".current-{os.getpid()}"
    started = [0.0]

    def watchdog():
        while True:
            time.sleep(0.5)
            if started[0] and time.monotonic() - started[0] > hang_seconds:
                os._exit(99)  # the supervisor saves .current as a hang

    threading.Thread(target=watchdog, daemon=True).start()
    stats = {"inputs": 0, "ok": 0, "refused": 0, "bugs": 0}
    last = time.monotonic()
    while True:
        data = fuzzing.mutate(seeds[rng.choice(names)], rng, pool)
        with open(current, "wb") as f:  # a crash kills us mid-decode: the supervisor reads this
            f.write(data)
        started[0] = time.monotonic()
        try:
            outcome = fuzzing.target(data)
            stats["ok" if outcome == "ok" else "refused"] += 1
        except Exception:
            stats["bugs"] += 1
            _save(out, "bug", data, traceback.format_exc())
        started[0] = 0.0
        stats["inputs"] += 1
        if time.monotonic() - last > report_every:
            last = time.monotonic()
            print(json.dumps(stats), flush=True)
            stats = dict.fromkeys(stats, 0)


def supervise(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    totals = {"inputs": 0, "ok": 0, "refused": 0, "bugs": 0, "hangs": 0, "crashes": 0}
    deadline = time.monotonic() + args.minutes * 60
    seed = args.seed
    t0 = time.monotonic()
    while time.monotonic() < deadline:
        proc = subprocess.Popen([sys.executable, __file__, "--worker", str(seed), "--out", str(out),
                                 "--hang-seconds", str(args.hang_seconds)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        current = out / f".current-{proc.pid}"

        def pump():
            for line in proc.stdout:
                try:
                    for k, v in json.loads(line).items():
                        totals[k] += v
                except ValueError:
                    pass

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        reader.join(timeout=5)
        rc = proc.returncode
        data = current.read_bytes() if current.exists() else b""
        if rc == 99:
            totals["hangs"] += 1
            print(f"hang: saved {_save(out, 'hang', data)}", file=sys.stderr)
        elif rc is not None and rc < 0 and rc != -signal.SIGTERM:
            totals["crashes"] += 1
            print(f"crash (signal {-rc}): saved {_save(out, 'crash', data)}", file=sys.stderr)
        current.unlink(missing_ok=True)
        seed += 1
    secs = time.monotonic() - t0
    print(json.dumps({**totals, "seconds": round(secs), "inputs_per_s": round(totals["inputs"] / secs)}))
    print(f"{totals['inputs']} inputs: {totals['ok']} decoded, {totals['refused']} refused, "
          f"{totals['bugs']} unhandled exceptions, {totals['hangs']} hangs, {totals['crashes']} crashes "
          f"(inputs saved in {out})")
    return 1 if totals["bugs"] or totals["hangs"] or totals["crashes"] else 0


def run_atheris(args) -> int:
    import atheris

    with atheris.instrument_imports():
        import fuzzing
        from edge_classify.runtime.images import formats, safe_decode  # noqa: F401  (coverage-guided parsers)

    corpus = Path(args.out) / "atheris-corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name, data in fuzzing.seeds().items():
        (corpus / name).write_bytes(data)
    for p in fuzzing.CORPUS.iterdir():
        (corpus / p.name).write_bytes(p.read_bytes())

    def one_input(data: bytes) -> None:
        fuzzing.target(data)  # anything but "ok"/"refused" raises: libFuzzer saves the input

    atheris.Setup([sys.argv[0], f"-max_total_time={int(args.minutes * 60)}", f"-timeout={int(args.hang_seconds)}",
                   f"-artifact_prefix={args.out}/", str(corpus)], one_input)
    atheris.Fuzz()
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="fuzz-out")
    p.add_argument("--hang-seconds", type=float, default=10)
    p.add_argument("--atheris", action="store_true", help="coverage-guided with atheris (pip install atheris)")
    p.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        worker(args.worker, Path(args.out), args.hang_seconds, report_every=2.0)
        return 0
    return run_atheris(args) if args.atheris else supervise(args)


if __name__ == "__main__":
    sys.exit(main())
