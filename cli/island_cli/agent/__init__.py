"""The reference Island agent: ``island agent``.

It speaks the Island protocol (island-protocol.md) over NATS only: it registers, pairs,
sends heartbeats, and runs the jobs assigned to it with one of its runtimes (``mock``,
``wasm``, ``llmcpp``). It imports no Django; see README.md in this folder.
"""

from island_cli import __version__ as AGENT_VERSION

__all__ = ["AGENT_VERSION"]
