"""Cold start (GGUF conversion) vs warm start (model cache) of `domainbot ask`, to the first token.

Each start is a fresh process. `first_token_visible_s` is from launching `domainbot ask --raw "..." --max-tokens 1`
to its first byte on stdout (the one-token answer), what a person waiting sees. `--raw` is the model alone,
what the model cache speeds up; the full pipeline's warm start (embedder, knowledge base, guardrails too) is
measured the same way and reported beside it.
`load_s` and `load_to_first_token_s` are the process's own split (from `--json`), and `process_wall_s` runs
to exit, interpreter teardown included. The warm target is 3 s to the first token.

    python bench/startup.py [--warm-runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUESTION = "What is the capital of France?"


def one_start(data_dir: Path, json_data_dir: Path, raw: bool = True) -> dict[str, float]:
    """Time one visible start in `data_dir` and one `--json` start in `json_data_dir` (both empty: two cold
    starts; both the same prepared folder: two warm starts)."""
    env = {**os.environ, "DOMAINBOT_DATA_DIR": str(data_dir), "DOMAINBOT_MODEL": "embedded"}
    command = [sys.executable, "-m", "bot.cli", "ask", QUESTION, "--max-tokens", "1", *(["--raw"] if raw else [])]
    started = time.perf_counter()
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        assert proc.stdout is not None
        proc.stdout.read(1)
        visible = time.perf_counter() - started
        proc.stdout.read()
    if proc.returncode != 0:
        raise SystemExit(f"domainbot ask failed with exit code {proc.returncode}")
    env["DOMAINBOT_DATA_DIR"] = str(json_data_dir)
    started = time.perf_counter()
    out = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    timings = json.loads(out.stdout)["timings"]
    return {
        "first_token_visible_s": visible,
        "load_s": timings["load"],
        "load_to_first_token_s": timings["load"] + timings["first_token"],
        "process_wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm-runs", type=int, default=3)
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="domainbot-bench-"))
    second_cold_dir = Path(tempfile.mkdtemp(prefix="domainbot-bench-"))
    try:
        cold = one_start(data_dir, second_cold_dir)
        warm_runs = [one_start(data_dir, data_dir) for _ in range(args.warm_runs)]
        one_start(data_dir, data_dir, raw=False)  # the knowledge base's first start loads the sample pack
        pipeline_runs = [one_start(data_dir, data_dir, raw=False) for _ in range(args.warm_runs)]
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(second_cold_dir, ignore_errors=True)
    warm = {key: statistics.median(run[key] for run in warm_runs) for key in cold}
    pipeline = {key: statistics.median(run[key] for run in pipeline_runs) for key in cold}
    print(f"{'':28}{'cold (convert)':>16}{'warm (cache)':>16}{'cold/warm':>12}{'warm pipeline':>16}")
    for key in cold:
        print(f"{key:28}{cold[key]:16.2f}{warm[key]:16.2f}{cold[key] / warm[key]:12.1f}x{pipeline[key]:16.2f}")
    target = 3.0
    verdict = "meets" if warm["first_token_visible_s"] <= target else "misses"
    print(f"warm start to the first token {warm['first_token_visible_s']:.2f} s {verdict} the {target:.0f} s target")
    print(
        json.dumps({"cold": cold, "warm_median": warm, "warm_pipeline_median": pipeline, "warm_runs": len(warm_runs)})
    )


if __name__ == "__main__":
    main()
