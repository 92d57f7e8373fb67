"""Simulated device firmware that speaks only the public MQTT contract."""
