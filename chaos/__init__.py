"""``fenced chaos``: a fault-injection run that checks S1-S7 on the real stack.

``history`` records what clients saw, ``proxy`` slows and resets connections, ``runner``
starts a private stack and injects faults from a seed, ``checker`` replays the log and
checks the properties, ``report`` writes JSON, Markdown and a PNG timeline.
"""
