"""Prompt ids -> generated audio token ids, through one shared vLLM ``AsyncLLM``.

Each request is an async generator of token-id batches; closing it (or cancelling the task that
iterates it) closes vLLM's ``generate()`` explicitly, which aborts the vLLM request at once (never
left to the garbage collector). If the engine core dies, requests raise ``EngineFailure`` and
``failed`` turns true: the engine cannot recover in this process.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing

from ..sampling import SamplingOptions
from ..settings import EngineSettings
from .profiles import END_OF_SPEECH


class GenerationError(RuntimeError):
    """The token backend failed a request (remote server down, refused or broken stream)."""


class EngineFailure(GenerationError):
    """The in-process vLLM engine is dead (its engine core process exited): nothing more will run."""


class TokenGenerator:
    def __init__(self, llm, *, constrain_tokens: bool) -> None:
        self.llm = llm
        self.constrain_tokens = constrain_tokens

    @classmethod
    def start(cls, settings: EngineSettings) -> TokenGenerator:
        """Build the AsyncLLM from settings (CPU: explicit KV cache size, eager mode)."""
        # vLLM reads this flag from the environment only.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if settings.engine_multiprocessing else "0"
        import torch
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        from .logits import QUALNAME

        on_gpu = torch.cuda.is_available()
        args = AsyncEngineArgs(
            model=settings.model,
            tokenizer=settings.tokenizer or settings.model,
            dtype=settings.dtype,
            max_model_len=settings.max_model_len,
            max_num_seqs=settings.max_streams,
            enforce_eager=settings.enforce_eager,
            logits_processors=[QUALNAME] if settings.constrain_tokens else None,
            enable_log_requests=False,
            disable_log_stats=True,
            **({"gpu_memory_utilization": settings.gpu_memory_utilization} if on_gpu
               else {"kv_cache_memory_bytes": int(settings.kv_cache_gib * 2**30)}),
        )
        return cls(AsyncLLM.from_engine_args(args), constrain_tokens=settings.constrain_tokens)

    def sampling_params(self, options: SamplingOptions):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        from .logits import SLOT_CONSTRAINT_ARG

        return SamplingParams(
            temperature=options.temperature,
            top_p=options.top_p,
            repetition_penalty=options.repetition_penalty,
            max_tokens=options.max_tokens,
            seed=options.seed,
            stop_token_ids=[END_OF_SPEECH],
            output_kind=RequestOutputKind.DELTA,
            detokenize=False,
            extra_args={SLOT_CONSTRAINT_ARG: True} if self.constrain_tokens else None,
        )

    async def generate(self, prompt_ids: list[int], options: SamplingOptions,
                       request_id: str | None = None) -> AsyncIterator[list[int]]:
        from vllm.inputs import TokensPrompt
        from vllm.v1.engine.exceptions import EngineDeadError

        if self.failed:
            raise EngineFailure("the speech engine has stopped (its vLLM engine core died)")
        request_id = request_id or uuid.uuid4().hex
        params = self.sampling_params(options)
        try:
            async with aclosing(self.llm.generate(TokensPrompt(prompt_token_ids=prompt_ids), params,
                                                  request_id)) as outputs:
                async for output in outputs:
                    token_ids = list(output.outputs[0].token_ids)
                    if token_ids:
                        yield token_ids
        except EngineDeadError as exc:
            raise EngineFailure("the speech engine has stopped (its vLLM engine core died)") from exc

    @property
    def failed(self) -> bool:
        """True once the engine core is dead (or the engine was shut down)."""
        return self.llm is None or self.llm.errored

    @property
    def running_requests(self) -> int:
        return self.llm.output_processor.get_num_unfinished_requests()

    async def aclose(self) -> None:
        # Stop vLLM's output handler here first (it would report the closing engine as dead), then
        # join the engine core process in a thread, off the event loop.
        handler = getattr(self.llm, "output_handler", None)
        if handler is not None:
            handler.cancel()
            await asyncio.gather(handler, return_exceptions=True)
        await asyncio.to_thread(self.shutdown)

    def shutdown(self) -> None:
        # Drop our reference too, so AsyncLLM.__del__ runs now rather than at interpreter teardown.
        llm, self.llm = self.llm, None
        if llm is not None:
            llm.shutdown()
