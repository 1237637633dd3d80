"""The RM workbench and ops console: server-rendered pages over the four services' APIs, for
relationship managers, their team leads and operations (docs/workbench.md). It owns no rules
and no data: every figure comes from a service's API, asked with the signed-in person's own
credential, so each API's role and RM checks apply to the pages unchanged."""
