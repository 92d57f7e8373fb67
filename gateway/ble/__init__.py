"""Bluetooth LE health devices: the pure parsers of the standard GATT characteristics
they notify (`gatt`), the radio behind a `transport.GattSource` (bleak on a real hub:
`bleak_source`), the pure adapter to the ``vitals`` channel (`vitals`) and the bridge that
publishes each paired device's readings on the local broker (`bridge`). See
docs/devices.md, Bluetooth."""
