"""python -m agent make-test-model DIR"""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent make-test-model", description=__doc__)
    parser.add_argument("dir", help="output directory")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from tts_plugin.engine.demo_model import make_test_model

    out = make_test_model(args.dir, seed=args.seed)
    print(f"wrote tiny random-weight Orpheus-layout model to {out} (its audio is noise: tests only)")
    return 0
