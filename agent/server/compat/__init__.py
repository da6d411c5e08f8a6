"""Adapters for clients written against other servers (the seed servers' documented APIs).

Each module is one server's request/response shape over the core request handling
(``http_api._start`` / ``encoded_chunks``, ``SpeechRequest``): no synthesis logic of its own.
``foreign`` says why parameters of other models are refused.
"""
