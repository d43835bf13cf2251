"""cohere-events: Cohere fine-tuning status events into an analytics warehouse with dlt."""

import os

# dlt sends anonymous usage telemetry over the internet unless told not to. A data tool run from cron on
# credentials should not phone home, and tests must never reach the internet; set it to true to opt in.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

# Arrow allocates from the C library's allocator rather than its bundled mimalloc, which keeps freed pages mapped and
# put 10-15 MB on a run's peak memory at no gain in speed. Read once, when pyarrow is first imported.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
