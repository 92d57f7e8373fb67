"""The dispatch server (FastAPI): takes alarms from hubs, dispatches the elder's family-doctor
team by SMS, and serves the dispatcher and installers. Core logic in `dispatch_policy` and
`sms_text`; I/O in `store`, `notifier`, `dispatcher` and `routes/`."""
