"""Real components started by the project itself for the demo, tests and benches: a private
Mosquitto (or embedded amqtt) broker, a private PostgreSQL, child processes that can be
SIGKILLed, a local Twilio-compatible SMS server and a TCP proxy that can cut a link (standard
library and httpx)."""
