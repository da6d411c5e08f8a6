"""python -m agent make-test-model DIR"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import CliPositionalArg, SettingsConfigDict


class MakeTestModel(BaseModel):
    """
    Write the tiny random-weight Orpheus-layout model (its audio is noise: tests only).
    """

    # a plain model, not settings: ORPHEUS_SEED (the sampling seed) must not seed the weights
    model_config = SettingsConfigDict(extra="forbid")

    dir: CliPositionalArg[Path] = Field(description="output directory")
    seed: int = Field(0, description="seed of the random weights")


def make(command: MakeTestModel) -> int:
    from tts_plugin.engine.demo_model import make_test_model

    out = make_test_model(command.dir, seed=command.seed)
    print(f"wrote tiny random-weight Orpheus-layout model to {out} (its audio is noise: tests only)")
    return 0
