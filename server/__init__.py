"""The dispatch server (FastAPI): takes alarms from hubs, escalates through the elder's
family-doctor team, backup teams and the duty dispatcher by SMS until someone accepts, and
serves the dispatcher and installers. Pure cores: `escalation`, `duty_roster`, `care_map`,
`sms_text`, `reply_codes`, `accept_link`, `send_policy`, `kpi`; the words: `catalogue`;
I/O: `store`, the dispatch wing `dispatch/` (its routes' one entry: `dispatch.service`),
`notifier` and `routes/`."""
