"""One tenant's cycle (collect → evaluate → compare → persist → queue its alerts) and the fleet fan-out.
May import: shared.tenants, shared.settings and the layers below; not shared.alerts (beside it: they meet on the queue)."""
