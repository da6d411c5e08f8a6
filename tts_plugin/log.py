import logging

# The plugin's own logger, named like the official plugins' ("livekit.plugins.<name>").
logger = logging.getLogger("livekit.plugins.orpheus")
