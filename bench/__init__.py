"""On-demand benchmarks for the "Cost and speed" issue (``make bench``; never part of ``make test``).

- ``python -m bench.overhead``: app time per turn beyond the provider call (ChatService in-process).
- ``python -m bench.replay_growth``: request bytes and input tokens per turn, for each replay bound K.
- ``python -m bench.concurrency``: 32 simultaneous ``/send`` calls through gradio_client.
- ``python -m bench.startup_memory``: cold start to the first HTTP 200, and resident memory.

Each writes ``bench/results/<name>.json`` and ``<name>.png`` (``--quick``: ``<name>_quick.*``, a
smoke run); the figures and the machine they were measured on are in ``bench/RESULTS.md``.
"""
