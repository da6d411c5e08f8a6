"""The sampling knobs, declared once (like vLLM's one ``SamplingParams``).

``SamplingDefaults`` holds each knob with its bounds and default; the engine settings inherit it
(``ORPHEUS_TEMPERATURE``, ``--temperature``, ...). ``SamplingOptions`` is the same knobs for one
request, each optional (None: the engine's default): request bodies, the plugin's options and
``update_options`` validate through it, and the generators read its resolved values.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, create_model


class SamplingDefaults(BaseModel):
    temperature: float = Field(0.6, ge=0.0, le=2.0, description="sampling temperature (0: greedy)")
    top_p: float = Field(0.8, gt=0.0, le=1.0, description="nucleus sampling mass")
    repetition_penalty: float = Field(1.1, ge=1.0, le=2.0, description="penalty on repeated tokens")
    max_tokens: int = Field(8192, ge=7, le=65536, description="cap on audio tokens per sentence (7 a frame)")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="sampling seed (none: random)")


class _Options(BaseModel):
    """Sampling for one request; unset knobs take the engine's defaults."""

    # frozen: a stream's snapshot shares it with the TTS; NaN/inf are never a setting
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    def resolved(self, defaults: SamplingDefaults) -> SamplingOptions:
        """Every knob set: this request's values, the engine's defaults for the rest."""
        values = {name: getattr(defaults, name) for name in SamplingDefaults.model_fields}
        return type(self)(**{**values, **self.model_dump(exclude_none=True)})

    def given(self) -> dict:
        """The knobs this request sets (what goes on the wire)."""
        return self.model_dump(exclude_none=True)


# Derived, not written out again: the same names, bounds and descriptions, each defaulting to None.
SamplingOptions = create_model(
    "SamplingOptions", __base__=_Options, __module__=__name__, __doc__=_Options.__doc__,
    **{name: (Annotated[field.annotation | None, *field.metadata], Field(None, description=field.description))
       for name, field in SamplingDefaults.model_fields.items()},
)
