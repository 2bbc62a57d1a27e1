"""From a stream of snapshots to the few events a person must hear about: state, baseline, drift, enforcement."""
