// Package costreport is example 34, `observatory cost` (DESIGN §8): cost-
// tagged work for two tenants (northwind on Anthropic models, contoso on
// OpenAI models, a local Llama and an unpriced self-hosted model) through
// the real pipeline (package rig), each mission reserved against the
// tenant's budget before it runs and settled after, then where the money
// went: per project, per model, local versus cloud, a budget pre-flight of
// one more mission, and the proof that the same money counted three
// independent ways (the budget ledger, the fold, a rollup read back from
// FLEET) agrees to the micro-dollar. It ends with the line a CFO reads
// (CFOLine), which `observatory demo` prints too.
//
// Run publishes the work and returns the figures; Print writes them; the
// command parses the flags and chooses between Print and --json.
//
// The package imports fleet, stream and rig; only the command and tests
// import it.
//
// # Time
//
// Config.Now (default time.Now) stamps the events and bounds the rollup's
// window. The rollup and the ledger read the stream's stored time, which
// the NATS server stamps with its wall clock, so Now must agree with it.
//
// # Concurrency
//
// Run publishes from the calling goroutine; the pipeline it starts owns
// its goroutines and stops them before Run returns.
package costreport
