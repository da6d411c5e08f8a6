"""Typed settings: every knob reads ``ORPHEUS_<NAME>`` and has a matching ``--name`` CLI flag."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class OrpheusSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORPHEUS_", extra="ignore", protected_namespaces=())

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
    max_streams: int = Field(16, ge=1, description="max concurrent generation requests")
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

    # Sampling defaults (values users found stable with Orpheus)
    temperature: float = Field(0.6, ge=0.0, le=2.0)
    top_p: float = Field(0.8, gt=0.0, le=1.0)
    repetition_penalty: float = Field(1.1, ge=1.0, le=2.0)
    max_tokens: int = Field(8192, ge=7, description="cap on audio tokens per sentence")
    seed: int | None = None

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

    # Server
    host: str = "127.0.0.1"
    port: int = 8000


class ServerClientSettings(BaseSettings):
    """How a client (the plugin, the worker) reaches a TTS server: ``ORPHEUS_SERVER_URL``, ``ORPHEUS_API_KEY``."""

    model_config = SettingsConfigDict(env_prefix="ORPHEUS_", extra="ignore")

    server_url: str | None = Field(None, description="TTS server base URL, e.g. http://127.0.0.1:8000")
    api_key: SecretStr | None = Field(None, description="one of the server's ORPHEUS_API_KEYS")


def add_settings_arguments(parser: argparse.ArgumentParser,
                           settings_cls: type[BaseSettings] = OrpheusSettings) -> None:
    """One ``--kebab-name`` flag per settings field; unset flags fall back to env/defaults."""
    for name, field in settings_cls.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=field.description)
        elif "dict" in str(field.annotation):
            parser.add_argument(flag, dest=name, default=None, type=json.loads, help=field.description)
        else:
            parser.add_argument(flag, dest=name, default=None, help=field.description)


def settings_from_args(args: argparse.Namespace, settings_cls: type[BaseSettings] = OrpheusSettings):
    overrides = {k: v for k, v in vars(args).items() if k in settings_cls.model_fields and v is not None}
    return settings_cls(**overrides)
