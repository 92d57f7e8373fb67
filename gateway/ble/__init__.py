"""Bluetooth LE health devices: the pure parsers of the standard GATT characteristics
they notify (`gatt`). No radio I/O yet: see docs/devices.md, Bluetooth."""
