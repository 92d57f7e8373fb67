"""The duty dispatcher's console: server-rendered pages under ``/console``.

`accounts` (roles, passwords, sessions, rate limit: the decisions), `console_store` (their
tables), `i18n` (the message catalogue), `live_queue` (the open alarms), `sound` (the alert
tone), `web` (request dependencies: the signed-in account, `require`, CSRF, templates) and
`routes` (the pages and the live feed). A new page is a route in `routes` that depends on
`require(...)`, renders a template extending ``console/base.html`` through `web.render`, and
checks its forms with `web.checked_form`.
"""
