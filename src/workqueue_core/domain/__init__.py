"""The pure domain: work items, agents, targeting, the retry budget and the state machine.

Synchronous and free of I/O, clocks and randomness: time and random draws come in as
parameters. Everything above (ports, work, service, executor) builds on it.
"""
