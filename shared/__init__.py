"""authwatch's core library, in layers (ARCHITECTURE.md): entry points (cli) → views → cycle, alerts → tenants →
collect, state → storage, controls → model. No code here: import the package that does the job."""
