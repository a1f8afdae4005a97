"""epidural-cds: an HL7 CDS Hooks 2.0 service that flags complications after epidural procedures.

The package is layered one way (see ``shared/design.md``): HTTP -> protocol -> data access ->
record -> clinical core -> cards. Lower layers never import higher ones.
"""

__version__ = "0.1.0"
