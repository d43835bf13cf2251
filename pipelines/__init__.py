"""cohere-events: Cohere fine-tuning status events into an analytics warehouse with dlt."""

import os
import sys

# dlt sends anonymous usage telemetry over the internet unless told not to. A data tool run from cron on
# credentials should not phone home, and tests must never reach the internet; set it to true to opt in.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

# Arrow allocates from the C library's allocator rather than its bundled mimalloc, which keeps freed pages mapped and
# put 10-15 MB on a run's peak memory at no gain in speed. Read once, when pyarrow is first imported.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# httpx imports its own command line (click, rich and pygments: about 50 ms, before a run's first request) whenever
# those are installed, and typer brings rich. This package never runs httpx's command line; a module set to None
# is one Python will not import, and httpx then keeps a stub `httpx.main` that asks for `httpx[cli]`.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
