"""kill -9 an ``edge-classify -o`` bulk run at random moments, resume it, count the damage.

    python tools/kill_resume_trials.py --model m.onnx --images DIR --trials 20

Each trial starts ``edge-classify --model M -o results.jsonl DIR``, kills it with SIGKILL
after a random number of result lines (at any moment of a write, too), reruns it with
``--resume`` (killing that one too, up to ``--kills`` times per trial), then finishes it and
checks the file: every image exactly once, every line valid JSON. Prints one line per
trial and the totals of lost and duplicated results.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path


def edge_classify() -> str:
    return str(Path(sysconfig.get_path("scripts")) / "edge-classify")


def trial(model: str, images: Path, expected: int, kills: int, rng: random.Random, batch: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.jsonl"
        base = [edge_classify(), "--model", model, "-q", "--batch-size", str(batch), "-o", str(out), str(images)]
        killed_at = []
        for k in range(kills):
            cmd = base + (["--resume"] if k else [])
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            have = out.read_bytes().count(b"\n") if out.exists() else 0
            target = have + rng.randint(1, max(1, (expected - have) // 2))
            while proc.poll() is None and (not out.exists() or out.read_bytes().count(b"\n") < target):
                time.sleep(rng.uniform(0, 0.003))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at.append(out.read_bytes().count(b"\n") if out.exists() else 0)
        done = subprocess.run(base + ["--resume"], capture_output=True, text=True)
        lines = out.read_text().splitlines()
        bad_json = 0
        paths = []
        for line in lines:
            try:
                paths.append(json.loads(line)["path"])
            except (ValueError, KeyError):
                bad_json += 1
        counts = Counter(paths)
        return {"killed_at_rows": killed_at, "final_rc": done.returncode, "rows": len(lines),
                "lost": expected - len(counts), "duplicated": sum(c - 1 for c in counts.values()),
                "invalid_lines": bad_json}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--images", required=True, type=Path, help="a folder of images")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--kills", type=int, default=2, help="kills per trial before the final resume")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from edge_classify.runtime.images.files import images_in

    expected = len(images_in(args.images))
    rng = random.Random(args.seed)
    totals = Counter()
    for i in range(args.trials):
        r = trial(args.model, args.images, expected, args.kills, rng, args.batch_size)
        totals.update({k: r[k] for k in ("lost", "duplicated", "invalid_lines")})
        print(f"trial {i + 1}: {json.dumps(r)}", flush=True)
    print(f"{args.trials} trials x {args.kills} kills over {expected} images: lost {totals['lost']}, "
          f"duplicated {totals['duplicated']}, invalid lines {totals['invalid_lines']}")
    return 0 if not (totals["lost"] or totals["duplicated"] or totals["invalid_lines"]) else 1


if __name__ == "__main__":
    sys.exit(main())
