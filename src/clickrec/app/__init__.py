"""Use cases, one module per area: what the HTTP API, the AWS-compatible API and the CLI all
call, so that each is written once. The front doors parse, call, and shape the answer."""
