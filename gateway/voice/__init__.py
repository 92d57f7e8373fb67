"""Voice calls between the home's speakerphone and the centre's console (docs/voice.md).

`call` is the pure core (who may open the microphone when, and when a call ends), tested
with a fake clock; `media` and `agent` are the aiortc shell, imported only when the hub is
set up for calls (``voice_source``) and the `voice` extra is installed.
"""
