"""The real-services harness: starts Redis, Neo4j and worker processes on
loopback for the test run and stops them afterwards, also on failure."""
