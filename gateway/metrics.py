"""The hub's Prometheus metrics (served when ``CAREHUB_METRICS_PORT`` is set).

What an operator needs to see a hub in trouble before an elder does: alarms raised,
uploads failing, the outbox growing or being trimmed, devices dropping bad input, loops
that keep failing.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

ALARMS_RAISED = Counter("carehub_hub_alarms_raised_total", "Alarms raised on the hub", ["kind"])
MESSAGES_DROPPED = Counter(
    "carehub_hub_messages_dropped_total",
    "Device messages refused, by reason (contract violation code, unknown_device, bad_topic)",
    ["reason"],
)
LOOP_RESTARTS = Counter(
    "carehub_hub_loop_restarts_total", "Hub loops restarted after a failure", ["loop"]
)
UPLOAD_FAILURES = Counter("carehub_hub_upload_failures_total", "Failed outbox uploads")
OUTBOX_DROPPED = Counter(
    "carehub_hub_outbox_dropped_total",
    "Non-alarm outbox entries dropped because the outbox reached its bound",
)
OUTBOX_DEPTH = Gauge("carehub_hub_outbox_depth", "Outbox entries waiting for the server")
DEVICES_ONLINE = Gauge("carehub_hub_devices_online", "Paired devices currently online")
FAULTS_ACTIVE = Gauge("carehub_hub_faults_active", "Device faults currently active")
VOICE_CALLS = Counter(
    "carehub_hub_voice_calls_total", "Voice calls started, by direction", ["direction"]
)
VOICE_CALLS_ENDED = Counter(
    "carehub_hub_voice_calls_ended_total", "Voice calls ended, by reason", ["reason"]
)
VOICE_MIC_OPEN = Gauge("carehub_hub_voice_mic_open", "1 while the microphone is open in a call")
VOICE_MIC_FRAMES = Counter(
    "carehub_hub_voice_mic_frames_total", "20 ms frames of microphone audio sent in calls"
)
