"""What people read: the HTTP API's service functions, fleet reports (JSON, CSV, HTML) and the dashboard page.
May import: shared.cycle, shared.alerts and every layer below them (ARCHITECTURE.md); never shared.cli or functions."""
