"""The Python peer: ``ruang join`` (aiortc + aiohttp's client).

Modules: ``cli`` (arguments, exit codes), ``session`` (the signaling client and the call's state
machine), ``inner`` (the messages inside the envelopes), ``rtc`` (one peer connection per commit
round), ``sdp`` (fingerprint rules), ``media`` (synthetic tracks, frame counters), ``chat``
(acknowledged chat), ``transport`` (login and the WebSocket), ``link``, ``events``, ``config``,
``errors``. The signaling core beside it (``signaling.*``) stays free of aiohttp.
"""
