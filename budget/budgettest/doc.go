// Package budgettest proves what the budget ledger promises from its
// stored history rather than from samples: KeepHistory makes the ledger
// bucket keep every revision of every entry, History reads them all back,
// and Check verifies each one (a stop budget's spent plus reserved never
// passes its cap where a hold is placed, holds grow only by being placed,
// and charges pass the cap only by what real work cost beyond its hold).
//
// It mirrors the ledger's stored format (budget's ledger entries) and
// decodes it strictly, so that a change of that format fails the tests
// that use it instead of letting them check nothing.
//
// budgettest imports budget (the bucket's name), fleet and nats.go; it is
// meant for tests (of budget, web, ...) and never for production code.
//
// # Concurrency
//
// KeepHistory and History are safe from any goroutine; Check.Verify is a
// pure function of its arguments.
package budgettest
