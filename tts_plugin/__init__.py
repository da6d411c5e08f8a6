"""orpheus-rtc: streaming Orpheus (SNAC) speech for LiveKit voice agents."""
