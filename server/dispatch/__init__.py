"""The dispatch wing: everything that moves an alarm after it is stored, with one writer.

`service` (DispatchService) is the only entry for routes and the console: it decides,
commits in one transaction, sends, then notifies. Beneath it: `store` (DispatchStore, the
writer: answers and triage) over `ladder` (steps, operator hold) over `queue` (messages,
leases, delivery status) over `rows` (shared statements); `answers` and `link_view` are
pure; `care` reads the directory; `responders` keeps links, inbound SMS and opt-outs;
`escalator` is the worker that takes due steps and sends. See docs/architecture.md.
"""
