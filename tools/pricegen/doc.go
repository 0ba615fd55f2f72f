// Command pricegen converts the price list of the @pydantic/genai-prices
// npm package (MIT) into Observatory's pricing table, fleet/pricing.json:
// integer micro-dollars per million input, output, cache-read and
// cache-write tokens, with tiers chosen by a call's input tokens, and
// match rules that fleet.Pricing.Lookup evaluates.
//
//	pricegen -list data.json -package package.json -overlay fleet/pricing_overlay.json \
//	    -as-of 2026-09-23 -out fleet/pricing.json
//
// scripts/pricing.sh (make pricing) runs it on the list of the pinned
// package: data.json is the package's provider list as its own module
// exports it (waitForUpdate() before any update, which is the data the
// package is built from), package.json names the package, its version and
// licence.
//
// The conversion refuses what it does not understand rather than guess:
//
//   - an unknown field of a provider or a model, an unknown price key, an
//     unknown rule or price constraint: the data has a shape the converter
//     does not know, and it fails with the path of the field;
//   - a model it cannot price faithfully is skipped and listed, with the
//     reason, in the output's "skipped" field: prices that vary with the
//     time of day, a separate price for reasoning tokens (llm.call carries
//     no reasoning count: its output tokens include them), no token
//     prices at all, a price finer than a micro-dollar per million tokens
//     (never rounded), or a regular expression RE2 cannot run;
//   - the providers not named in the overlay's "providers" are skipped as
//     a whole, listed with their model counts: the table prices by model
//     name alone, and resellers list the same names at their own prices.
//
// Prices follow the list's own arithmetic (its calcPrice): a missing
// input or output price is zero, a missing cache-read or cache-write price
// is the input price (the list charges cached tokens as input unless it
// prices them apart), a tier applies when a call's input tokens, cache
// included, are above its start, and of dated prices the one in effect on
// the -as-of date is taken (later ones are listed under "scheduled").
//
// After converting, pricegen parses its own output with fleet.ParsePricing
// and checks it against the list: for every name a rule of a converted
// model spells out, Lookup must give the price the list gives that name
// within the model's provider; a difference fails the run. The overlay's
// "required" names (the models the demo, the synthetic worker and the
// examples use) must all be priced.
//
// The output is deterministic: the same list, overlay and date give the
// same bytes.
//
// pricegen imports fleet (the table format and Lookup) and the standard
// library.
package main
