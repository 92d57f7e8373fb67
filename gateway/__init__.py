"""The hub runtime in the elder's home: reads devices from the local MQTT broker, runs the edge
detectors, stores alarms durably (`store`), uploads them (`uplink`) and answers the elder
(`feedback`). Decisions live in plain modules (`intake`); the rest only moves bytes."""
