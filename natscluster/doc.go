// Package natscluster runs a real NATS cluster for tests: N nats-server
// processes (the binary `make deps` installs at the pinned version, found
// through OBSERVATORY_NATS_SERVER or OBSERVATORY_VM_BIN) routed to each
// other, in operator mode the way docs/deploy.md sets one up with nsc: an
// operator, a system account, and an application account with JetStream
// whose users are minted with a signing key apart from the account's own.
//
// Nodes are separate processes so that a test can kill one with SIGKILL,
// as a machine dies, and start it again on the same ports and store. The
// package owns nothing else: what runs on the cluster is the test's.
package natscluster
