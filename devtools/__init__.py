"""Development tooling, apart from the product: the embedded dev stack (Tansu + Valkey),
`frame-orchestrator dev`, the synthetic cameras and the live progress view."""
