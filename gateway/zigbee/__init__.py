"""Off-the-shelf Zigbee devices through Zigbee2MQTT: the supported models as data
(`models`), the pure translation of a Zigbee2MQTT message into hub events (`translate`),
and the bridge that owns their MQTT traffic in the running hub (`bridge`). See
docs/devices.md."""
