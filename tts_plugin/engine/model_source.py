"""Which checkpoints the engine loads: the configured ones, or the demo model on a first run.

A user who chose no model (no ``ORPHEUS_MODEL``, no ``--model``) on a machine where the default
checkpoint is out of reach (no model hub, no cached weights) gets a working server on the
random-weight demo model, and is told so, rather than a traceback. A model the user did choose and
that cannot be loaded stops start-up with one line: which model, why, what to do.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..settings import EngineSettings
from .demo_model import DEMO_MARKER, make_test_model

log = logging.getLogger("orpheus.engine")

_CHOSEN = {"model", "tokenizer", "snac_model", "vllm_url"}  # fields that mean "this checkpoint, no fallback"
_CPU_WARN_PARAMS = 5e8  # LMs above this run far below real time on CPU cores


class ModelUnavailable(RuntimeError):
    """A chosen checkpoint cannot be loaded; the message is one line fit for the console."""


@dataclass(frozen=True)
class ModelChoice:
    settings: EngineSettings  # what to load
    demo: bool  # random weights: the audio is noise, never speech
    notice: str | None = None  # why the demo model stands in, for the console


def choose_models(settings: EngineSettings) -> ModelChoice:
    what = f"model {settings.model!r}"
    try:
        config = _probe_lm(settings)
        what = f"SNAC codec {settings.snac_model!r}"
        _probe_snac(settings.snac_model)
    except (OSError, ValueError) as exc:
        cause = _one_line(exc)
        if _CHOSEN & settings.model_fields_set or not settings.demo_fallback:
            raise ModelUnavailable(
                f"cannot load {what}: {cause}. Check the name or path: a Hugging Face id needs the hub or a "
                "cached copy (`hf download ID`), a local checkpoint its directory.") from exc
        return _demo(settings, f"{what}: {cause}")
    if config is not None:
        _warn_if_slow_on_cpu(settings, config)
    return ModelChoice(settings, demo=is_demo_model(settings))


def is_demo_model(settings: EngineSettings) -> bool:
    return settings.snac_model == "random" or (Path(settings.model) / DEMO_MARKER).exists()


def ensure_demo_model(directory: Path) -> Path:
    if not (directory / DEMO_MARKER).exists():
        log.info("writing the demo model to %s (once)", directory)
        make_test_model(directory)
    return directory


def _demo(settings: EngineSettings, cause: str) -> ModelChoice:
    directory = ensure_demo_model(settings.demo_model_dir)
    update = {"model": str(directory), "tokenizer": None, "snac_model": "random"}
    if "top_p" not in settings.model_fields_set:
        update["top_p"] = 1.0  # top-p sorts the whole vocabulary each step: slow on CPU, pointless for noise
    notice = (f"demo model: could not load {cause}; serving the random-weight demo model "
              f"from {directory} instead: you will hear noise, not speech. For real speech, run on a GPU machine "
              "that can reach or has cached the weights, or set ORPHEUS_MODEL to a local checkpoint.")
    return ModelChoice(settings.model_copy(update=update), demo=True, notice=notice)


def _probe_lm(settings: EngineSettings):
    """The LM's config (None for a remote LM, where only the tokenizer is needed here)."""
    from transformers import AutoConfig, AutoTokenizer

    if settings.vllm_url:
        _from_local_or_hub(AutoTokenizer.from_pretrained, settings.tokenizer or settings.model)
        return None
    return _from_local_or_hub(AutoConfig.from_pretrained, settings.model)


def _probe_snac(name: str) -> None:
    from huggingface_hub import hf_hub_download

    if name == "random":
        return
    if Path(name).is_dir():
        if not (Path(name) / "config.json").exists():
            raise OSError(f"{name} has no config.json")
        return
    _from_local_or_hub(lambda repo, **kw: hf_hub_download(repo, "config.json", **kw), name)


def _from_local_or_hub(load, name: str):
    """A directory or a cached copy first; the hub only when it answers at all, because an unreachable
    hub costs ~50 s of retries per file before the error."""
    if Path(name).is_dir():
        return load(name)
    if name.startswith(("/", "./", "../", "~")):
        raise OSError(f"no such directory: {name}")
    try:
        return load(name, local_files_only=True)
    except (OSError, ValueError):
        pass
    _check_hub_reachable()
    return load(name)


def _check_hub_reachable(timeout_s: float = 3.0) -> None:
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise OSError("not in the local cache, and HF_HUB_OFFLINE is set")
    url = urlsplit(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s).close()
    except OSError as exc:
        raise OSError(f"not in the local cache, and the model hub {url.hostname} is unreachable ({exc})") from None


def _warn_if_slow_on_cpu(settings: EngineSettings, config) -> None:
    import torch

    hidden = getattr(config, "hidden_size", 0)
    params = config.vocab_size * hidden + getattr(config, "num_hidden_layers", 0) * (
        4 * hidden ** 2 + 3 * hidden * getattr(config, "intermediate_size", 0))
    if params > _CPU_WARN_PARAMS and not torch.cuda.is_available():
        log.warning("%s has ~%.1fB parameters and this machine has no GPU: speech will run far below real "
                    "time. Use a GPU machine, or ORPHEUS_VLLM_URL to generate on one.", settings.model, params / 1e9)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:240] + "…"
