"""One tenant's cycle (collect → evaluate → compare → persist → alert) and the fleet fan-out that queues it.
May import: shared.alerts, shared.tenants, shared.settings and every layer below (see ARCHITECTURE.md)."""
