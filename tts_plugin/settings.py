"""Typed settings by layer: every knob reads ``ORPHEUS_<NAME>`` and has a matching ``--name`` flag.

``EngineSettings`` is what the speech engine needs (models, vLLM, sampling defaults, decoding);
the TTS server's own settings extend it (``agent/server/config.py``), and ``ServerClientSettings``
is how the plugin and the worker reach a server. The flags come from pydantic-settings' CLI
(``ORPHEUS_SETTINGS`` turns it on for a class that is parsed from a command line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from .sampling import SamplingDefaults

# Shared by every ORPHEUS_ settings class: --kebab-case flags, --x/--no-x for booleans, and
# other ORPHEUS_ variables (another layer's) ignored rather than refused.
ORPHEUS_SETTINGS = SettingsConfigDict(
    env_prefix="ORPHEUS_", extra="ignore", protected_namespaces=(),
    cli_kebab_case=True, cli_implicit_flags=True, cli_hide_none_type=True,
)
LogLevel = Literal["debug", "info", "warning", "error"]


class EngineSettings(SamplingDefaults, BaseSettings):
    """The speech engine: models, vLLM, sampling defaults (per request overridable), text and decoding."""

    model_config = ORPHEUS_SETTINGS

    # Models
    model: str = Field("canopylabs/orpheus-3b-0.1-ft", description="LM: Hugging Face id or local dir")
    tokenizer: str | None = Field(None, description="tokenizer id/dir (default: the model's)")
    snac_model: str = Field(
        "hubertsiuzdak/snac_24khz",
        description="SNAC codec id/dir; 'random' = real config, seeded random weights (tests only)",
    )
    profile: str = Field("orpheus", description="prompt/voice profile of the LM")
    demo_fallback: bool = Field(
        True, description="no model chosen and the default cannot be loaded (no weights/hub): serve the demo model"
    )
    demo_model_dir: Path = Field(
        Path(".cache/tiny-orpheus"), description="where the random-weight demo model is generated once"
    )

    # Engine (vLLM)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="device for SNAC decoding")
    dtype: str = Field("auto", description="vLLM dtype (auto, bfloat16, float16, float32)")
    kv_cache_gib: float = Field(1.0, description="KV cache size in GiB (CPU); GPU uses memory utilisation")
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_model_len: int = Field(4096, ge=256)
    max_streams: int = Field(16, ge=1,
                             description="vLLM's batch (max_num_seqs) in the in-process engine; the server's default stream limit")
    enforce_eager: bool = Field(True, description="skip CUDA graphs / torch.compile in vLLM")
    engine_multiprocessing: bool = Field(
        False, description="vLLM's V1 multiprocessing (a separate worker process behind the engine core)"
    )
    vllm_url: str | None = Field(
        None, description="generate on a remote `vllm serve` at this URL instead of an in-process vLLM"
    )
    vllm_model: str | None = Field(None, description="the remote server's served model name (default: model)")
    vllm_api_key: SecretStr | None = Field(None, description="the remote server's --api-key, if it has one")
    vllm_wait_s: float = Field(
        120.0, ge=0, description="how long start-up waits for an unreachable remote vLLM server (it may still be loading)"
    )
    vllm_health_interval_s: float = Field(
        1.0, gt=0, le=60, description="how often a replica checks its remote vLLM server (its /health follows)"
    )
    vllm_health_timeout_s: float = Field(
        3.0, gt=0, le=60, description="a remote vLLM health check taking longer counts as unreachable"
    )
    constrain_tokens: bool = Field(
        True, description="logits processor keeping every token inside its SNAC slot's code range"
    )

    # Text and audio
    voice: str | None = Field(None, description="default voice (profile default when unset)")
    voice_aliases: dict[str, str] | None = Field(
        None, description='other names for the voices, as JSON {"alias": "voice"} (default: OpenAI\'s names; {} for none)'
    )
    max_input_chars: int = Field(4000, ge=1)
    decode_threads: int = Field(
        1, ge=1, description="torch threads for SNAC decoding (keep 1 on CPU: more collapse when vLLM holds the cores)"
    )
    decode_workers: int = Field(
        1, ge=1, description="SNAC decode workers (one core each); more only where cores are spare"
    )
    decode_batch_wait_ms: float = Field(
        20.0, ge=0, le=1000, description="how long a decode tick may wait for other streams' frames (never for a first audio)"
    )
    decoder: Literal["incremental", "window"] = Field(
        "incremental", description="streaming SNAC decoder: exact incremental + cross-stream batching, or windows"
    )
    snac_dtype: Literal["float32", "bfloat16"] = "float32"


class ServerClientSettings(BaseSettings):
    """How a client (the plugin, the worker) reaches a TTS server: ``ORPHEUS_SERVER_URL``, ``ORPHEUS_API_KEY``."""

    model_config = ORPHEUS_SETTINGS

    server_url: str | None = Field(None, description="TTS server base URL, e.g. http://127.0.0.1:8000")
    api_key: SecretStr | None = Field(None, description="one of the server's ORPHEUS_API_KEYS")


def invalid_settings(exc: ValidationError) -> str:
    """One line naming each bad setting; never the value (it may be a key)."""
    return "invalid settings: " + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
