"""Voice names a request may use: the profile's voices, plus aliases (OpenAI's names by default)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from .profiles import ModelProfile

_ECHO_LIMIT = 40  # characters of an unknown name repeated back in an error


@dataclass(frozen=True)
class VoiceCatalog:
    voices: tuple[str, ...]
    default: str
    aliases: Mapping[str, str]

    @classmethod
    def for_profile(cls, profile: ModelProfile, *, default: str | None = None,
                    aliases: Mapping[str, str] | None = None) -> VoiceCatalog:
        """``aliases`` None keeps the profile's own; an alias must name one of the profile's voices."""
        aliases = dict(profile.voice_aliases if aliases is None else aliases)
        for alias, voice in aliases.items():
            if voice not in profile.voices:
                raise ValueError(f"voice alias {alias!r} -> {voice!r}: not a voice of profile {profile.name!r} "
                                 f"({', '.join(profile.voices)})")
        catalog = cls(profile.voices, profile.default_voice, aliases)
        return replace(catalog, default=catalog.resolve(default)) if default else catalog

    def resolve(self, name: str | None) -> str:
        """The model voice for ``name`` (a voice or an alias); None means the default."""
        if not name:
            return self.default
        if name in self.voices:
            return name
        if name in self.aliases:
            return self.aliases[name]
        shown = name if len(name) <= _ECHO_LIMIT else name[:_ECHO_LIMIT] + "…"
        raise ValueError(f"unknown voice {shown!r}; voices: {', '.join(self.voices)} "
                         f"(aliases: {', '.join(self.aliases) or 'none'})")
