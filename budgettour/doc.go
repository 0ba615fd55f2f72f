// Package budgettour is example 12, `observatory budget` (DESIGN §8):
// per-user, per-team and per-project caps with warn, throttle and stop,
// shown step by step. Every decision is the real budget gate's, asked
// through the real HTTP API (POST /api/v1/projects/{p}/missions) of a real
// server on a fresh embedded NATS (package rig); after each step the work
// that was let through runs and reports its calls, the ledger charges
// them, and the standings are read back (GET /api/v1/budgets). The tour
// ends with the budget events the HUD's ticker showed.
//
// Run tells the story on Config.Out and returns the figures; Print writes
// the proof block; the command parses the flags and chooses between Print
// and --json.
//
// The package imports fleet, live (the API client's error type) and rig;
// only the command and tests import it.
//
// # Time
//
// Config.Now (default time.Now) stamps the work's events and is the API's
// and the ledger's clock. The caps are daily and the ledger's day is the
// stream's stored time (the NATS server's wall clock): Now must agree
// with it.
//
// # Concurrency
//
// Run works from the calling goroutine; the pipeline and the server it
// starts own their goroutines and stop them before Run returns.
package budgettour
