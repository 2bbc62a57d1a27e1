"""From a stream of snapshots to the few events a person must hear about: state, baseline, drift, enforcement.
May import: shared.storage, shared.controls, shared.model, shared.logs; never a collector or an alert channel."""
