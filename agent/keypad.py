"""A phone caller's keypad: LiveKit SIP forwards DTMF as the room's ``sip_dtmf_received`` event.

``*`` stops what the agent is saying; ``#`` says the last thing again, in full. Everything the
agent says goes through ``Keypad.say`` (the greeting, chat messages) or is an LLM reply seen in the
conversation, so "the last thing" is known whether or not it was cut off.
"""

from __future__ import annotations

import asyncio
import logging

from tts_plugin import hops

log = logging.getLogger("orpheus.agent.keypad")

STOP_KEY = "*"
REPEAT_KEY = "#"


class Keypad:
    def __init__(self, session) -> None:
        self._session = session
        self.last_said: str | None = None
        self._tasks: set[asyncio.Task] = set()
        session.on("conversation_item_added", self._on_item_added)

    def say(self, text: str, **say_kwargs):
        """``session.say``, remembering the full text (the chat item of a cut-off speech is cut too)."""
        self.last_said = text
        return self._session.say(text, **say_kwargs)

    async def speak_text_message(self, session, event) -> None:
        """Text input callback without an LLM: a chat message is what to say; it cuts off the current speech."""
        text = event.text.strip()
        if not text:
            return
        hops.mark("text_received")
        await session.interrupt(force=True)
        hops.mark("say")
        self.say(text)

    def _on_item_added(self, event) -> None:
        item = event.item
        text = getattr(item, "text_content", None)
        if getattr(item, "role", None) != "assistant" or not text:
            return
        if self.last_said and self.last_said.startswith(text):
            return  # the item of one of our say() calls (maybe cut short): the full text is kept
        self.last_said = text  # an LLM reply

    async def press(self, digit: str) -> None:
        if digit == STOP_KEY:
            log.info("keypad %s: stop speaking", digit)
            await self._session.interrupt(force=True)
        elif digit == REPEAT_KEY and self.last_said:
            log.info("keypad %s: repeat the last thing said", digit)
            await self._session.interrupt(force=True)
            self._session.say(self.last_said)

    def on_dtmf(self, event) -> None:
        """``rtc.Room`` ``sip_dtmf_received`` handler (synchronous: the key runs as a task)."""
        task = asyncio.create_task(self.press(event.digit))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("keypad action failed", exc_info=task.exception())
