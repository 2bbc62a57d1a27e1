"""Who is watched and how authwatch gets in: the tenant registry, onboarding checks, the permissions manifest.
May import: shared.collect, shared.state, shared.storage, shared.controls, shared.model, shared.logs."""
