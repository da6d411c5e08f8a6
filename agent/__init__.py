"""Runnable apps: the TTS server and the LiveKit agent worker."""
