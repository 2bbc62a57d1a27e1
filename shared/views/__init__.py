"""What people read: the HTTP API's service functions, fleet reports (JSON, CSV, HTML) and the dashboard page.
May import: shared.cycle, shared.alerts, shared.tenants, shared.settings and every layer below; not shared.cli."""
