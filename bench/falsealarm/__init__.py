"""False-alarm and miss benchmark on realistic generated records (issue 12, item 4).

PySynthea writes lifetime FHIR R4 transaction Bundles; this package resolves their ``urn:uuid:``
references as a FHIR server would, cuts each chart to what existed at an evaluation time, places
epidurals and new findings into charts, evaluates every chart opening with the service's own hook
path, and reports cards per 100 opens by indicator and by rule. ``python -m bench.falsealarm``.
"""
