"""The duty dispatcher's console: server-rendered pages under ``/console``.

`accounts` (roles, passwords, sessions: the decisions), `sign_in_limit` (when a sign-in
may be tried: per address, and a delay per account), `console_store` (their tables and the
audit log), `audit_log` (the audit page's filter and keyset pages), `session_streams` (the
live streams each session has open, ended at sign-out), `i18n` (the console's name for
`server.catalogue`), `live_queue` (the open alarms), `elder_card` (an elder's details),
`sound` (the alert tone), `web` (what every page shares: `require`, which checks the
session, the role and, on POST, the CSRF token; cookies; `render`) and `routes` (the pages
and the live feed).
A new page is a route in `routes` that depends on `require(...)` and renders a template
extending ``console/base.html`` through `web.render`; its forms include
``{{ csrf_field() }}``.
"""
