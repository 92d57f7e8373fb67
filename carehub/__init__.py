"""CareHub's shared kernel: wire contracts, alarm lifecycle, settings and the `carehub` CLI.

`gateway`, `server` and `firmware_sim` all depend on this package; it depends on none of them.
"""

__version__ = "0.1.0"
