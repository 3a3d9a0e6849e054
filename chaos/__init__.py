"""``fenced chaos``: a fault-injection run that checks S1-S7 on the real stack.

``history`` records what clients saw, ``workload`` is what they send (folder commands, appends
to open streams, reads, races), ``proxy`` slows and resets connections, ``runner`` starts a
private stack and injects faults from a seed, ``checker`` replays the logs and checks the
properties (``linearizability``: S7 with Porcupine), ``report`` writes JSON, Markdown and a
PNG timeline.
"""
