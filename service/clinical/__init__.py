"""The clinical core: pure functions from a patient's record and an explicit ``now`` to findings.

Nothing here performs I/O or imports Flask or requests; every clinical behaviour is unit-testable
with a fixed clock (clinical-spec §3).
"""
